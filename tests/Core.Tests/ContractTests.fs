/// One contract over every registered optimizer (optax's alias_test in spirit): it builds with
/// its defaults, keeps the parameters' dtype and shapes, never changes its inputs, is
/// deterministic, saves and loads its state, and moves a quadratic's loss.
module Optimizers.Tests.ContractTests

open System
open System.IO
open Expecto
open TorchSharp
open Optimizers

/// The options an optimizer needs to run without files (learned ones: untrained theta).
let optionsFor (e: OptimizerEntry) =
    if e.Options |> List.exists (fun o -> o.Name = "init_seed") then [ "init_seed", "0" ] else []

let params32 () =
    Tree.ofSeq [ "w", torch.tensor([| 1.0f; -2.0f; 3.0f; 0.5f |]).reshape(2L, 2L); "b", torch.tensor([| 0.25f; -1.5f |]) ]

let grads (p: Tree) = Tree.map (fun x -> 2.0 * x) p

[<Tests>]
let tests =
    testList "contract" [
        for e in Registry.optimizers do
            testCase $"{e.Name}: dtype, shapes, purity, determinism, state file, progress" <| fun () ->
                let opt = Registry.createOptimizer e.Name (optionsFor e)
                let p = params32 ()
                let before = Tree.toFloats p
                let s = opt.Init p
                let u1, s1 = opt.Update (grads p) s p
                Expect.equal (Tree.toFloats p) before "the parameters are unchanged by update"
                Expect.equal (u1.Values |> Array.map (fun x -> x.shape)) (p.Values |> Array.map (fun x -> x.shape)) "updates shaped like the parameters"
                Expect.all u1.Values (fun x -> x.dtype = torch.ScalarType.Float32) "float32 stays float32"
                let u1', _ = opt.Update (grads p) (opt.Init p) p
                Expect.equal (Tree.toFloats u1') (Tree.toFloats u1) "deterministic"
                let file = Path.Combine(Path.GetTempPath(), $"contract-{Guid.NewGuid():N}.state")
                Serialization.saveState file opt s1
                let loaded = Serialization.loadState file opt
                File.Delete file
                let p1 = Transform.applyUpdates p u1
                let a, _ = opt.Update (grads p1) s1 p1
                let b, _ = opt.Update (grads p1) loaded p1
                Expect.equal (Tree.toFloats b) (Tree.toFloats a) "a loaded state continues exactly"
                // 30 steps on sum(x^2): the parameters move and stay finite.
                let mutable q, st = p, opt.Init p
                for _ in 1..30 do
                    let u, st' = opt.Update (grads q) st q
                    q <- Transform.applyUpdates q u
                    st <- st'
                let moved = Array.map2 (fun x y -> abs (x - y)) (Tree.toFloats q) before |> Array.max
                Expect.isGreaterThan moved 0.0 "the parameters moved"
                Expect.all (Tree.toFloats q) Double.IsFinite "and stayed finite"
    ]
