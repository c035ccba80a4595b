/// Wrappers around an optimizer: Lookahead and Ranger (Wrappers.fs, Zhang et al. 2019), clipping
/// (Transforms/Clip.fs, as torch.nn.utils.clip_grad_norm_) and masking (Combine.masked). The
/// references are worked out by hand in the comments.
module Optimizers.Tests.WrapperTests

open System
open System.IO
open Expecto
open Optimizers
open Optimizers.Handcrafted
open Optimizers.Transforms
open Optimizers.Tests.Check

[<Tests>]
let tests =
    testList "wrappers" [
        testCase "lookahead by hand: SGD lr 0.5 on x^2/2, k = 2, alpha = 0.5" <| fun () ->
            // fast 1 -> 0.5 -> 0.25; slow 1 + 0.5 (0.25 - 1) = 0.625; fast 0.625 -> 0.3125 -> 0.15625;
            // slow 0.625 + 0.5 (0.15625 - 0.625) = 0.390625
            let la = Wrappers.lookahead 2 (Hyper.Fixed 0.5) (Sgd.create { Sgd.defaults with Lr = Hyper.Fixed 0.5 })
            let traj = trajectory la identityGrad (tree1 [ 1.0 ]) 4
            closeRel 1e-15 (Array.concat traj) [| 0.5; 0.625; 0.3125; 0.390625 |] "lookahead(sgd)"

        testCase "lookahead by hand: the inner momentum survives a synchronisation" <| fun () ->
            // b1 = 1, x = 0.5; b2 = 0.9 + 0.5 = 1.4, fast = 0.5 - 0.7 = -0.2, slow = 1 + 0.5 (-1.2) = 0.4;
            // b3 = 0.9 * 1.4 + 0.4 = 1.66, x = 0.4 - 0.83 = -0.43
            let inner = Sgd.create { Sgd.defaults with Lr = Hyper.Fixed 0.5; Momentum = Hyper.Fixed 0.9 }
            let la = Wrappers.lookahead 2 (Hyper.Fixed 0.5) inner
            let traj = trajectory la identityGrad (tree1 [ 1.0 ]) 3
            closeRel 1e-14 (Array.concat traj) [| 0.5; 0.4; -0.43 |] "lookahead(momentum)"

        testCase "lookahead keeps its slow weights and count in the state" <| fun () ->
            let la = Wrappers.lookahead 2 (Hyper.Fixed 0.5) (Sgd.create { Sgd.defaults with Lr = Hyper.Fixed 0.5 })
            let p0 = tree1 [ 1.0 ]
            let s0 = la.Init p0
            Expect.equal la.Name "lookahead(sgd)" "name records the inner optimizer"
            let p1, s1 = Transform.step la (identityGrad p0) s0 p0
            closeRel 0.0 (floats (s1.Slot "slow")) [| 1.0 |] "slow weights before the first synchronisation"
            let _, s2 = Transform.step la (identityGrad p1) s1 p1
            closeRel 0.0 (floats (s2.Slot "slow")) [| 0.625 |] "slow weights after it"
            Expect.equal s2.Count 2 "count"
            closeRel 0.0 (floats p0) [| 1.0 |] "the input parameters are untouched"

        testCase "lookahead is measured at its slow weights, a chain passes that on, others at their parameters" <| fun () ->
            let sgd = Sgd.create { Sgd.defaults with Lr = Hyper.Fixed 0.5 }
            let la = Wrappers.lookahead 2 (Hyper.Fixed 0.5) sgd
            let p0 = tree1 [ 1.0 ]
            let p1, s1 = Transform.step la (identityGrad p0) (la.Init p0) p0
            // fast 0.5 after one step; the slow weights are still the start
            closeRel 0.0 (floats (Transform.evaluationParams la s1 p1)) [| 1.0 |] "between synchronisations: phi"
            let p2, s2 = Transform.step la (identityGrad p1) s1 p1
            closeRel 0.0 (floats (Transform.evaluationParams la s2 p2)) [| 0.625 |] "after one: phi = theta"
            closeRel 0.0 (floats p2) [| 0.625 |] "theta"
            let chained = Combine.chain [ Clip.byGlobalNorm (Hyper.Fixed 10.0) 2.0; la ]
            let q1, c1 = Transform.step chained (identityGrad p0) (chained.Init p0) p0
            closeRel 0.0 (floats q1) [| 0.5 |] "the chain steps like lookahead"
            closeRel 0.0 (floats (Transform.evaluationParams chained c1 q1)) [| 1.0 |] "a chain with a lookahead part: phi"
            let q, s = Transform.step sgd (identityGrad p0) (sgd.Init p0) p0
            Expect.isTrue (obj.ReferenceEquals(Transform.evaluationParams sgd s q, q)) "sgd: its parameters"
            Expect.isNone (Combine.chain [ sgd ]).Evaluate "a chain without lookahead: its parameters"

        testPropertyWithConfig { FsCheckConfig.defaultConfig with maxTest = 30 } "lookahead with k = 1 and alpha = 1 is its inner optimizer" <| fun (seed: int) (useAdam: bool) ->
            let rng = Random(seed)
            let n = 1 + rng.Next 4
            let start = tree1 [ for _ in 1..n -> rng.NextDouble() * 4.0 - 2.0 ]
            let scale = vec [ for _ in 1..n -> 0.1 + rng.NextDouble() * 3.0 ]
            let grad (p: Tree) = Tree.map (fun x -> x * scale + 0.1) p
            let inner =
                if useAdam then Adam.create { Adam.defaults with Lr = Hyper.Fixed 0.05 }
                else Sgd.create { Sgd.momentumDefaults with Lr = Hyper.Fixed 0.05 }
            let a = trajectory inner grad start 8
            let b = trajectory (Wrappers.lookahead 1 (Hyper.Fixed 1.0) inner) grad start 8
            List.iteri2 (fun i x y -> closeRel 1e-12 y x $"step {i + 1}") a b

        testCase "lookahead validates k, alpha and its state" <| fun () ->
            let sgd = Sgd.create Sgd.defaults
            throwsNaming [ "k = 0" ] (fun () -> Wrappers.lookahead 0 (Hyper.Fixed 0.5) sgd)
            throwsNaming [ "alpha" ] (fun () -> Wrappers.lookahead 5 (Hyper.Fixed 1.5) sgd)
            let la = Wrappers.lookahead 5 (Hyper.Fixed 0.5) sgd
            let p = tree1 [ 1.0 ]
            throwsNaming [ "state of 'sgd'" ] (fun () -> la.Update p (sgd.Init p) p)

        testCase "registry lookahead wraps any optimizer and forwards its options" <| fun () ->
            let la = Registry.createOptimizer "lookahead" [ "inner", "sgd"; "k", "2"; "lr", "0.5" ]
            Expect.equal la.Name "lookahead(sgd)" "inner chosen by name"
            let traj = trajectory la identityGrad (tree1 [ 1.0 ]) 4
            closeRel 1e-15 (Array.concat traj) [| 0.5; 0.625; 0.3125; 0.390625 |] "registry lookahead(sgd)"
            Expect.equal (Registry.createOptimizer "lookahead" []).Name "lookahead(adam)" "adam by default"
            throwsNaming [ "adam: unknown option 'momentum'" ] (fun () -> Registry.createOptimizer "lookahead" [ "momentum", "0.9" ])
            throwsNaming [ "wrappers do not nest" ] (fun () -> Registry.createOptimizer "lookahead" [ "inner", "lookahead" ])
            throwsNaming [ "wrappers do not nest" ] (fun () -> Registry.createOptimizer "lookahead" [ "inner", "ranger" ])
            // schedules reach the inner optimizer (lr) and lookahead itself (alpha): alpha = 0 keeps
            // the slow weights at the start, so every second step returns there
            let hypers = Map.ofList [ "lr", Hyper.Scheduled(Schedule.constant 0.5); "alpha", Hyper.Scheduled(Schedule.constant 0.0) ]
            let la0 = Registry.createOptimizerWith "lookahead" [ "inner", "sgd"; "k", "2" ] hypers
            let traj = trajectory la0 identityGrad (tree1 [ 1.0 ]) 4
            closeRel 1e-15 (Array.concat traj) [| 0.5; 1.0; 0.5; 1.0 |] "scheduled lr and alpha"
            closeTo Tol.tight (Registry.learningRateOf "lookahead" []) 1e-3 "learning rate of a wrapper"
            closeTo Tol.tight (Registry.learningRateOf "lookahead" [ "lr", "0.5" ]) 0.5 "learning rate given"

        testCase "lookahead state saves and loads" <| fun () ->
            let la = Registry.createOptimizer "lookahead" [ "inner", "momentum"; "k", "3" ]
            let p = tree1 [ 1.0; -2.0 ]
            let _, s = Transform.step la (identityGrad p) (la.Init p) p
            let path = Path.Combine(Path.GetTempPath(), $"lookahead-{Guid.NewGuid()}.state")
            try
                Serialization.saveState path la s
                let s' = Serialization.loadState path la
                Expect.equal s'.Count s.Count "count"
                closeRel 0.0 (floats (s'.Slot "slow")) (floats (s.Slot "slow")) "slow weights"
                closeRel 0.0 (floats (s'.Children.Head.Children[1].Slot "momentum_buffer")) (floats (s.Children.Head.Children[1].Slot "momentum_buffer")) "inner momentum"
            finally File.Delete path

        testCase "clip by value (by hand)" <| fun () ->
            let u, _ = (Clip.byValue (Hyper.Fixed 1.0)).Update (tree1 [ -3.0; 0.5; 2.0 ]) (State.empty "clip_by_value") (tree1 [ 0.0; 0.0; 0.0 ])
            closeRel 0.0 (floats u) [| -1.0; 0.5; 1.0 |] "clamped to [-1, 1]"
            throwsNaming [ "clip_value" ] (fun () -> Clip.byValue (Hyper.Fixed 0.0))

        testCase "clip by global norm: torch.nn.utils.clip_grad_norm_ (by hand)" <| fun () ->
            // a = [3, 4], b = [12]: 2-norm sqrt(9 + 16 + 144) = 13; 1-norm 19; inf-norm 12
            let g = Tree.ofSeq [ "a", vec [ 3.0; 4.0 ]; "b", vec [ 12.0 ] ]
            let clip maxNorm normType =
                let t = Clip.byGlobalNorm (Hyper.Fixed maxNorm) normType
                fst (t.Update g (t.Init g) g) |> floats
            closeTo Tol.tight (Clip.globalNorm 2.0 g) 13.0 "global norm"
            let c = 6.5 / (13.0 + 1e-6)
            closeRel 1e-15 (clip 6.5 2.0) [| 3.0 * c; 4.0 * c; 12.0 * c |] "2-norm clipped to 6.5"
            closeRel 0.0 (clip 20.0 2.0) [| 3.0; 4.0; 12.0 |] "below the threshold: unchanged"
            let c1 = 9.5 / (19.0 + 1e-6)
            closeRel 1e-15 (clip 9.5 1.0) [| 3.0 * c1; 4.0 * c1; 12.0 * c1 |] "1-norm"
            let ci = 6.0 / (12.0 + 1e-6)
            closeRel 1e-15 (clip 6.0 Double.PositiveInfinity) [| 3.0 * ci; 4.0 * ci; 12.0 * ci |] "inf-norm"
            closeRel 0.0 (floats g) [| 3.0; 4.0; 12.0 |] "the input is untouched"
            throwsNaming [ "max_norm" ] (fun () -> Clip.byGlobalNorm (Hyper.Fixed -1.0) 2.0)

        testCase "masked: only the selected parameters are transformed" <| fun () ->
            let p = Tree.ofSeq [ "w", vec [ 1.0; 2.0 ]; "b", vec [ 3.0 ] ]
            let u = Tree.ofSeq [ "w", vec [ 0.5; 0.5 ]; "b", vec [ 0.5 ] ]
            let notBias (n: string) = not (n.EndsWith "b")
            // weight decay 0.1 on w only: w: 0.5 + 0.1 * [1, 2]; b passes through
            let decay = ScaleBy.l2WeightDecay (Hyper.Fixed 0.1)
            let m = Combine.masked notBias decay
            let out, _ = m.Update u (m.Init p) p
            Expect.equal out.Names [| "w"; "b" |] "names and order kept"
            closeRel 1e-15 (floats out) [| 0.6; 0.7; 0.5 |] "b passes through"
            let z = Combine.maskedWith Combine.MaskedOut.Zero notBias decay
            let out, _ = z.Update u (z.Init p) p
            closeRel 1e-15 (floats out) [| 0.6; 0.7; 0.0 |] "b gets a zero update"
            // a stateful inner transformation keeps state for the selected parameters only
            let adam = Combine.masked notBias (Adam.create Adam.defaults)
            let s = adam.Init p
            Expect.equal (s.Children.Head.Children[1].Slot "exp_avg").Names [| "w" |] "moments only for w"
            let out, s' = adam.Update u s p
            Expect.equal s'.Count 1 "count"
            let a = -1e-3 * 0.5 / (0.5 + 1e-8) // m^ = 0.5, sqrt(v^) = 0.5
            closeRel 1e-15 (floats out) [| a; a; 0.5 |] "adam's first step on w, b unchanged"
    ]
