/// The core abstraction: trees, transformations, chains, hyperparameters, run loops. The
/// validation of optimizer options is in ValidationTests.fs.
module Optimizers.Tests.CoreTests

open System
open Expecto
open TorchSharp
open Optimizers
open Optimizers.Handcrafted
open Optimizers.Tasks
open Optimizers.Tests.Check

[<Tests>]
let tests =
    testList "core" [
        testList "tree" [
            testCase "map2 refuses trees with other names" <| fun () ->
                let a = Tree.ofSeq [ "w", vec [ 1.0 ]; "b", vec [ 2.0 ] ]
                let b = Tree.ofSeq [ "w", vec [ 1.0 ]; "c", vec [ 2.0 ] ]
                throwsNaming [ "w, b"; "w, c" ] (fun () -> Tree.map2 (+) a b |> ignore)
            testCase "duplicate names are refused" <| fun () ->
                throwsNaming [ "duplicate name 'w'" ] (fun () -> Tree.ofSeq [ "w", vec [ 1.0 ]; "w", vec [ 2.0 ] ] |> ignore)
            testCase "a tree from a TorchSharp module keeps its parameter names" <| fun () ->
                use lin = torch.nn.Linear(3L, 2L)
                let t = Tree.ofModule lin
                Expect.equal t.Names [| "weight"; "bias" |] "names in registration order"
                Expect.equal (Tree.numel t) 8L "3*2 weights + 2 biases"
        ]

        testList "transformations" [
            testCase "a state from another optimizer is refused with a message that says what to pass" <| fun () ->
                let p = tree1 [ 1.0 ]
                let adam = Adam.create Adam.defaults
                let sgd = Sgd.create Sgd.defaults
                throwsNaming [ "'sgd' was given the state of 'adam'"; "init" ] (fun () -> sgd.Update p (adam.Init p) p |> ignore)
            testCase "a chain refuses a state with the wrong number of parts" <| fun () ->
                let p = tree1 [ 1.0 ]
                let c = Combine.chainNamed "two" [ Transform.identity; Transform.identity ]
                let s = { c.Init p with Children = [ State.empty "identity" ] }
                throwsNaming [ "chains 2 transformations"; "1 parts"; "did you call init" ] (fun () -> c.Update p s p |> ignore)
            testCase "the step count advances" <| fun () ->
                let opt = Adam.create Adam.defaults
                let p = tree1 [ 1.0 ]
                let _, s1 = opt.Update p (opt.Init p) p
                let _, s2 = opt.Update p s1 p
                Expect.equal (s1.Count, s2.Count) (1, 2) "count after one and two updates"
            testCase "a scheduled learning rate is read at each step" <| fun () ->
                // SGD, grad 2x, lr_t = 0.1 / (t + 1): x1 = x0 (1 - 0.2), x2 = x1 (1 - 0.1)
                let opt = Sgd.create { Sgd.defaults with Lr = Hyper.Scheduled(fun t -> 0.1 / float (t + 1)) }
                let traj = trajectory opt grad2x (tree1 [ 1.0 ]) 2
                closeRel 1e-15 (Array.concat traj) [| 0.8; 0.72 |] "x1, x2"
            testCase "a tensor hyperparameter gives the numbers of a plain one" <| fun () ->
                let fixedOpt = Adam.create { Adam.defaults with Lr = Hyper.Fixed 0.1; Beta1 = Hyper.Fixed 0.8 }
                let tensorOpt =
                    Adam.create { Adam.defaults with Lr = Hyper.Learnable(torch.tensor(0.1, dtype = f64)); Beta1 = Hyper.Learnable(torch.tensor(0.8, dtype = f64)) }
                let a = trajectory fixedOpt grad2x (tree1 [ 1.0; -2.0 ]) 5
                let b = trajectory tensorOpt grad2x (tree1 [ 1.0; -2.0 ]) 5
                closeRel 1e-15 (Array.concat b) (Array.concat a) "trajectory"
        ]

        // Sequenced: the live-tensor count is global, so nothing may run beside these tests.
        testSequenced <| testList "run" [
            testCase "a diverging run is reported with its step" <| fun () ->
                let task = Synthetic.rosenbrock 1.0 100.0 (Some [| -1.5; 2.0 |])
                let opt = Sgd.create { Sgd.defaults with Lr = Hyper.Fixed 1.0 }
                let start = task.Init { TaskInit.Default with Dtype = f64 }
                let seen = ref -1
                try
                    Run.optimize task opt start 50 (fun k _ _ -> seen.Value <- k) |> ignore
                    failtest "expected a DivergedException"
                with DivergedException(step, loss) ->
                    Expect.equal step 4 "the step where the loss overflowed (see the CLI test's rows)"
                    Expect.isTrue (Double.IsInfinity loss) "the loss reported"
                Expect.equal seen.Value 3 "steps before the divergence were observed"
            testCase "a run keeps the number of live tensors flat and frees them all" <| fun () ->
                let task = Synthetic.sumOfSquares 100 None
                let start = task.Init TaskInit.Default
                let settle () = GC.Collect(); GC.WaitForPendingFinalizers(); GC.Collect()
                settle ()
                let before = torch.Tensor.TotalCount
                let counts = Collections.Generic.List<int64>()
                let p, s = Run.optimize task (Adam.create Adam.defaults) start 300 (fun _ _ _ -> counts.Add torch.Tensor.TotalCount)
                Tree.dispose p
                State.dispose s
                settle ()
                let spread = Seq.max counts - Seq.min (Seq.skip 1 counts)
                Expect.isLessThanOrEqual spread 2L "live tensors do not grow with the steps"
                Expect.equal torch.Tensor.TotalCount before "every tensor of the run is freed"
            testCase "the start is left untouched" <| fun () ->
                let task = Synthetic.rosenbrock 1.0 100.0 (Some [| -1.5; 2.0 |])
                let start = task.Init { TaskInit.Default with Dtype = f64 }
                let p, s = Run.optimize task (Adam.create Adam.defaults) start 10 (fun _ _ _ -> ())
                Expect.equal (floats start) [| -1.5; 2.0 |] "start"
                Expect.notEqual (floats p) [| -1.5; 2.0 |] "the run moved"
                State.dispose s
        ]
    ]
