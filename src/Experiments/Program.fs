module Optimizers.Experiments.Program

open System

[<EntryPoint>]
let main argv =
    Optimizers.OpenMp.limitSpinning () |> ignore // before LibTorch loads
    Cli.run argv Console.Out Console.Error
