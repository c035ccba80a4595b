module Optimizers.Experiments.Program

open System

[<EntryPoint>]
let main argv =
    Optimizers.OpenMp.limitSpinning () |> ignore // before LibTorch loads
    match Environment.GetEnvironmentVariable WorkerProtocol.envVar with
    | null | "" -> Cli.run argv Console.Out Console.Error
    | _ -> Runner.serveWorker () // a worker process of a sweep's --jobs (WorkerProtocol)
