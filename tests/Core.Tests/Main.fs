/// The test runner: every [<Tests>] value of the assembly, run by Expecto from the repository root.
module Optimizers.Tests.Main

open Expecto

/// The exit code is the runner's: a failing test fails the build.
[<EntryPoint>]
let main argv =
    Optimizers.OpenMp.limitSpinning () |> ignore // before LibTorch loads, as the CLI does
    // paths in the paper configs are relative to the repository root, where the README's test
    // command runs: the same from wherever the runner is started
    try System.IO.Directory.SetCurrentDirectory(Check.repoRoot ()) with _ -> ()
    Tests.runTestsInAssemblyWithCLIArgs [] argv
