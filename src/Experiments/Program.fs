module Optimizers.Experiments.Program

open System

[<EntryPoint>]
let main argv = Cli.run argv Console.Out Console.Error
