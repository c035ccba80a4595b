module Optimizers.Experiments.Program

open System

[<EntryPoint>]
let main argv =
    Optimizers.LibTorch.prepare () // before LibTorch loads: the OpenMP spin limit
    match Environment.GetEnvironmentVariable WorkerProtocol.envVar with
    | null | "" -> Cli.run argv Console.Out Console.Error
    | _ -> Runner.serveWorker () // a worker process of a sweep's --jobs (WorkerProtocol)
