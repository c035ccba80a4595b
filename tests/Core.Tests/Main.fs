module Optimizers.Tests.Main

open Expecto

/// The exit code is the runner's: a failing test fails the build.
[<EntryPoint>]
let main argv = Tests.runTestsInAssemblyWithCLIArgs [] argv
