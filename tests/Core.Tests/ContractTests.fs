/// One contract over every registered optimizer (optax's alias_test in spirit): it builds with
/// its defaults, keeps the parameters' dtype and shapes, never changes its inputs, is
/// deterministic, saves and loads its state, and descends on a convex quadratic (so an optimizer
/// whose update has the wrong sign fails).
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

/// sum(x^2) over the tree, whose gradient is `grads`.
let loss (p: Tree) = Tree.toFloats p |> Array.sumBy (fun x -> x * x)

/// The trained model each learned kind descends with: the shipped one where there is one
/// (models/<kind>.bin), else one of the thesis's (models/thesis/), else None (untrained: such a
/// kind is held only to moving and staying finite, since random meta-parameters need not descend).
let trainedFor (e: OptimizerEntry) : (string * string) list option =
    let thesis = Map.ofList [ "ktimesteps", "ktimesteps-k5.bin"; "kmomentums", "kmomentums-k6.bin"; "msadam-la", "la-a.bin"; "msadam-rnn", "rnn1.bin" ]
    if not (e.Options |> List.exists (fun o -> o.Name = "init_seed")) then Some []
    elif File.Exists(Path.Combine("models", e.Name + ".bin")) then Some []
    else thesis.TryFind e.Name |> Option.map (fun f -> [ "file", Path.Combine("models", "thesis", f) ]) |> Option.filter (fun o -> File.Exists(snd o.Head))

/// 50 steps of `opt` on sum(x^2) from `p`: the last parameters.
let run50 (opt: Transformation) (p: Tree) =
    let mutable q, st = p, opt.Init p
    for _ in 1..50 do
        let u, st' = opt.Update (grads q) st q
        q <- Transform.applyUpdates q u
        st <- st'
    q

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
                // exact for element-wise rules; learned ones run matrix products, whose summation order
                // MKL may change with the threads it gets on a loaded machine (last-place differences)
                let same (a: Tree) (b: Tree) what =
                    if e.Options |> List.exists (fun o -> o.Name = "init_seed") then Check.closeRel 1e-5 (Tree.toFloats a) (Tree.toFloats b) what
                    else Expect.equal (Tree.toFloats a) (Tree.toFloats b) what
                same u1' u1 "deterministic"
                let file = Path.Combine(Path.GetTempPath(), $"contract-{Guid.NewGuid():N}.state")
                Serialization.saveState file opt s1
                let loaded = Serialization.loadState file opt
                File.Delete file
                let p1 = Transform.applyUpdates p u1
                let a, _ = opt.Update (grads p1) s1 p1
                let b, _ = opt.Update (grads p1) loaded p1
                same b a "a loaded state continues exactly"
                // 50 steps on sum(x^2): the parameters move, stay finite and, with a trained or
                // hand-designed rule, the loss falls by at least 1%.
                let q = run50 opt p
                let moved = Array.map2 (fun x y -> abs (x - y)) (Tree.toFloats q) before |> Array.max
                Expect.isGreaterThan moved 0.0 "the parameters moved"
                Expect.all (Tree.toFloats q) Double.IsFinite "and stayed finite"
                match trainedFor e with
                | Some options ->
                    let q = if options = optionsFor e then q else run50 (Registry.createOptimizer e.Name options) p
                    Expect.isLessThan (loss q) (0.99 * loss p) $"{e.Name} descends: the loss after 50 steps is below 0.99 times the start's"
                | None -> ()

        testCase "the descent check fails an optimizer whose update has the wrong sign" <| fun () ->
            let adam = Registry.createOptimizer "adam" []
            let flipped = { adam with Update = fun u s p -> let u', s' = adam.Update u s p in Tree.map (fun x -> -x) u', s' }
            let p = params32 ()
            Expect.isLessThan (loss (run50 adam p)) (0.99 * loss p) "adam descends"
            Expect.isGreaterThan (loss (run50 flipped p)) (loss p) "adam with its sign flipped climbs"
    ]
