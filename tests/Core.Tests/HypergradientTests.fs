/// Hypergradients, two ways:
///   hd:       the hypergradient optimizers (Hypergradient/Hd.fs, AutoHd.fs): the closed forms
///             against the base optimizers, against autodiff, against finite differences, and
///             against a plain-float transcription of the published algorithms (Baydin et al. 2018;
///             seed 001's Algorithms 1 and 2; ReferenceFormulas.fs)
///   unrolled: hyperparameters as tensors, so that the same code differentiates: d loss / d lr
///             (and beta1) by autograd through unrolled steps of every hand-designed optimizer,
///             second-order gradients included, against closed forms and finite differences
module Optimizers.Tests.HypergradientTests

open System
open Expecto
open TorchSharp
open Optimizers
open Optimizers.Handcrafted
open Optimizers.Hypergradient
open Optimizers.Tasks
open Optimizers.Tests.Check
open Optimizers.Tests.ReferenceFormulas

let models = [ SgdOp; SgdnOp; AdamOp ]
let lops = [ SgdLop; SgdnLop; AdamLop ]

/// The base optimizer an HD optimizer reduces to with hypergrad_lr = 0.
let baseOf (model: ModelOptimizer) (lr: Hyper) (wd: float) : Transformation =
    match model with
    | SgdOp -> Sgd.create { Sgd.defaults with Lr = lr; WeightDecay = Hyper.Fixed wd }
    | SgdnOp -> Sgd.create { Sgd.nesterovDefaults with Lr = lr; WeightDecay = Hyper.Fixed wd }
    | AdamOp -> Adam.create { Adam.defaults with Lr = lr; WeightDecay = Hyper.Fixed wd }

/// Run an optimizer on a task, returning (params, state) after each update (float64).
let runOn (task: Task) (opt: Transformation) (steps: int) : (Tree * State) list =
    let mutable p = task.Init { TaskInit.Default with Dtype = f64 }
    let mutable s = opt.Init p
    [ for k in 0 .. steps - 1 do
        let _, g = Run.lossAndGrad task k p
        let p', s' = Transform.step opt g s p
        p <- p'
        s <- s'
        yield p, s ]

let rosen = Synthetic.rosenbrock 1.0 100.0 (Some [| -1.5; 2.0 |])
let lossAt (task: Task) (p: Tree) = (task.Loss 0 p).ToDouble()

/// The one value watched under `name` in a state.
let watched (name: string) (s: State) =
    match State.watch name s with
    | [ _, t ] -> t.ToDouble()
    | w -> failtestf "expected one '%s' in the state, found %d" name w.Length

/// Central finite difference of the loss at theta_{t-1} with respect to a hyperparameter used by
/// update t-1 only: `build v` makes the optimizer whose value at update index t-2 is v.
let fdOfUpdate (task: Task) (build: (int -> float) -> Transformation) (value: float) (t: int) =
    let delta = 1e-6 * max 1.0 (abs value)
    let lossWith (v: float) =
        let opt = build (fun k -> if k = t - 2 then v else value)
        runOn task opt (t - 1) |> List.last |> fst |> lossAt task
    (lossWith (value + delta) - lossWith (value - delta)) / (2.0 * delta)

// ---------------------------------------------------------------------------------------------
// Autograd through unrolled steps.

/// Unroll `steps` steps of `opt` on `loss` from x0, keeping the graph (create_graph), and return
/// the loss at the end: a differentiable function of every hyperparameter tensor.
let unrolledLoss (opt: Transformation) (loss: Tensor -> Tensor) (x0: float list) (steps: int) =
    let mutable p = tree1 x0
    let mutable s = opt.Init p
    for _ in 1..steps do
        let x = p["x"]
        let x = if x.requires_grad then x else x.requires_grad_(true)
        let l = loss x
        let g = torch.autograd.grad([| l |], [| x |], retain_graph = true, create_graph = true)
        let p', s' = Transform.step opt (Tree.single "x" g[0]) s (Tree.single "x" x)
        p <- p'
        s <- s'
    loss (p["x"])

let rosenT (x: Tensor) = (1.0 - x[0]).square() + 100.0 * (x[1] - x[0].square()).square()

/// d(loss)/d(h) by autograd, where the optimizer is built from the tensor h.
let hypergrad (make: Tensor -> Transformation) (h0: float) loss x0 steps =
    let h = torch.tensor(h0, dtype = f64, requires_grad = true)
    let l = unrolledLoss (make h) loss x0 steps
    let g = torch.autograd.grad([| l |], [| h |])
    g[0].ToDouble()

/// The loss after unrolled steps without a graph.
let unrolledLossNoGrad (opt: Transformation) (loss: Tensor -> Tensor) (x0: float list) (steps: int) =
    let mutable p = tree1 x0
    let mutable s = opt.Init p
    for _ in 1..steps do
        let x = p["x"].detach().requires_grad_(true)
        let g = torch.autograd.grad([| loss x |], [| x |])
        let p', s' = Transform.step opt (Tree.single "x" g[0]) s (Tree.single "x" (x.detach()))
        p <- p'
        s <- s'
    (loss (p["x"])).ToDouble()

/// The same derivative by central finite differences (float64).
let finiteDiff (make: Tensor -> Transformation) (h0: float) loss x0 steps =
    let at (v: float) =
        let h = torch.tensor(v, dtype = f64)
        unrolledLossNoGrad (make h) loss x0 steps
    let d = 1e-6 * max 1.0 (abs h0)
    (at (h0 + d) - at (h0 - d)) / (2.0 * d)

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
        closeRel 1e-5 [| grad |] [| fd |] "autograd vs finite differences"
        closeTo Tol.high (loss.ToDouble()) ((lossAfter (F lr)).ToDouble()) "a tensor lr gives the numbers of a plain lr"

[<Tests>]
let tests =
    testList "hypergradient" [
        testList "hd" [
            for model in models do
                for lop in lops do
                    for perParameter in [ false; true ] do
                        let o = { Hd.forModel model lop with Lr = 0.01; HypergradLr = Hyper.Fixed 0.0; WeightDecay = 0.01; PerParameter = perParameter }
                        testPropertyWithConfig problemConfig $"{Hd.name o} (per-parameter {perParameter}) with hypergrad_lr = 0 equals its base optimizer exactly" <| fun (pr: Problem) ->
                            Expect.equal (updates (Hd.create o) pr 1.0) (updates (baseOf model (Hyper.Fixed 0.01) 0.01) pr 1.0) "updates"

            testPropertyWithConfig problemConfig "hd (autodiff) with hypergrad_lr = 0 equals its inner optimizer exactly" <| fun (pr: Problem) ->
                let opt = Registry.createOptimizer "hd" [ "inner", "adam"; "adapt", "lr,beta1,beta2"; "hypergrad_lr", "0" ]
                Expect.equal (updates opt pr 1.0) (updates (Registry.createOptimizer "adam" []) pr 1.0) "updates"

            testCase "a non-finite hypergradient (sqrt at v = 0) leaves the hyperparameter unchanged" <| fun () ->
                // A coordinate whose gradients are 0 has v = 0, where d sqrt(v) / d beta2 is infinite.
                let pr = { Grads = [| [| 0.0; 1.0 |]; [| 0.0; -2.0 |]; [| 0.0; 0.5 |] |]; Start = [| 1.0; 1.0 |] }
                let opt = Registry.createOptimizer "hd" [ "inner", "adam"; "adapt", "beta2"; "hypergrad_lr", "0.1" ]
                let p = treeOf pr.Start
                let mutable s = opt.Init p
                for g in pr.Grads do
                    let u, s' = opt.Update (treeOf g) s p
                    Expect.all (floats u) Double.IsFinite "finite updates"
                    s <- s'
                Expect.isTrue (Double.IsFinite(watched "beta2" s)) "beta2 stays a number"

            for model in models do
                testPropertyWithConfig problemConfig $"{Hd.opName model}: the closed-form hypergradient equals the autodiff one" <| fun (pr: Problem) ->
                    let closed = Hd.create { Hd.forModel model SgdLop with Lr = 0.01; HypergradLr = Hyper.Fixed 1e-4; Guard = ClipAtZero }
                    let auto = AutoHd.create "auto" (fun hs -> baseOf model (Hyper.Learnable hs["lr"]) 0.0) [ AutoHd.adapt "lr" 0.01 (Hyper.Fixed 1e-4) ]
                    let states (opt: Transformation) =
                        let p = treeOf pr.Start
                        let mutable s = opt.Init p
                        [ for g in pr.Grads do
                            let _, s' = opt.Update (treeOf g) s p
                            s <- s'
                            yield watched "hypergrad_lr" s', watched "lr" s' ]
                    List.iter2 (fun (h1, a1) (h2, a2) ->
                        closeRel 1e-12 [| h1; a1 |] [| h2; a2 |] "(hypergradient, rate)") (states closed) (states auto)

            for model in models do
                testCase $"{Hd.opName model}: the hypergradient is the derivative of the loss one step ahead (finite differences)" <| fun () ->
                    let alpha0 = if model = AdamOp then 0.01 else 1e-4
                    let t = 6
                    let hd = Hd.create { Hd.forModel model SgdLop with Lr = alpha0; HypergradLr = Hyper.Fixed 0.0 }
                    let h = runOn rosen hd t |> List.last |> snd |> watched "hypergrad_lr"
                    let fd = fdOfUpdate rosen (fun lr -> baseOf model (Hyper.Scheduled lr) 0.0) alpha0 t
                    closeTo { Abs = 1e-6; Rel = 1e-6 } h fd "h_t vs d loss(theta_{t-1}) / d alpha"

            for name, initial in [ "lr", 0.01; "beta1", 0.9; "beta2", 0.999; "weight_decay", 0.01 ] do
                testCase $"autodiff hypergradient of adam's {name} equals finite differences" <| fun () ->
                    let t = 6
                    let make (v: string -> Hyper) =
                        Adam.create { Adam.defaults with Lr = v "lr"; Beta1 = v "beta1"; Beta2 = v "beta2"; WeightDecay = v "weight_decay" }
                    let fixedOr (n: string) = Hyper.Fixed(match n with "lr" -> 0.01 | "beta1" -> 0.9 | "beta2" -> 0.999 | _ -> 0.01)
                    let auto = AutoHd.create "auto" (fun hs -> make (fun n -> if n = name then Hyper.Learnable hs[n] else fixedOr n)) [ AutoHd.adapt name initial (Hyper.Fixed 0.0) ]
                    let h = runOn rosen auto t |> List.last |> snd |> watched ("hypergrad_" + name)
                    let fd = fdOfUpdate rosen (fun f -> make (fun n -> if n = name then Hyper.Scheduled f else fixedOr n)) initial t
                    closeTo { Abs = 1e-6; Rel = 1e-5 } h fd $"d loss / d {name}"

            testCase "two stacked levels: level 2's hypergradient of beta equals finite differences, and beta learns" <| fun () ->
                let t = 6
                let adam (lr: Hyper) = Adam.create { Adam.defaults with Lr = lr }
                let level1 (beta: Hyper) = AutoHd.create "level1" (fun hs -> adam (Hyper.Learnable hs["lr"])) [ AutoHd.adapt "lr" 0.01 beta ]
                let stacked (level2: float) = AutoHd.stack "two" (fun hs -> adam (Hyper.Learnable hs["lr"])) [ AutoHd.adapt "lr" 0.01 (Hyper.Fixed 1e-5) ] (Hyper.Fixed level2)
                let h = runOn rosen (stacked 0.0) t |> List.last |> snd |> watched "hypergrad_hypergrad_lr_lr"
                let fd = fdOfUpdate rosen (fun f -> level1 (Hyper.Scheduled f)) 1e-5 t
                closeTo { Abs = 1e-6; Rel = 1e-5 } h fd "d loss / d beta"
                let beta = runOn rosen (stacked 1e-12) 20 |> List.last |> snd |> watched "hypergrad_lr_lr"
                Expect.notEqual beta 1e-5 "level 2 moved beta"
                let single = runOn rosen (level1 (Hyper.Fixed 1e-5)) 20 |> List.map (fst >> floats)
                let zero = runOn rosen (stacked 0.0) 20 |> List.map (fst >> floats)
                Expect.equal zero single "with level 2's rate 0, the stack is its level 1"

            for model, lop, alpha0, beta in
                [ SgdOp, SgdLop, 1e-4, 1e-9; AdamOp, SgdLop, 0.01, 1e-5; SgdnOp, SgdLop, 1e-4, 1e-10
                  SgdOp, SgdnLop, 1e-4, 1e-9; AdamOp, AdamLop, 0.01, 1e-4; SgdnOp, AdamLop, 1e-4, 1e-6 ] do
                let name = Hd.name (Hd.forModel model lop)
                testCase $"{name}: trace (float64, 200 steps) matches the published algorithm transcribed on floats" <| fun () ->
                    let rows =
                        cliOk [ "trace"; "--task"; "rosenbrock"; "--start"; "-1.5,2"; "--optimizer"; name; "--lr"; string alpha0
                                "--opt"; $"hypergrad_lr={beta}"; "--steps"; "200"; "--dtype"; "float64"; "--show-lr" ]
                        |> lines
                    Expect.equal rows[0] "step,loss,p0,p1,lr,hypergrad_lr" "header"
                    let ours = rows[2..] |> Array.map (fun r -> r.Split(',')[2..4] |> Array.map float)
                    let formula = Ref.hd model lop alpha0 beta 200 |> Array.ofList
                    Expect.isTrue (formula |> Array.forall (Array.forall Double.IsFinite)) "the reference run stays finite"
                    Array.iteri2 (fun k a e -> closeRel 1e-9 a e $"step {k + 1}: (x, y, alpha)") ours formula
                    let alphas = formula |> Array.map (fun r -> r[2])
                    Expect.isGreaterThan (Array.max alphas - Array.min alphas) (1e-3 * alpha0) "the rate moved"

            testCase "the alpha_0 sensitivity experiment on a tiny task counts iterations to the threshold" <| fun () ->
                // Plain SGD on x^2: loss_k = (1 - 2 alpha)^(2k) loss_0, so the first k with
                // loss_k < thr is ceil(ln(thr / loss_0) / (2 ln |1 - 2 alpha|)), worked out in closed form.
                let rows =
                    cliOk [ "sensitivity"; "--task"; "sum-of-squares"; "--start"; "1,2,3"; "--optimizers"; "sgd,sgd-hd,sgd_op-sgdn_lop"
                            "--opt"; "hypergrad_lr=1e-4"; "--lrs"; "0.1,0.01"; "--threshold"; "1e-3"; "--max-steps"; "2000"
                            "--dtype"; "float64"; "--format"; "csv" ]
                    |> lines
                Expect.equal rows[0] "optimizer,lr,iterations,final_loss,diverged" "header"
                Expect.equal rows.Length 7 "3 optimizers x 2 rates"
                let cells (r: string) = r.Split(',')
                for alpha in [ 0.1; 0.01 ] do
                    let expected = ceil (log (1e-3 / 14.0) / (2.0 * log (abs (1.0 - 2.0 * alpha)))) |> int
                    let row = rows |> Array.find (fun r -> (cells r).[0] = "sgd" && float (cells r).[1] = alpha)
                    Expect.equal (int (cells row).[2]) expected $"sgd, alpha_0 = {alpha}"
                let hd = rows |> Array.find (fun r -> (cells r).[0] = "sgd-hd" && float (cells r).[1] = 0.01)
                let plain = rows |> Array.find (fun r -> (cells r).[0] = "sgd" && float (cells r).[1] = 0.01)
                Expect.isLessThan (int (cells hd).[2]) (int (cells plain).[2]) "HD raises a too-small rate and gets there sooner"

            testCase "the rate can be kept from going negative" <| fun () ->
                // x^2 from (1, 2, 3) with alpha_0 = 0.9 overshoots: g_2 . g_1 < 0, so h_2 = 44.8 and
                // plain HD takes alpha to 0.9 - 0.05 * 44.8 = -1.34.
                let quadratic = Synthetic.sumOfSquares 3 (Some [| 1.0; 2.0; 3.0 |])
                let run guard =
                    let o = { Hd.forModel SgdOp SgdLop with Lr = 0.9; HypergradLr = Hyper.Fixed 0.05; Guard = guard }
                    runOn quadratic (Hd.create o) 5 |> List.map (snd >> watched "lr")
                closeTo Tol.veryHigh (run Unguarded).[1] -1.34 "alpha_2 by hand"
                Expect.isTrue (run Unguarded |> List.exists (fun a -> a < 0.0)) "unguarded, this setting drives the rate negative"
                Expect.isTrue (run ClipAtZero |> List.forall (fun a -> a >= 0.0)) "clipped at 0"
                Expect.isTrue (run Multiplicative |> List.forall (fun a -> a > 0.0)) "multiplicative keeps the sign of alpha_0"
        ]

        testList "unrolled" [
            testCase "second-order gradient through two unrolled SGD steps equals the closed form" <| fun () ->
                // f(x) = a/2 x^2; two steps give x2 = x0 (1 - lr a)^2, so
                // L = a/2 x0^2 (1 - lr a)^4 and dL/dlr = -2 a^2 x0^2 (1 - lr a)^3.
                let a, x0, lr = 3.0, 2.0, 0.1
                let make (h: Tensor) = Sgd.create { Sgd.defaults with Lr = Hyper.Learnable h }
                let g = hypergrad make lr (fun x -> 0.5 * a * x.square().sum()) [ x0 ] 2
                let expected = -2.0 * a * a * x0 * x0 * (1.0 - lr * a) ** 3.0
                closeTo Tol.veryHigh g expected "dL/dlr"

            testCase "hypergradients through unrolled Adam steps match finite differences" <| fun () ->
                let loss = rosenT
                let x0 = [ -1.5; 2.0 ]
                let lrMake (h: Tensor) = Adam.create { Adam.defaults with Lr = Hyper.Learnable h }
                let b1Make (h: Tensor) = Adam.create { Adam.defaults with Lr = Hyper.Fixed 0.01; Beta1 = Hyper.Learnable h }
                let b2Make (h: Tensor) = Adam.create { Adam.defaults with Lr = Hyper.Fixed 0.01; Beta2 = Hyper.Learnable h }
                for name, make, h0 in [ "lr", lrMake, 0.01; "beta1", b1Make, 0.9; "beta2", b2Make, 0.999 ] do
                    let g = hypergrad make h0 loss x0 5
                    let fd = finiteDiff make h0 loss x0 5
                    closeTo { Abs = 1e-7; Rel = 1e-5 } g fd $"dL/d{name} after 5 Adam steps"

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
                closeRel 1e-5 [| grad |] [| fd |] "autograd vs finite differences"
        ]
    ]
