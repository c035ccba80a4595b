/// Optimizer trajectories against values computed independently of the implementation:
///   by hand:        numbers worked out on paper (the foundation: SGD, momentum, Nesterov, Adam)
///   transcriptions: a few steps against plain-float transcriptions of the published formulas
///                   (ReferenceFormulas.fs): Adam, and the hand-designed catalog of issue 3 (Adagrad,
///                   RMSProp, Adamax, AMSGrad, AdaBound, AMSBound, RAdam, Nadam, AdamW, SGDW(M),
///                   SWATS and gradient noise)
/// PyTorch's own torch.optim trajectories are in TorchTests.fs.
module Optimizers.Tests.ReferenceTests

open Expecto
open TorchSharp
open Optimizers
open Optimizers.Handcrafted
open Optimizers.Tests.Check
open Optimizers.Tests.ReferenceFormulas

/// Run the library on Rosenbrock's closed-form gradient.
let implRun (opt: Transformation) (start: float[]) (n: int) : float[] list =
    trajectory opt (fun p -> tree1 (List.ofArray (rosenGrad (floats p)))) (tree1 (List.ofArray start)) n

/// A reference test: 25 steps of the library against the transcription, from (-1.5, 2) on Rosenbrock.
let refCase (name: string) (opt: Transformation) (step: float[] -> float[] -> float[]) =
    testCase name <| fun () ->
        let n = 25
        let ours = implRun opt rosenStart n
        let theirs = Ref.run step rosenStart n
        List.iteri2 (fun k a e -> closeRel 1e-11 a e $"{name}, step {k + 1}") ours theirs

[<Tests>]
let tests =
    testList "reference" [
        testList "by hand" [
            // grad = 2x from x0 = (1, -2); the numbers below are worked out on paper.
            testCase "sgd" <| fun () ->
                let opt = Sgd.create { Sgd.defaults with Lr = Hyper.Fixed 0.1 }
                closeRel 1e-15 (trajectory opt grad2x (tree1 [ 1.0; -2.0 ]) 2 |> Array.concat) [| 0.8; -1.6; 0.64; -1.28 |] "x1, x2"
            testCase "momentum" <| fun () ->
                // b1 = g1 = (2, -4); x1 = (0.8, -1.6); g2 = (1.6, -3.2); b2 = 0.9 b1 + g2 = (3.4, -6.8)
                let opt = Sgd.create { Sgd.momentumDefaults with Lr = Hyper.Fixed 0.1 }
                closeRel 1e-15 (trajectory opt grad2x (tree1 [ 1.0; -2.0 ]) 2 |> Array.concat) [| 0.8; -1.6; 0.46; -0.92 |] "x1, x2"
            testCase "nesterov" <| fun () ->
                // d1 = g1 + 0.9 b1 = (3.8, -7.6); x1 = (0.62, -1.24); g2 = (1.24, -2.48);
                // b2 = (3.04, -6.08); d2 = g2 + 0.9 b2 = (3.976, -7.952); x2 = (0.2224, -0.4448)
                let opt = Sgd.create { Sgd.nesterovDefaults with Lr = Hyper.Fixed 0.1 }
                closeRel 1e-15 (trajectory opt grad2x (tree1 [ 1.0; -2.0 ]) 2 |> Array.concat) [| 0.62; -1.24; 0.2224; -0.4448 |] "x1, x2"
            testCase "momentum with dampening starts its buffer at the gradient" <| fun () ->
                // torch.optim.SGD: b1 = g1 (no dampening on the first step); b2 = 0.9 b1 + 0.5 g2
                // x1 = 1 - 0.1 * 2 = 0.8; g2 = 1.6; b2 = 1.8 + 0.8 = 2.6; x2 = 0.8 - 0.26 = 0.54
                let opt = Sgd.create { Sgd.momentumDefaults with Lr = Hyper.Fixed 0.1; Dampening = Hyper.Fixed 0.5 }
                closeRel 1e-15 (trajectory opt grad2x (tree1 [ 1.0 ]) 2 |> Array.concat) [| 0.8; 0.54 |] "x1, x2"
            testCase "adam's first step is lr times the sign of the gradient (up to eps)" <| fun () ->
                // m1/(1-b1) = g, v1/(1-b2) = g^2: x1 = x0 - lr g / (|g| + eps)
                let opt = Adam.create { Adam.defaults with Lr = Hyper.Fixed 0.1 }
                let x1 = trajectory opt grad2x (tree1 [ 1.0; -2.0 ]) 1 |> List.head
                closeRel 1e-15 x1 [| 1.0 - 0.1 * 2.0 / (2.0 + 1e-8); -2.0 + 0.1 * 4.0 / (4.0 + 1e-8) |] "x1"
            testCase "adam follows the published algorithm for 50 steps" <| fun () ->
                for lr, b1, b2, eps in [ 0.1, 0.9, 0.999, 1e-8; 0.03, 0.5, 0.9, 1e-3 ] do
                    let opt = Adam.create { Adam.defaults with Lr = Hyper.Fixed lr; Beta1 = Hyper.Fixed b1; Beta2 = Hyper.Fixed b2; Eps = eps }
                    let ours = trajectory opt grad2x (tree1 [ 1.0; -2.0; 0.5 ]) 50
                    let formula = Ref.adamOnSquares lr b1 b2 eps [| 1.0; -2.0; 0.5 |] 50
                    List.iteri2 (fun t a e -> closeRel 1e-13 a e $"lr {lr} b1 {b1}: step {t + 1}") ours formula
        ]

        testList "transcriptions" [
            refCase "adagrad default" (Adagrad.create Adagrad.defaults) (Ref.adagrad 1e-2 0.0 0.0 0.0 1e-10)
            refCase "adagrad lr_decay, wd, initial accumulator"
                (Adagrad.create { Adagrad.defaults with Lr = F 0.3; LrDecay = F 0.05; WeightDecay = F 0.1; InitialAccumulatorValue = 0.5; Eps = 1e-6 })
                (Ref.adagrad 0.3 0.05 0.1 0.5 1e-6)
            refCase "rmsprop default" (RmsProp.create RmsProp.defaults) (Ref.rmsprop 1e-2 0.99 1e-8 0.0 0.0 false)
            refCase "rmsprop centered, momentum, wd"
                (RmsProp.create { RmsProp.defaults with Lr = F 3e-3; Alpha = F 0.9; Momentum = F 0.7; Centered = true; WeightDecay = F 0.05; Eps = 1e-4 })
                (Ref.rmsprop 3e-3 0.9 1e-4 0.05 0.7 true)
            refCase "adamax default" (Adamax.create Adamax.defaults) (Ref.adamax 2e-3 0.9 0.999 1e-8 0.0)
            refCase "adamax lr, betas, wd"
                (Adamax.create { Adamax.defaults with Lr = F 0.05; Beta1 = F 0.8; Beta2 = F 0.95; WeightDecay = F 0.1 })
                (Ref.adamax 0.05 0.8 0.95 1e-8 0.1)
            refCase "amsgrad default (debiased)" (AmsGrad.create AmsGrad.defaults) (Ref.adam 1e-3 0.9 0.999 1e-8 0.0 true true false)
            refCase "amsgrad debias=false (the lecture's form), wd"
                (AmsGrad.create { AmsGrad.defaults with Lr = F 0.02; Beta2 = F 0.9; WeightDecay = F 0.01; Debias = false })
                (Ref.adam 0.02 0.9 0.9 1e-8 0.01 true false false)
            refCase "adabound default" (AdaBound.create AdaBound.defaults) (Ref.adabound 1e-3 0.9 0.999 0.1 1e-3 1e-8 0.0 false)
            refCase "adabound fast bounds, wd"
                (AdaBound.create { AdaBound.defaults with Lr = F 0.02; Beta2 = F 0.9; FinalLr = F 0.02; Gamma = F 0.05; WeightDecay = F 0.01 })
                (Ref.adabound 0.02 0.9 0.9 0.02 0.05 1e-8 0.01 false)
            refCase "amsbound fast bounds"
                (AdaBound.create { AdaBound.amsboundDefaults with Lr = F 0.02; Beta2 = F 0.9; FinalLr = F 0.02; Gamma = F 0.05 })
                (Ref.adabound 0.02 0.9 0.9 0.02 0.05 1e-8 0.0 true)
            refCase "radam default (both phases)" (RAdam.create RAdam.defaults) (Ref.radam 1e-3 0.9 0.999 1e-8 0.0 5.0)
            refCase "radam beta2 0.9, threshold 4, wd"
                (RAdam.create { RAdam.defaults with Lr = F 0.01; Beta2 = F 0.9; Threshold = 4.0; WeightDecay = F 0.01 })
                (Ref.radam 0.01 0.9 0.9 1e-8 0.01 4.0)
            refCase "nadam default" (NAdam.create NAdam.defaults) (Ref.nadam 2e-3 0.9 0.999 1e-8 0.0 4e-3)
            refCase "nadam momentum_decay, wd"
                (NAdam.create { NAdam.defaults with Lr = F 0.05; Beta1 = F 0.95; MomentumDecay = 0.05; WeightDecay = F 0.01 })
                (Ref.nadam 0.05 0.95 0.999 1e-8 0.01 0.05)
            refCase "adamw default" (AdamW.create AdamW.defaults) (Ref.adam 1e-3 0.9 0.999 1e-8 1e-2 false true true)
            refCase "adamw wd 0.1, amsgrad"
                (AdamW.create { AdamW.defaults with Lr = F 0.02; WeightDecay = F 0.1; Amsgrad = true })
                (Ref.adam 0.02 0.9 0.999 1e-8 0.1 true true true)
            refCase "sgdw" (Sgdw.create { Sgdw.defaults with Lr = F 5e-4; WeightDecay = F 0.1 }) (Ref.sgdw 5e-4 0.0 0.0 0.1 false)
            refCase "sgdwm" (Sgdw.create { Sgdw.momentumDefaults with Lr = F 1e-4 }) (Ref.sgdw 1e-4 0.9 0.0 1e-2 false)
            refCase "sgdwm nesterov, wd 0.2"
                (Sgdw.create { Sgdw.momentumDefaults with Lr = F 1e-4; Momentum = F 0.8; WeightDecay = F 0.2; Nesterov = true })
                (Ref.sgdw 1e-4 0.8 0.0 0.2 true)
            refCase "sgdwm dampening"
                (Sgdw.create { Sgdw.momentumDefaults with Lr = F 1e-4; Dampening = F 0.3 })
                (Ref.sgdw 1e-4 0.9 0.3 1e-2 false)

            testCase "swats switches where the transcription does, and reports it" <| fun () ->
                // Rosenbrock's gradient scaled by 1 + 0.5 sin(1.7 k) at step k, so that the projected
                // learning rate fluctuates and the switch can come mid-run, as with minibatch noise.
                let grad k (p: float[]) = rosenGrad p |> Array.map (fun g -> (1.0 + 0.5 * sin (1.7 * float k)) * g)
                for switchEps, lr, expectedSwitch in [ 1e-9, 1e-2, None; 1e-5, 1e-2, Some 5; 2e-7, 1e-3, Some 11; 1e9, 5e-3, Some 2 ] do
                    let opt = Swats.create { Swats.defaults with Lr = F lr; SwitchEps = switchEps; WeightDecay = F 0.01 }
                    let step, switchedAt, sgdLr = Ref.swats lr 0.9 0.999 1e-9 switchEps 0.01
                    let n = 40
                    let mutable q = rosenStart
                    let theirs =
                        [ for k in 1..n do
                            q <- step q (grad k q)
                            yield q ]
                    let mutable p = tree1 (List.ofArray rosenStart)
                    let mutable s = opt.Init p
                    let ours =
                        [ for k in 1..n do
                            let p', s' = Transform.step opt (tree1 (List.ofArray (grad k (floats p)))) s p
                            p <- p'
                            s <- s'
                            yield floats p ]
                    List.iteri2 (fun k a e -> closeRel 1e-10 a e $"swats switch_eps={switchEps}, step {k + 1}") ours theirs
                    Expect.equal (switchedAt ()) expectedSwitch $"the transcription switches at {expectedSwitch}"
                    Expect.equal (Swats.switchStep s) expectedSwitch $"switch step reported, switch_eps={switchEps}"
                    match Swats.sgdLearningRate s with
                    | Some l -> closeRel 1e-10 [| l |] [| sgdLr () |] "estimated SGD learning rate"
                    | None -> Expect.isNone expectedSwitch "no estimate before the switch"
                // The run with switch_eps = 1e9 must switch at k = 2, the first step allowed.
                let _, s = using (torch.NewDisposeScope()) (fun _ ->
                    let task = Tasks.Synthetic.rosenbrock 1.0 100.0 (Some rosenStart)
                    let p0 = task.Init { Tasks.TaskInit.Default with Dtype = f64 }
                    let p, s = Run.optimize task (Swats.create { Swats.defaults with SwitchEps = 1e9 }) p0 5 (fun _ _ _ -> ())
                    Tree.moveToOuterScope p, State.moveToOuterScope s)
                Expect.equal (Swats.switchStep s) (Some 2) "switch_eps = 1e9 switches at the second step"

            testCase "gradient noise: variance eta / (1 + t)^gamma, deterministic from the seed" <| fun () ->
                let n = 40000
                let zero = Tree.single "x" (torch.zeros([| int64 n |], dtype = f64))
                let eta, gamma = 0.3, 0.55
                let opt = GradientNoise.wrap { Eta = F eta; Gamma = F gamma; Seed = 7 } (Sgd.create { Sgd.defaults with Lr = F 1.0 })
                let mutable s = opt.Init zero
                for t in 0..3 do
                    let u, s' = opt.Update zero s zero
                    s <- s'
                    let xs = floats u
                    let mean = Array.average xs
                    let var = xs |> Array.averageBy (fun x -> (x - mean) ** 2.0)
                    let expected = eta / (1.0 + float t) ** gamma
                    closeTo { Abs = 4.0 * sqrt (expected / float n); Rel = 0.0 } mean 0.0 $"mean of the noise at t={t}"
                    closeTo { Abs = 0.0; Rel = 0.03 } var expected $"variance at t={t}"
                let noiseOf seed =
                    let o = GradientNoise.addNoise { Eta = F 1.0; Gamma = F 0.55; Seed = seed }
                    let u, _ = o.Update (tree1 [ 0.0; 0.0; 0.0 ]) (o.Init (tree1 [ 0.0; 0.0; 0.0 ])) (tree1 [ 0.0; 0.0; 0.0 ])
                    floats u
                Expect.equal (noiseOf 3) (noiseOf 3) "same seed, same noise"
                Expect.notEqual (noiseOf 3) (noiseOf 4) "another seed, other noise"

            testCase "gradient noise with eta = 0 is its inner SGD exactly" <| fun () ->
                let sgd = { Sgd.momentumDefaults with Lr = F 1e-4 }
                let ours = implRun (GradientNoise.create { GradientNoise.defaults with Eta = F 0.0 } sgd) rosenStart 10
                let plain = implRun (Sgd.create sgd) rosenStart 10
                Expect.equal ours plain "eta = 0"
        ]
    ]
