module Optimizers.Tests.SerializationTests

open Expecto

[<Tests>]
let tests = testList "SerializationTests" []
