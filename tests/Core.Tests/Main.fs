module Optimizers.Tests.Main

open Expecto

/// The exit code is the runner's: a failing test fails the build.
[<EntryPoint>]
let main argv =
    Optimizers.OpenMp.limitSpinning () |> ignore // before LibTorch loads, as the CLI does
    Tests.runTestsInAssemblyWithCLIArgs [] argv
