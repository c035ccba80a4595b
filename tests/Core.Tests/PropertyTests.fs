module Optimizers.Tests.PropertyTests

open Expecto

[<Tests>]
let tests = testList "PropertyTests" []
