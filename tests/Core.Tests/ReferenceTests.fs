module Optimizers.Tests.ReferenceTests

open Expecto

[<Tests>]
let tests = testList "ReferenceTests" []
