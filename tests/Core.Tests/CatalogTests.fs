/// Tests of the hand-designed catalog (issue 3): Adagrad, RMSProp, Adamax, AMSGrad, AdaBound,
/// AMSBound, RAdam, Nadam, AdamW, SGDW(M), SWATS and gradient noise.
///   reference: a few steps against plain-float transcriptions of the published formulas
///   torch:     200-step float64 Rosenbrock trajectories against torch.optim (CSV files written by
///              tests/reference/torch_catalog.py)
///   properties and validation.
module Optimizers.Tests.CatalogTests

open System
open System.IO
open TorchSharp
open Expecto
open FsCheck
open FsCheck.FSharp
open Optimizers
open Optimizers.Handcrafted
open Optimizers.Tests.Check

// ---------------------------------------------------------------------------------------------
// Plain-float transcriptions of the published update rules. Each returns a step function
// p -> g -> p' that keeps its own state; none calls the library.

/// The gradient of Rosenbrock's (1 - x)^2 + 100 (y - x^2)^2, in closed form.
let rosenGrad (p: float[]) =
    let x, y = p[0], p[1]
    [| -2.0 * (1.0 - x) - 400.0 * x * (y - x * x); 200.0 * (y - x * x) |]

module Ref =
    let private zeros (p: float[]) = Array.zeroCreate<float> p.Length

    /// Adagrad (Duchi et al. 2011) with PyTorch's lr_decay, weight_decay and initial accumulator.
    let adagrad lr lrDecay wd init eps =
        let mutable t = 0
        let mutable s: float[] = null
        fun (p: float[]) (g: float[]) ->
            t <- t + 1
            if isNull s then s <- Array.create p.Length init
            let clr = lr / (1.0 + float (t - 1) * lrDecay)
            Array.init p.Length (fun i ->
                let gi = g[i] + wd * p[i]
                s[i] <- s[i] + gi * gi
                p[i] - clr * gi / (sqrt s[i] + eps))

    /// RMSProp (Hinton 2012) as PyTorch writes it (centered variant, momentum on g / d).
    let rmsprop lr alpha eps wd momentum centered =
        let mutable v: float[] = null
        let mutable gbar: float[] = null
        let mutable b: float[] = null
        fun (p: float[]) (g: float[]) ->
            if isNull v then
                v <- zeros p
                gbar <- zeros p
                b <- zeros p
            Array.init p.Length (fun i ->
                let gi = g[i] + wd * p[i]
                v[i] <- alpha * v[i] + (1.0 - alpha) * gi * gi
                let d =
                    if centered then
                        gbar[i] <- alpha * gbar[i] + (1.0 - alpha) * gi
                        sqrt (v[i] - gbar[i] * gbar[i]) + eps
                    else sqrt v[i] + eps
                if momentum > 0.0 then
                    b[i] <- momentum * b[i] + gi / d
                    p[i] - lr * b[i]
                else p[i] - lr * gi / d)

    /// Adamax (Kingma and Ba 2015, sec. 7.1), eps inside the max as PyTorch.
    let adamax lr b1 b2 eps wd =
        let mutable t = 0
        let mutable m: float[] = null
        let mutable u: float[] = null
        fun (p: float[]) (g: float[]) ->
            t <- t + 1
            if isNull m then
                m <- zeros p
                u <- zeros p
            Array.init p.Length (fun i ->
                let gi = g[i] + wd * p[i]
                m[i] <- b1 * m[i] + (1.0 - b1) * gi
                u[i] <- max (b2 * u[i]) (abs gi + eps)
                p[i] - lr / (1.0 - b1 ** float t) * m[i] / u[i])

    /// Adam (Kingma and Ba 2015) with AMSGrad's maximum (Reddi et al. 2018); debias selects
    /// PyTorch's bias-corrected form or the paper's form without it. amsgrad = false: plain Adam.
    /// decoupled = wd is AdamW's (theta shrunk by lr wd), otherwise L2 in the gradient.
    let adam lr b1 b2 eps wd amsgrad debias decoupled =
        let mutable t = 0
        let mutable m: float[] = null
        let mutable v: float[] = null
        let mutable vmax: float[] = null
        fun (p: float[]) (g: float[]) ->
            t <- t + 1
            if isNull m then
                m <- zeros p
                v <- zeros p
                vmax <- zeros p
            Array.init p.Length (fun i ->
                let gi = if decoupled then g[i] else g[i] + wd * p[i]
                let pi = if decoupled then p[i] * (1.0 - lr * wd) else p[i]
                m[i] <- b1 * m[i] + (1.0 - b1) * gi
                v[i] <- b2 * v[i] + (1.0 - b2) * gi * gi
                vmax[i] <- max vmax[i] v[i]
                let vv = if amsgrad then vmax[i] else v[i]
                if debias then
                    let mhat = m[i] / (1.0 - b1 ** float t)
                    let vhat = vv / (1.0 - b2 ** float t)
                    pi - lr * mhat / (sqrt vhat + eps)
                else pi - lr * m[i] / (sqrt vv + eps))

    /// AdaBound / AMSBound as in the authors' reference code (Luo et al. 2019).
    let adabound lr b1 b2 finalLr gamma eps wd amsbound =
        let mutable t = 0
        let mutable m: float[] = null
        let mutable v: float[] = null
        let mutable vmax: float[] = null
        fun (p: float[]) (g: float[]) ->
            t <- t + 1
            if isNull m then
                m <- zeros p
                v <- zeros p
                vmax <- zeros p
            let tt = float t
            let lo = finalLr * (1.0 - 1.0 / (gamma * tt + 1.0))
            let hi = finalLr * (1.0 + 1.0 / (gamma * tt))
            Array.init p.Length (fun i ->
                let gi = g[i] + wd * p[i]
                m[i] <- b1 * m[i] + (1.0 - b1) * gi
                v[i] <- b2 * v[i] + (1.0 - b2) * gi * gi
                vmax[i] <- max vmax[i] v[i]
                let denom = sqrt (if amsbound then vmax[i] else v[i]) + eps
                let eta = lr * sqrt (1.0 - b2 ** tt) / (1.0 - b1 ** tt) / denom
                p[i] - (min hi (max lo eta)) * m[i])

    /// RAdam (Liu et al. 2020, Algorithm 2 with PyTorch's threshold as a parameter).
    let radam lr b1 b2 eps wd threshold =
        let mutable t = 0
        let mutable m: float[] = null
        let mutable v: float[] = null
        fun (p: float[]) (g: float[]) ->
            t <- t + 1
            if isNull m then
                m <- zeros p
                v <- zeros p
            let tt = float t
            let rhoInf = 2.0 / (1.0 - b2) - 1.0
            let rho = rhoInf - 2.0 * tt * b2 ** tt / (1.0 - b2 ** tt)
            Array.init p.Length (fun i ->
                let gi = g[i] + wd * p[i]
                m[i] <- b1 * m[i] + (1.0 - b1) * gi
                v[i] <- b2 * v[i] + (1.0 - b2) * gi * gi
                let mhat = m[i] / (1.0 - b1 ** tt)
                if rho > threshold then
                    let r = sqrt ((rho - 4.0) * (rho - 2.0) * rhoInf / ((rhoInf - 4.0) * (rhoInf - 2.0) * rho))
                    p[i] - lr * mhat * r * sqrt (1.0 - b2 ** tt) / (sqrt v[i] + eps)
                else p[i] - lr * mhat)

    /// Nadam (Dozat 2016) with PyTorch's momentum schedule and torch.optim.NAdam's (1.13) momentum-term product P_t mu_t mu_{t+1}.
    let nadam lr b1 b2 eps wd psi =
        let mutable t = 0
        let mutable prod = 1.0
        let mutable m: float[] = null
        let mutable v: float[] = null
        fun (p: float[]) (g: float[]) ->
            t <- t + 1
            if isNull m then
                m <- zeros p
                v <- zeros p
            let mu = b1 * (1.0 - 0.5 * 0.96 ** (float t * psi))
            let muNext = b1 * (1.0 - 0.5 * 0.96 ** (float (t + 1) * psi))
            prod <- prod * mu
            let prodNext = prod * mu * muNext
            Array.init p.Length (fun i ->
                let gi = g[i] + wd * p[i]
                m[i] <- b1 * m[i] + (1.0 - b1) * gi
                v[i] <- b2 * v[i] + (1.0 - b2) * gi * gi
                let d = sqrt (v[i] / (1.0 - b2 ** float t)) + eps
                p[i] - lr * (1.0 - mu) / (1.0 - prod) * gi / d - lr * muNext / (1.0 - prodNext) * m[i] / d)

    /// SGD with momentum (PyTorch's buffer) and decoupled weight decay (Loshchilov and Hutter).
    let sgdw lr mu dampening wd nesterov =
        let mutable t = 0
        let mutable b: float[] = null
        fun (p: float[]) (g: float[]) ->
            t <- t + 1
            if isNull b then b <- zeros p
            Array.init p.Length (fun i ->
                let d =
                    if mu = 0.0 then g[i]
                    else
                        b[i] <- if t = 1 then g[i] else mu * b[i] + (1.0 - dampening) * g[i]
                        if nesterov then g[i] + mu * b[i] else b[i]
                p[i] - lr * d - lr * wd * p[i])

    /// SWATS (Keskar and Socher 2017, Algorithm 1). Returns the step and the switch step.
    let swats lr b1 b2 eps switchEps wd =
        let mutable k = 0
        let mutable m: float[] = null
        let mutable a: float[] = null
        let mutable v: float[] = null
        let mutable lambda = 0.0
        let mutable sgdLr = 0.0
        let mutable switched: int option = None
        let step (p: float[]) (g: float[]) =
            k <- k + 1
            if isNull m then
                m <- zeros p
                a <- zeros p
                v <- zeros p
            let g = Array.init p.Length (fun i -> g[i] + wd * p[i])
            match switched with
            | Some _ ->
                Array.init p.Length (fun i ->
                    v[i] <- b1 * v[i] + g[i]
                    p[i] - (1.0 - b1) * sgdLr * v[i])
            | None ->
                let kk = float k
                let pk =
                    Array.init p.Length (fun i ->
                        m[i] <- b1 * m[i] + (1.0 - b1) * g[i]
                        a[i] <- b2 * a[i] + (1.0 - b2) * g[i] * g[i]
                        -lr * sqrt (1.0 - b2 ** kk) / (1.0 - b1 ** kk) * m[i] / (sqrt a[i] + eps))
                let ptg = Array.fold2 (fun acc x y -> acc + x * y) 0.0 pk g
                if ptg <> 0.0 then
                    let gamma = Array.sumBy (fun x -> x * x) pk / -ptg
                    lambda <- b2 * lambda + (1.0 - b2) * gamma
                    if k > 1 && abs (lambda / (1.0 - b2 ** kk) - gamma) < switchEps then
                        switched <- Some k
                        sgdLr <- lambda / (1.0 - b2 ** kk)
                        v <- zeros p
                Array.map2 (+) p pk
        step, (fun () -> switched), (fun () -> sgdLr)

    /// Run a transcription from a start on Rosenbrock's gradient.
    let run (step: float[] -> float[] -> float[]) (start: float[]) (n: int) : float[] list =
        let mutable p = start
        [ for _ in 1..n do
            p <- step p (rosenGrad p)
            yield p ]

/// Run the library on the same closed-form gradient.
let implRun (opt: Transformation) (start: float[]) (n: int) : float[] list =
    trajectory opt (fun p -> tree1 (List.ofArray (rosenGrad (floats p)))) (tree1 (List.ofArray start)) n

let start = [| -1.5; 2.0 |]

/// A reference test: n steps of the library against the transcription.
let refCase (name: string) (opt: Transformation) (step: float[] -> float[] -> float[]) =
    testCase name <| fun () ->
        let n = 25
        let ours = implRun opt start n
        let theirs = Ref.run step start n
        List.iteri2 (fun k a e -> closeRel 1e-11 a e $"{name}, step {k + 1}") ours theirs

let F = Hyper.Fixed

let referenceTests =
    testList "reference" [
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
                let mutable q = start
                let theirs =
                    [ for k in 1..n do
                        q <- step q (grad k q)
                        yield q ]
                let mutable p = tree1 (List.ofArray start)
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
                let task = Tasks.Synthetic.rosenbrock 1.0 100.0 (Some start)
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
                Expect.isLessThan (abs mean) (4.0 * sqrt (expected / float n)) $"mean of the noise at t={t}"
                Expect.isLessThan (abs (var / expected - 1.0)) 0.03 $"variance at t={t}: {var} vs {expected}"
            let noiseOf seed =
                let o = GradientNoise.addNoise { Eta = F 1.0; Gamma = F 0.55; Seed = seed }
                let u, _ = o.Update (tree1 [ 0.0; 0.0; 0.0 ]) (o.Init (tree1 [ 0.0; 0.0; 0.0 ])) (tree1 [ 0.0; 0.0; 0.0 ])
                floats u
            Expect.equal (noiseOf 3) (noiseOf 3) "same seed, same noise"
            Expect.notEqual (noiseOf 3) (noiseOf 4) "another seed, other noise"

        testCase "gradient noise with eta = 0 is its inner SGD exactly" <| fun () ->
            let sgd = { Sgd.momentumDefaults with Lr = F 1e-4 }
            let ours = implRun (GradientNoise.create { GradientNoise.defaults with Eta = F 0.0 } sgd) start 10
            let plain = implRun (Sgd.create sgd) start 10
            Expect.equal ours plain "eta = 0"
    ]

// ---------------------------------------------------------------------------------------------
// torch.optim trajectories (tests/reference/torch_catalog.py).

let referenceDir = Path.Combine(AppContext.BaseDirectory, "reference", "catalog")

let readCsv (path: string) : string[][] =
    File.ReadAllLines path |> Array.skip 1 |> Array.filter (fun l -> l.Trim() <> "") |> Array.map (fun l -> l.Split ',')

let parseFloat (s: string) = Double.Parse(s, Globalization.CultureInfo.InvariantCulture)

/// Run a registry optimizer on float64 Rosenbrock from (-1.5, 2); rows (loss, x, y) for steps 0..n.
let rosenbrockRows (name: string) (options: (string * string) list) (n: int) : float[][] =
    let rows = Collections.Generic.List<float[]>()
    use _scope = torch.NewDisposeScope()
    let task = Tasks.Synthetic.rosenbrock 1.0 100.0 (Some start)
    let p0 = task.Init { Tasks.TaskInit.Default with Dtype = f64 }
    let opt = Registry.createOptimizer name options
    Run.optimize task opt p0 n (fun _ loss p -> let xs = floats p in rows.Add [| loss; xs[0]; xs[1] |]) |> ignore
    rows.ToArray()

let torchTests =
    let manifest = readCsv (Path.Combine(referenceDir, "manifest.csv"))
    testList "torch" [
        for row in manifest do
            let case, name, options, source = row[0], row[1], row[2], row[3]
            testCase $"{case} ({source})" <| fun () ->
                let expected = readCsv (Path.Combine(referenceDir, case + ".csv")) |> Array.map (fun r -> r[1..] |> Array.map parseFloat)
                let opts = if options = "" then [] else options.Split ';' |> Array.map Registry.parseAssignment |> List.ofArray
                let actual = rosenbrockRows name opts (expected.Length - 1)
                let mutable worst = 0.0
                let mutable firstFailure = None
                let growth = Collections.Generic.List<string>()
                for k in 0 .. expected.Length - 1 do
                    for j in 0..2 do
                        let a, e = actual[k][j], expected[k][j]
                        let rel = abs (a - e) / max (abs e) 1e-300
                        worst <- max worst rel
                        if not (abs (a - e) <= 1e-9 * abs e + 1e-15) && firstFailure.IsNone then
                            firstFailure <- Some(sprintf "%s: step %d column %d is %.17g, torch %.17g (relative error %.3g)" case k j a e rel)
                    if k % 50 = 0 then growth.Add(sprintf "%d:%.1e" k worst)
                if Environment.GetEnvironmentVariable "CATALOG_VERBOSE" = "1" then
                    printfn "torch %-18s max relative error %.3g (running max by step: %s)" case worst (String.Join(" ", growth))
                match firstFailure with
                | Some msg -> failtest msg
                | None -> ()
    ]

// ---------------------------------------------------------------------------------------------
// Properties.

let config = { FsCheckConfig.defaultConfig with maxTest = 40; endSize = 10 }

let forAll (g: Gen<'a>) (body: 'a -> unit) : Property = Prop.forAll (Arb.fromGen g) body

/// A gradient entry: magnitude in [0.1, 5], either sign.
let genEntry = gen {
    let! m = Gen.choose (100, 5000)
    let! s = Gen.elements [ -1.0; 1.0 ]
    return s * float m / 1000.0 }

/// 1..8 steps of gradients in 1..4 dimensions.
let genGrads = gen {
    let! n = Gen.choose (1, 8)
    let! d = Gen.choose (1, 4)
    return! Gen.arrayOfLength n (Gen.arrayOfLength d genEntry) }

let genUnit lo hi = Gen.choose (0, 1000) |> Gen.map (fun i -> lo + (hi - lo) * float i / 1000.0)

/// The updates an optimizer makes at fixed params for a sequence of gradients.
let updatesAt (opt: Transformation) (p: float[]) (grads: float[][]) : float[][] * State =
    let pt = tree1 (List.ofArray p)
    let mutable s = opt.Init pt
    let us =
        [| for g in grads do
             let u, s' = opt.Update (tree1 (List.ofArray g)) s pt
             s <- s'
             yield floats u |]
    us, s

let rec findState (kind: string) (s: State) : State option =
    if s.Kind = kind then Some s else List.tryPick (findState kind) s.Children

let close (tol: float) (a: float[][]) (b: float[][]) =
    Array.forall2 (Array.forall2 (fun (x: float) y -> abs (x - y) <= tol * max (abs y) 1e-300)) a b

let scaleAll (c: float) (grads: float[][]) = grads |> Array.map (Array.map (fun g -> c * g))

/// Optimizers whose updates the maths says are invariant to the gradient's scale (eps -> 0).
let invariant : (string * Transformation) list =
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

let propertyTests =
    testList "properties" [
        testPropertyWithConfig config "adamw with weight_decay 0 equals adam"
            (forAll ((Gen.zip3 genGrads (genUnit 1e-4 0.1) (Gen.zip (genUnit 0.0 0.99) (genUnit 0.5 0.9999)))) (fun (grads, lr, (b1, b2)) ->
                let p = Array.init grads[0].Length (fun i -> 0.5 - float i)
                let w, _ = updatesAt (AdamW.create { AdamW.defaults with Lr = F lr; Beta1 = F b1; Beta2 = F b2; WeightDecay = F 0.0 }) p grads
                let a, _ = updatesAt (Adam.create { Adam.defaults with Lr = F lr; Beta1 = F b1; Beta2 = F b2 }) p grads
                Expect.equal w a "adamw (wd = 0) and adam updates"))

        testPropertyWithConfig config "amsgrad's max of v never decreases and bounds v"
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

        testPropertyWithConfig config "radam is bias-corrected momentum SGD while rho_t <= threshold"
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
                Expect.floatClose Accuracy.veryHigh (RAdam.rho b2 1) 1.0 "rho_1 = 1"
                let rhos = [ for t in 1..150 -> RAdam.rho b2 t ]
                Expect.isTrue (List.pairwise rhos |> List.forall (fun (a, b) -> b > a)) "increasing"
                Expect.isLessThan (List.last rhos) (2.0 / (1.0 - b2) - 1.0) "below rho_inf"
                Expect.floatClose Accuracy.high (RAdam.rho b2 100000) (2.0 / (1.0 - b2) - 1.0) "tends to rho_inf"

        testPropertyWithConfig config "adabound's effective step lies within its bounds"
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

        testPropertyWithConfig config "adabound's bounds close in on final_lr monotonically"
            (forAll ((Gen.zip (genUnit 1e-3 1.0) (genUnit 1e-3 0.5))) (fun (finalLr, gamma) ->
                let bs = [ for t in [ 1; 2; 5; 10; 100; 1000; 100000; 10000000; 1000000000 ] -> AdaBound.bounds finalLr gamma t ]
                Expect.isTrue (bs |> List.forall (fun (lo, hi) -> lo < finalLr && finalLr < hi)) "lo < final_lr < hi"
                Expect.isTrue (List.pairwise bs |> List.forall (fun ((l1, h1), (l2, h2)) -> l2 > l1 && h2 < h1)) "lo rises, hi falls"
                let lo, hi = List.last bs
                Expect.isLessThan ((hi - lo) / finalLr) 1e-4 "the bounds meet at final_lr"))

        testPropertyWithConfig config "gradient-scale invariance where the maths says so (eps -> 0)"
            (forAll ((Gen.zip genGrads (genUnit (-3.0) 3.0))) (fun (grads, logc) ->
                let c = 10.0 ** logc
                let p = Array.init grads[0].Length (fun i -> 1.0 - 0.7 * float i)
                for name, opt in invariant do
                    let a, _ = updatesAt opt p grads
                    let b, _ = updatesAt opt p (scaleAll c grads)
                    Expect.isTrue (close 1e-10 b a) $"{name}: updates change when the gradients are scaled by {c}"))

        testPropertyWithConfig config "radam: invariant when rectified, scales with c when not"
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
            Expect.isTrue (close 1e-12 b a) "adamw with the same decay stays invariant"
    ]

// ---------------------------------------------------------------------------------------------
// Hyperparameters as tensors: the same code differentiates (hypergradients).

/// d loss(theta_T) / d lr by autograd through T steps on 0.5 * sum(a x^2), against central differences.
let hypergradCase (name: string) (make: Hyper -> Transformation) (lr: float) =
    testCase $"{name}: d loss / d lr by autograd equals finite differences" <| fun () ->
        use _scope = torch.NewDisposeScope()
        let a = vec [ 1.0; 10.0; 0.3 ]
        let x0 = [ 1.0; -0.5; 2.0 ]
        let lossAfter (h: Hyper) =
            let opt = make h
            let mutable p = tree1 x0
            let mutable s = opt.Init p
            for _ in 1..8 do
                let g = Tree.map (fun x -> a * x) p
                let p', s' = Transform.step opt g s p
                p <- p'
                s <- s'
            (p["x"].square() * a).sum() * 0.5
        let lrT = torch.tensor(lr, dtype = f64, requires_grad = true)
        let loss = lossAfter (Hyper.Learnable lrT)
        let grad = torch.autograd.grad([| loss |], [| lrT |]).[0].ToDouble()
        let h = lr * 1e-5
        let fd = ((lossAfter (F (lr + h))).ToDouble() - (lossAfter (F (lr - h))).ToDouble()) / (2.0 * h)
        Expect.isTrue (Double.IsFinite grad) "finite"
        Expect.isLessThan (abs (grad - fd)) (1e-5 * max 1.0 (abs fd)) $"autograd {grad} vs finite differences {fd}"
        Expect.floatClose Accuracy.high (loss.ToDouble()) ((lossAfter (F lr)).ToDouble()) "a tensor lr gives the numbers of a plain lr"

let hypergradTests =
    testList "hypergradients" [
        hypergradCase "adagrad" (fun lr -> Adagrad.create { Adagrad.defaults with Lr = lr; LrDecay = F 0.1 }) 0.1
        hypergradCase "rmsprop centered momentum" (fun lr -> RmsProp.create { RmsProp.defaults with Lr = lr; Centered = true; Momentum = F 0.5 }) 0.01
        hypergradCase "adamax" (fun lr -> Adamax.create { Adamax.defaults with Lr = lr }) 0.05
        hypergradCase "amsgrad" (fun lr -> AmsGrad.create { AmsGrad.defaults with Lr = lr }) 0.05
        hypergradCase "adabound" (fun lr -> AdaBound.create { AdaBound.defaults with Lr = lr; FinalLr = F 0.05; Gamma = F 0.1 }) 0.05
        hypergradCase "radam" (fun lr -> RAdam.create { RAdam.defaults with Lr = lr; Beta2 = F 0.9 }) 0.05
        hypergradCase "nadam" (fun lr -> NAdam.create { NAdam.defaults with Lr = lr }) 0.05
        hypergradCase "adamw" (fun lr -> AdamW.create { AdamW.defaults with Lr = lr; WeightDecay = F 0.1 }) 0.05
        hypergradCase "sgdwm" (fun lr -> Sgdw.create { Sgdw.momentumDefaults with Lr = lr }) 0.02
        hypergradCase "swats (switches at step 2)" (fun lr -> Swats.create { Swats.defaults with Lr = lr; SwitchEps = 1e9 }) 0.05
        hypergradCase "gradient noise" (fun lr -> GradientNoise.create { GradientNoise.defaults with Eta = F 0.1 } { Sgd.defaults with Lr = lr }) 0.02
        testCase "nadam: d loss / d beta1 flows through the mu product" <| fun () ->
            use _scope = torch.NewDisposeScope()
            let lossAfter (b1: Hyper) =
                let opt = NAdam.create { NAdam.defaults with Lr = F 0.05; Beta1 = b1 }
                let mutable p = tree1 [ 1.0; -2.0 ]
                let mutable s = opt.Init p
                for _ in 1..6 do
                    let p', s' = Transform.step opt (Tree.map (fun x -> x * 2.0) p) s p
                    p <- p'
                    s <- s'
                p["x"].square().sum()
            let b = torch.tensor(0.9, dtype = f64, requires_grad = true)
            let grad = torch.autograd.grad([| lossAfter (Hyper.Learnable b) |], [| b |]).[0].ToDouble()
            let h = 1e-6
            let fd = ((lossAfter (F (0.9 + h))).ToDouble() - (lossAfter (F (0.9 - h))).ToDouble()) / (2.0 * h)
            Expect.isLessThan (abs (grad - fd)) (1e-5 * max 1.0 (abs fd)) $"autograd {grad} vs finite differences {fd}"
    ]

// ---------------------------------------------------------------------------------------------
// Validation and the registry.

/// A bad hyperparameter must raise InvalidOptionException naming the optimizer and the argument.
let rejectsIn (context: string) (owner: string) (arg: string) (make: unit -> Transformation) =
    testCase $"{owner} rejects a bad {arg}{context}" <| fun () ->
        try
            make () |> ignore
            failtestf "%s accepted a bad %s" owner arg
        with :? InvalidOptionException as e ->
            Expect.stringContains e.Message owner "the message names the optimizer"
            Expect.stringContains e.Message arg "the message names the argument"
            Expect.equal e.ParamName arg "ParamName"

let rejects owner arg make = rejectsIn "" owner arg make

let validationTests =
    testList "validation" [
        rejects "adagrad" "lr" (fun () -> Adagrad.create { Adagrad.defaults with Lr = F -1.0 })
        rejects "adagrad" "lr_decay" (fun () -> Adagrad.create { Adagrad.defaults with LrDecay = F -0.1 })
        rejects "adagrad" "weight_decay" (fun () -> Adagrad.create { Adagrad.defaults with WeightDecay = F nan })
        rejects "adagrad" "initial_accumulator_value" (fun () -> Adagrad.create { Adagrad.defaults with InitialAccumulatorValue = -1.0 })
        rejects "adagrad" "eps" (fun () -> Adagrad.create { Adagrad.defaults with Eps = 0.0 })
        rejects "rmsprop" "lr" (fun () -> RmsProp.create { RmsProp.defaults with Lr = F -1e-3 })
        rejects "rmsprop" "alpha" (fun () -> RmsProp.create { RmsProp.defaults with Alpha = F 1.0 })
        rejects "rmsprop" "eps" (fun () -> RmsProp.create { RmsProp.defaults with Eps = -1e-8 })
        rejects "rmsprop" "weight_decay" (fun () -> RmsProp.create { RmsProp.defaults with WeightDecay = F -1.0 })
        rejects "rmsprop" "momentum" (fun () -> RmsProp.create { RmsProp.defaults with Momentum = F -0.9 })
        rejects "adamax" "lr" (fun () -> Adamax.create { Adamax.defaults with Lr = F infinity })
        rejects "adamax" "beta1" (fun () -> Adamax.create { Adamax.defaults with Beta1 = F 1.0 })
        rejects "adamax" "beta2" (fun () -> Adamax.create { Adamax.defaults with Beta2 = F -0.1 })
        rejects "adamax" "eps" (fun () -> Adamax.create { Adamax.defaults with Eps = 0.0 })
        rejects "adamax" "weight_decay" (fun () -> Adamax.create { Adamax.defaults with WeightDecay = F -1.0 })
        rejects "amsgrad" "lr" (fun () -> AmsGrad.create { AmsGrad.defaults with Lr = F -1.0 })
        rejects "amsgrad" "beta1" (fun () -> AmsGrad.create { AmsGrad.defaults with Beta1 = F 1.5 })
        rejects "amsgrad" "beta2" (fun () -> AmsGrad.create { AmsGrad.defaults with Beta2 = F 1.0 })
        rejects "amsgrad" "eps" (fun () -> AmsGrad.create { AmsGrad.defaults with Eps = 0.0 })
        rejects "amsgrad" "eps_root" (fun () -> AmsGrad.create { AmsGrad.defaults with EpsRoot = -1.0 })
        rejects "amsgrad" "weight_decay" (fun () -> AmsGrad.create { AmsGrad.defaults with WeightDecay = F -1.0 })
        rejects "adabound" "lr" (fun () -> AdaBound.create { AdaBound.defaults with Lr = F 0.0 })
        rejects "adabound" "beta1" (fun () -> AdaBound.create { AdaBound.defaults with Beta1 = F 1.0 })
        rejects "adabound" "beta2" (fun () -> AdaBound.create { AdaBound.defaults with Beta2 = F 1.0 })
        rejects "adabound" "final_lr" (fun () -> AdaBound.create { AdaBound.defaults with FinalLr = F -0.1 })
        rejects "adabound" "gamma" (fun () -> AdaBound.create { AdaBound.defaults with Gamma = F 1.0 })
        rejects "adabound" "eps" (fun () -> AdaBound.create { AdaBound.defaults with Eps = 0.0 })
        rejects "adabound" "weight_decay" (fun () -> AdaBound.create { AdaBound.defaults with WeightDecay = F -1.0 })
        rejects "amsbound" "gamma" (fun () -> AdaBound.create { AdaBound.amsboundDefaults with Gamma = F -1e-3 })
        rejects "radam" "lr" (fun () -> RAdam.create { RAdam.defaults with Lr = F -1.0 })
        rejects "radam" "beta1" (fun () -> RAdam.create { RAdam.defaults with Beta1 = F 1.0 })
        rejects "radam" "beta2" (fun () -> RAdam.create { RAdam.defaults with Beta2 = F 1.0 })
        rejects "radam" "eps" (fun () -> RAdam.create { RAdam.defaults with Eps = 0.0 })
        rejects "radam" "weight_decay" (fun () -> RAdam.create { RAdam.defaults with WeightDecay = F -1.0 })
        rejects "radam" "threshold" (fun () -> RAdam.create { RAdam.defaults with Threshold = 3.0 })
        rejects "nadam" "lr" (fun () -> NAdam.create { NAdam.defaults with Lr = F -1.0 })
        rejects "nadam" "beta1" (fun () -> NAdam.create { NAdam.defaults with Beta1 = F 1.0 })
        rejects "nadam" "beta2" (fun () -> NAdam.create { NAdam.defaults with Beta2 = F 1.0 })
        rejects "nadam" "eps" (fun () -> NAdam.create { NAdam.defaults with Eps = 0.0 })
        rejects "nadam" "weight_decay" (fun () -> NAdam.create { NAdam.defaults with WeightDecay = F -1.0 })
        rejects "nadam" "momentum_decay" (fun () -> NAdam.create { NAdam.defaults with MomentumDecay = -4e-3 })
        rejects "adamw" "lr" (fun () -> AdamW.create { AdamW.defaults with Lr = F -1.0 })
        rejects "adamw" "beta1" (fun () -> AdamW.create { AdamW.defaults with Beta1 = F 1.0 })
        rejects "adamw" "beta2" (fun () -> AdamW.create { AdamW.defaults with Beta2 = F 1.0 })
        rejects "adamw" "eps" (fun () -> AdamW.create { AdamW.defaults with Eps = 0.0 })
        rejects "adamw" "eps_root" (fun () -> AdamW.create { AdamW.defaults with EpsRoot = -1.0 })
        rejects "adamw" "weight_decay" (fun () -> AdamW.create { AdamW.defaults with WeightDecay = F -1e-2 })
        rejects "sgdw" "lr" (fun () -> Sgdw.create { Sgdw.defaults with Lr = F -1.0 })
        rejects "sgdw" "weight_decay" (fun () -> Sgdw.create { Sgdw.defaults with WeightDecay = F -1.0 })
        rejects "sgdwm" "momentum" (fun () -> Sgdw.create { Sgdw.momentumDefaults with Momentum = F -0.9 })
        rejects "sgdwm" "dampening" (fun () -> Sgdw.create { Sgdw.momentumDefaults with Dampening = F 2.0 })
        rejectsIn " with nesterov" "sgdwm" "dampening" (fun () -> Sgdw.create { Sgdw.momentumDefaults with Dampening = F 0.5; Nesterov = true })
        rejects "swats" "lr" (fun () -> Swats.create { Swats.defaults with Lr = F -1.0 })
        rejects "swats" "beta1" (fun () -> Swats.create { Swats.defaults with Beta1 = F 1.0 })
        rejects "swats" "beta2" (fun () -> Swats.create { Swats.defaults with Beta2 = F 1.0 })
        rejects "swats" "eps" (fun () -> Swats.create { Swats.defaults with Eps = 0.0 })
        rejects "swats" "switch_eps" (fun () -> Swats.create { Swats.defaults with SwitchEps = -1.0 })
        rejects "swats" "weight_decay" (fun () -> Swats.create { Swats.defaults with WeightDecay = F -1.0 })
        rejects "gradient-noise" "eta" (fun () -> GradientNoise.create { GradientNoise.defaults with Eta = F -0.01 } Sgd.defaults)
        rejects "gradient-noise" "gamma" (fun () -> GradientNoise.create { GradientNoise.defaults with Gamma = F -0.55 } Sgd.defaults)
        rejects "sgd" "lr" (fun () -> GradientNoise.create GradientNoise.defaults { Sgd.defaults with Lr = F -1.0 })
        // Through the registry, as the CLI and configs give them.
        rejectsIn " (registry)" "rmsprop" "alpha" (fun () -> Registry.createOptimizer "rmsprop" [ "alpha", "1.5" ])
        rejectsIn " (registry)" "radam" "threshold" (fun () -> Registry.createOptimizer "radam" [ "threshold", "2" ])
        rejectsIn " (registry)" "amsbound" "final_lr" (fun () -> Registry.createOptimizer "amsbound" [ "final_lr", "-1" ])
        rejectsIn " (registry)" "gradient-noise" "seed" (fun () -> Registry.createOptimizer "gradient-noise" [ "seed", "x" ])
    ]

let catalogNames =
    [ "adagrad"; "rmsprop"; "adamax"; "amsgrad"; "adabound"; "amsbound"; "radam"; "nadam"; "adamw"; "sgdw"; "sgdwm"; "swats"; "gradient-noise" ]

let registryTests =
    testList "registry" [
        testCase "every catalog optimizer is registered, builds with its defaults and takes a finite step" <| fun () ->
            for name in catalogNames do
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
            for name in catalogNames do
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
            let dir = Path.Combine(Path.GetTempPath(), $"catalog-{Guid.NewGuid():N}")
            Directory.CreateDirectory dir |> ignore
            try
                for name in catalogNames do
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
            finally
                Directory.Delete(dir, true)
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
    ]

[<Tests>]
let tests =
    testList "catalog" [ referenceTests; torchTests; propertyTests; hypergradTests; validationTests; registryTests ]
