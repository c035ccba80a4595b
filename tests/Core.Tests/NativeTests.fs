module Optimizers.Tests.NativeTests

open Expecto
open TorchSharp

[<Tests>]
let tests =
    testList "native" [
        testCase "LibTorch loads and a tensor can be created" <| fun () ->
            use t = torch.ones(3L)
            Expect.equal (t.sum().ToDouble()) 3.0 "sum of three ones"
    ]
