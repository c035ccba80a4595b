/// The registry (Registry.fs), by which the CLI and the configs build optimizers: every catalog
/// optimizer is registered under its name, builds with its defaults (PyTorch's, or the reference
/// code's), keeps float32 in float32 and saves and loads its state; aliases and typed
/// hyperparameters. Its refusals of unknown names and options are in ValidationTests.fs; the
/// contract every registered optimizer meets is in ContractTests.fs.
module Optimizers.Tests.RegistryTests

open System
open System.IO
open TorchSharp
open Expecto
open Optimizers
open Optimizers.Tests.Check

[<Tests>]
let tests =
    testList "registry" [
        testCase "every catalog optimizer is registered, builds with its defaults and takes a finite step" <| fun () ->
            for name in catalog do
                let e = Registry.findOptimizer name
                Expect.equal e.Name name "name"
                let opt = Registry.createOptimizer name []
                Expect.equal opt.Name name $"{name}: the transformation carries the registry name"
                let p = tree1 [ 1.0; -2.0 ]
                let p', s = Transform.step opt (tree1 [ 0.5; 0.25 ]) (opt.Init p) p
                Expect.isTrue (floats p' |> Array.forall Double.IsFinite) $"{name}: finite step"
                Expect.notEqual (floats p') (floats p) $"{name}: the step moves"
                Expect.equal s.Count 1 $"{name}: one step counted"
        testCase "float32 parameters keep float32 updates and moments" <| fun () ->
            use _scope = torch.NewDisposeScope()
            for name in catalog do
                let opt = Registry.createOptimizer name []
                let p = Tree.single "x" (torch.tensor([| 1.0f; -2.0f; 0.5f |]))
                let g = Tree.single "x" (torch.tensor([| 0.5f; 0.25f; -1.0f |]))
                let mutable s = opt.Init p
                let mutable q = p
                for _ in 1..3 do
                    let q', s' = Transform.step opt g s q
                    q <- q'
                    s <- s'
                Expect.equal q["x"].dtype torch.ScalarType.Float32 $"{name}: params stay float32"
                let rec slots (st: State) = [ for KeyValue(_, t) in st.Slots do yield! t.Values
                                              for c in st.Children do yield! slots c ]
                for t in slots s do Expect.equal t.dtype torch.ScalarType.Float32 $"{name}: per-parameter state stays float32"
        testCase "every catalog state survives a save and load, and the run continues identically" <| fun () ->
            use _scope = torch.NewDisposeScope()
            withTempDir "catalog" <| fun dir ->
            for name in catalog do
                let opt = Registry.createOptimizer name (if name = "swats" then [ "switch_eps", "1e9" ] else [])
                let g = tree1 [ 0.5; 0.25 ]
                let p0 = tree1 [ 1.0; -2.0 ]
                let p1, s1 = Transform.step opt g (opt.Init p0) p0
                let p2, s2 = Transform.step opt g s1 p1
                let file = Path.Combine(dir, name + ".state")
                Serialization.saveState file opt s2
                let loaded = Serialization.loadState file opt
                let a, _ = Transform.step opt g s2 p2
                let b, _ = Transform.step opt g loaded p2
                Expect.equal (floats b) (floats a) $"{name}: the step after loading"
        testCase "registry defaults are PyTorch's (and the reference code's)" <| fun () ->
            let defaultOf name opt =
                (Registry.findOptimizer name).Options |> List.find (fun o -> o.Name = opt) |> fun o -> o.Default
            let expected =
                [ "adagrad", "lr", "0.01"; "adagrad", "eps", "1E-10"; "rmsprop", "lr", "0.01"; "rmsprop", "alpha", "0.99"
                  "adamax", "lr", "0.002"; "nadam", "lr", "0.002"; "nadam", "momentum_decay", "0.004"
                  "adamw", "weight_decay", "0.01"; "adabound", "final_lr", "0.1"; "adabound", "gamma", "0.001"
                  "radam", "threshold", "5"; "amsgrad", "debias", "true"; "gradient-noise", "gamma", "0.55" ]
            for name, opt, value in expected do
                Expect.equal (defaultOf name opt) value $"{name} {opt}"

        testCase "aliases name the classic three" <| fun () ->
            for alias, full in [ "sgd-hd", "sgd_op-sgd_lop"; "sgdn-hd", "sgdn_op-sgd_lop"; "adam-hd", "adam_op-sgd_lop" ] do
                Expect.equal (Registry.createOptimizer alias []).Name full alias

        testCase "a plain number given typed is read as that number, never through text" <| fun () ->
            // eps = 1: a step of lr * g / (|g| + 1) instead of lr * sign(g)
            let typed = Registry.createOptimizerWith "adam" [ "lr", "0.1" ] (Map.ofList [ "eps", Hyper.Fixed 1.0 ])
            let texted = Registry.createOptimizer "adam" [ "lr", "0.1"; "eps", "1" ]
            let p = tree1 [ 2.0 ]
            let step (o: Transformation) = floats (fst (Transform.stepOps o (tree1 [ 1.0 ]) (o.Init p) p))
            Expect.equal (step typed) (step texted) "the same step as eps=1 given as text"
            closeTo Tol.veryHigh (step typed).[0] (2.0 - 0.1 * 1.0 / (1.0 + 1.0)) "2 - lr g / (|g| + eps)"
            throwsNaming [ "given twice" ] (fun () -> Registry.createScheduled "adam" [ "lr", "0.1" ] (Some 0.2) None None |> ignore)
    ]
