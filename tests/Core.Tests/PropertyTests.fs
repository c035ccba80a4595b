/// Laws the optimizers obey, checked by FsCheck on random inputs:
///   foundation: SGD, momentum, Nesterov and Adam (scale behaviour, chain laws, purity, determinism)
///   catalog:    the hand-designed catalog of issue 3 (AdamW = Adam at weight_decay 0, AMSGrad's
///               maximum, RAdam's phases, AdaBound's bounds, gradient-scale invariance where the
///               maths says so)
module Optimizers.Tests.PropertyTests

open Expecto
open FsCheck
open FsCheck.FSharp
open Optimizers
open Optimizers.Handcrafted
open Optimizers.Transforms
open Optimizers.Tests.Check

/// The optimizers of the foundation with non-default settings, for laws that hold for all.
let private all : (string * Transformation) list =
    [ "sgd", Sgd.create { Sgd.defaults with Lr = Hyper.Fixed 0.1; WeightDecay = Hyper.Fixed 0.01 }
      "momentum", Sgd.create { Sgd.momentumDefaults with Lr = Hyper.Fixed 0.1; Dampening = Hyper.Fixed 0.3 }
      "nesterov", Sgd.create { Sgd.nesterovDefaults with Lr = Hyper.Fixed 0.1 }
      "adam", Adam.create { Adam.defaults with Lr = Hyper.Fixed 0.1; WeightDecay = Hyper.Fixed 0.01 } ]

// ---------------------------------------------------------------------------------------------
// The catalog's generators and helpers.

let private catalogConfig = { FsCheckConfig.defaultConfig with maxTest = 40; endSize = 10 }

/// A gradient entry: magnitude in [0.1, 5], either sign.
let private genEntry = gen {
    let! m = Gen.choose (100, 5000)
    let! s = Gen.elements [ -1.0; 1.0 ]
    return s * float m / 1000.0 }

/// 1..8 steps of gradients in 1..4 dimensions.
let private genGrads = gen {
    let! n = Gen.choose (1, 8)
    let! d = Gen.choose (1, 4)
    return! Gen.arrayOfLength n (Gen.arrayOfLength d genEntry) }

let private genUnit lo hi = Gen.choose (0, 1000) |> Gen.map (fun i -> lo + (hi - lo) * float i / 1000.0)

/// The updates an optimizer makes at fixed params for a sequence of gradients.
let private updatesAt (opt: Transformation) (p: float[]) (grads: float[][]) : float[][] * State =
    let pt = tree1 (List.ofArray p)
    let mutable s = opt.Init pt
    let us =
        [| for g in grads do
             let u, s' = opt.Update (tree1 (List.ofArray g)) s pt
             s <- s'
             yield floats u |]
    us, s

let rec private findState (kind: string) (s: State) : State option =
    if s.Kind = kind then Some s else List.tryPick (findState kind) s.Children

/// Updates step by step within a relative tolerance and no absolute part: the updates are far
/// below 1, where closeRel would be absolute.
let private closeUpdates (rel: float) (actual: float[][]) (expected: float[][]) (what: string) =
    Expect.equal actual.Length expected.Length $"{what}: steps"
    Array.iteri2 (fun k a e -> closeAll { Abs = 0.0; Rel = rel } a e $"{what}, step {k + 1}") actual expected

let private scaleAll (c: float) (grads: float[][]) = grads |> Array.map (Array.map (fun g -> c * g))

/// Optimizers whose updates the maths says are invariant to the gradient's scale (eps -> 0).
let private invariant : (string * Transformation) list =
    let eps = 1e-30
    [ "adamax", Adamax.create { Adamax.defaults with Eps = eps }
      "amsgrad", AmsGrad.create { AmsGrad.defaults with Eps = eps }
      "amsgrad debias=false", AmsGrad.create { AmsGrad.defaults with Eps = eps; Debias = false }
      "nadam", NAdam.create { NAdam.defaults with Eps = eps }
      "adamw wd=0", AdamW.create { AdamW.defaults with Eps = eps; WeightDecay = F 0.0 }
      "adamw wd=0.1 (the decoupled decay does not see the gradient)", AdamW.create { AdamW.defaults with Eps = eps; WeightDecay = F 0.1 }
      "adagrad", Adagrad.create { Adagrad.defaults with Eps = eps }
      "rmsprop", RmsProp.create { RmsProp.defaults with Eps = eps }
      "rmsprop centered, momentum", RmsProp.create { RmsProp.defaults with Eps = eps; Centered = true; Momentum = F 0.9 }
      "adabound with bounds that never bind", AdaBound.create { AdaBound.defaults with Eps = eps; FinalLr = F 1.0; Gamma = F 0.0 } ]

[<Tests>]
let tests =
    testList "properties" [
        testList "foundation" [
            testPropertyWithConfig problemConfig "adam's updates are invariant to scaling the gradient (eps -> 0)" <| fun (pr: Problem) (Scale c) ->
                let adam = Adam.create { Adam.defaults with Lr = Hyper.Fixed 0.1; Eps = 1e-300 }
                List.iter2 (fun a b -> closeRel 1e-12 a b $"scaled by {c}") (updates adam pr c) (updates adam pr 1.0)

            testPropertyWithConfig problemConfig "sgd's updates scale with the gradient" <| fun (pr: Problem) (Scale c) ->
                let sgd = Sgd.create { Sgd.momentumDefaults with Lr = Hyper.Fixed 0.1 }
                let unit = updates sgd pr 1.0 |> List.map (Array.map (fun x -> c * x))
                List.iter2 (fun a b -> closeRel 1e-12 a b $"scaled by {c}") (updates sgd pr c) unit

            testPropertyWithConfig problemConfig "chain is associative: (a, b), c = a, (b, c) = a, b, c" <| fun (pr: Problem) ->
                // three parts with state and with different effects, so an order or nesting mistake shows
                let a = Clip.byValue (Hyper.Fixed 5.0)
                let b = Moments.adam (Hyper.Fixed 0.9) (Hyper.Fixed 0.999) 1e-8 0.0
                let c = ScaleBy.momentum (Hyper.Fixed 0.5) (Hyper.Fixed 0.0) false
                let flat = updates (Combine.chain [ a; b; c ]) pr 3.0
                Expect.equal (updates (Combine.chain [ Combine.chain [ a; b ]; c ]) pr 3.0) flat "left-nested"
                Expect.equal (updates (Combine.chain [ a; Combine.chain [ b; c ] ]) pr 3.0) flat "right-nested"

            for name, opt in all do
                testPropertyWithConfig problemConfig $"{name}: update never changes its inputs" <| fun (pr: Problem) ->
                    let p = treeOf pr.Start
                    let g = treeOf pr.Grads[0]
                    let _, s1 = opt.Update g (opt.Init p) p
                    let before = floats g, floats p, State.tensors s1 |> List.map (fun t -> floats (Tree.single "t" t))
                    for grad in pr.Grads do opt.Update (treeOf grad) s1 p |> ignore
                    let after = floats g, floats p, State.tensors s1 |> List.map (fun t -> floats (Tree.single "t" t))
                    Expect.equal after before "gradients, params and state after updates"

                testPropertyWithConfig problemConfig $"{name}: chained with the identity on either side it is unchanged" <| fun (pr: Problem) ->
                    let expected = updates opt pr 1.0
                    Expect.equal (updates (Combine.chain [ Transform.identity; opt ]) pr 1.0) expected "identity first"
                    Expect.equal (updates (Combine.chain [ opt; Transform.identity ]) pr 1.0) expected "identity last"

                testPropertyWithConfig problemConfig $"{name}: the same inputs give the same outputs" <| fun (pr: Problem) ->
                    Expect.equal (updates opt pr 1.0) (updates opt pr 1.0) "two runs"
        ]

        testList "catalog" [
            testPropertyWithConfig catalogConfig "adamw with weight_decay 0 equals adam"
                (forAll ((Gen.zip3 genGrads (genUnit 1e-4 0.1) (Gen.zip (genUnit 0.0 0.99) (genUnit 0.5 0.9999)))) (fun (grads, lr, (b1, b2)) ->
                    let p = Array.init grads[0].Length (fun i -> 0.5 - float i)
                    let w, _ = updatesAt (AdamW.create { AdamW.defaults with Lr = F lr; Beta1 = F b1; Beta2 = F b2; WeightDecay = F 0.0 }) p grads
                    let a, _ = updatesAt (Adam.create { Adam.defaults with Lr = F lr; Beta1 = F b1; Beta2 = F b2 }) p grads
                    Expect.equal w a "adamw (wd = 0) and adam updates"))

            testPropertyWithConfig catalogConfig "amsgrad's max of v never decreases and bounds v"
                (forAll ((Gen.zip3 genGrads (genUnit 0.5 0.999) (Gen.elements [ true; false ]))) (fun (grads, b2, debias) ->
                    let opt = AmsGrad.create { AmsGrad.defaults with Beta2 = F b2; Debias = debias }
                    let pt = tree1 (List.init grads[0].Length (fun _ -> 1.0))
                    let mutable s = opt.Init pt
                    let mutable prev = Array.zeroCreate<float> grads[0].Length
                    for g in grads do
                        let _, s' = opt.Update (tree1 (List.ofArray g)) s pt
                        s <- s'
                        let st = (findState "scale_by_amsgrad" s).Value
                        let vmax = floats (st.Slot "max_exp_avg_sq")
                        let v = floats (st.Slot "exp_avg_sq")
                        Expect.isTrue (Array.forall2 (>=) vmax prev) "vmax never decreases"
                        Expect.isTrue (Array.forall2 (>=) vmax v) "vmax >= v"
                        prev <- vmax))

            testPropertyWithConfig catalogConfig "radam is bias-corrected momentum SGD while rho_t <= threshold"
                (forAll ((Gen.zip3 genGrads (genUnit 0.0 0.95) (Gen.zip (genUnit 0.9 0.9999) (genUnit 4.0 12.0)))) (fun (grads, b1, (b2, threshold)) ->
                    let lr = 0.01
                    let p = Array.zeroCreate<float> grads[0].Length
                    let us, _ = updatesAt (RAdam.create { RAdam.defaults with Lr = F lr; Beta1 = F b1; Beta2 = F b2; Threshold = threshold }) p grads
                    let mutable m = Array.zeroCreate<float> p.Length
                    for k in 0 .. grads.Length - 1 do
                        let t = k + 1
                        m <- Array.map2 (fun mi gi -> b1 * mi + (1.0 - b1) * gi) m grads.[k]
                        if RAdam.rho b2 t <= threshold then
                            let sgd = m |> Array.map (fun mi -> -lr * mi / (1.0 - b1 ** float t))
                            closeRel 1e-13 us.[k] sgd $"un-rectified step {t}"))

            testCase "radam's rho_t: 1 at the first step, increasing to rho_inf" <| fun () ->
                for b2 in [ 0.9; 0.99; 0.999 ] do
                    closeTo Tol.veryHigh (RAdam.rho b2 1) 1.0 "rho_1 = 1"
                    let rhos = [ for t in 1..150 -> RAdam.rho b2 t ]
                    Expect.isTrue (List.pairwise rhos |> List.forall (fun (a, b) -> b > a)) "increasing"
                    Expect.isLessThan (List.last rhos) (2.0 / (1.0 - b2) - 1.0) "below rho_inf"
                    closeTo Tol.high (RAdam.rho b2 100000) (2.0 / (1.0 - b2) - 1.0) "tends to rho_inf"

            testPropertyWithConfig catalogConfig "adabound's effective step lies within its bounds"
                (forAll ((Gen.zip3 genGrads (Gen.zip (genUnit 1e-4 1.0) (genUnit 1e-3 1.0)) (Gen.zip (genUnit 1e-4 0.5) (Gen.elements [ true; false ])))) (fun (grads, (lr, finalLr), (gamma, ams)) ->
                    let opt = AdaBound.create { AdaBound.defaults with Lr = F lr; FinalLr = F finalLr; Gamma = F gamma; AmsBound = ams }
                    let pt = tree1 (List.init grads[0].Length (fun _ -> 0.0))
                    let mutable s = opt.Init pt
                    for k in 0 .. grads.Length - 1 do
                        let u, s' = opt.Update (tree1 (List.ofArray grads.[k])) s pt
                        s <- s'
                        let m = floats ((findState "scale_by_adabound" s).Value.Slot "exp_avg")
                        let lo, hi = AdaBound.bounds finalLr gamma (k + 1)
                        let etas = Array.map2 (fun ui mi -> -ui / mi) (floats u) m
                        for eta in etas do
                            let inside = eta >= lo * (1.0 - 1e-12) && eta <= hi * (1.0 + 1e-12)
                            Expect.isTrue inside $"step {k + 1}: eta = {eta} is outside the bounds {lo} .. {hi}"))

            testPropertyWithConfig catalogConfig "adabound's bounds close in on final_lr monotonically"
                (forAll ((Gen.zip (genUnit 1e-3 1.0) (genUnit 1e-3 0.5))) (fun (finalLr, gamma) ->
                    let bs = [ for t in [ 1; 2; 5; 10; 100; 1000; 100000; 10000000; 1000000000 ] -> AdaBound.bounds finalLr gamma t ]
                    Expect.isTrue (bs |> List.forall (fun (lo, hi) -> lo < finalLr && finalLr < hi)) "lo < final_lr < hi"
                    Expect.isTrue (List.pairwise bs |> List.forall (fun ((l1, h1), (l2, h2)) -> l2 > l1 && h2 < h1)) "lo rises, hi falls"
                    let lo, hi = List.last bs
                    Expect.isLessThan ((hi - lo) / finalLr) 1e-4 "the bounds meet at final_lr"))

            testPropertyWithConfig catalogConfig "gradient-scale invariance where the maths says so (eps -> 0)"
                (forAll ((Gen.zip genGrads (genUnit (-3.0) 3.0))) (fun (grads, logc) ->
                    let c = 10.0 ** logc
                    let p = Array.init grads[0].Length (fun i -> 1.0 - 0.7 * float i)
                    for name, opt in invariant do
                        let a, _ = updatesAt opt p grads
                        let b, _ = updatesAt opt p (scaleAll c grads)
                        closeUpdates 1e-10 b a $"{name}: updates scaled by {c}"))

            testPropertyWithConfig catalogConfig "radam: invariant when rectified, scales with c when not"
                (forAll ((Gen.zip genGrads (genUnit (-3.0) 3.0))) (fun (grads, logc) ->
                    let c = 10.0 ** logc
                    let b2, threshold = 0.9, 5.0
                    let opt = RAdam.create { RAdam.defaults with Beta2 = F b2; Eps = 1e-30; Threshold = threshold }
                    let p = Array.zeroCreate<float> grads[0].Length
                    let a, _ = updatesAt opt p grads
                    let b, _ = updatesAt opt p (scaleAll c grads)
                    for k in 0 .. grads.Length - 1 do
                        let expected = if RAdam.rho b2 (k + 1) > threshold then a.[k] else Array.map (fun x -> c * x) a.[k]
                        closeRel 1e-10 b.[k] expected $"step {k + 1}"))

            testCase "with L2 weight decay in the gradient, the Adam family is not scale invariant" <| fun () ->
                let p = [| 1.0; -2.0 |]
                let grads = [| [| 0.5; 0.3 |]; [| -0.2; 0.4 |]; [| 0.1; -0.6 |] |]
                let coupled =
                    [ "adam", Adam.create { Adam.defaults with WeightDecay = F 0.1 }
                      "amsgrad", AmsGrad.create { AmsGrad.defaults with WeightDecay = F 0.1 }
                      "nadam", NAdam.create { NAdam.defaults with WeightDecay = F 0.1 }
                      "adamax", Adamax.create { Adamax.defaults with WeightDecay = F 0.1 } ]
                for name, opt in coupled do
                    let a, _ = updatesAt opt p grads
                    let b, _ = updatesAt opt p (scaleAll 10.0 grads)
                    let rel = Array.map2 (Array.map2 (fun x y -> abs (x - y) / abs y)) b a |> Array.concat |> Array.max
                    Expect.isGreaterThan rel 1e-2 $"{name} with L2 decay: scaling the gradients by 10 changes the updates"
                // Decoupled decay (AdamW) keeps the invariance for the same decay: see the property above.
                let w = AdamW.create { AdamW.defaults with WeightDecay = F 0.1; Eps = 1e-30 }
                let a, _ = updatesAt w p grads
                let b, _ = updatesAt w p (scaleAll 10.0 grads)
                closeUpdates 1e-12 b a "adamw with the same decay stays invariant"
        ]
    ]
