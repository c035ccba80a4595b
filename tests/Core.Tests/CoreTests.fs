module Optimizers.Tests.CoreTests

open Expecto

[<Tests>]
let tests = testList "CoreTests" []
