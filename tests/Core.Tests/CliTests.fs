module Optimizers.Tests.CliTests

open Expecto

[<Tests>]
let tests = testList "CliTests" []
