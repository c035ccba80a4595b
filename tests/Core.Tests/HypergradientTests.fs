/// Hypergradient optimizers: the closed forms against the base optimizers, against autodiff,
/// against finite differences, and against a plain-float transcription of the published
/// algorithms (Baydin et al. 2018; seed 001's Algorithms 1 and 2).
module Optimizers.Tests.HypergradientTests

open System
open System.IO
open Expecto
open TorchSharp
open Optimizers
open Optimizers.Handcrafted
open Optimizers.Hypergradient
open Optimizers.Tasks
open Optimizers.Tests.Check
open Optimizers.Tests.PropertyTests

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

/// Rosenbrock's gradient, by hand.
let rosenGrad (x: float[]) = [| -2.0 * (1.0 - x[0]) - 400.0 * x[0] * (x[1] - x[0] * x[0]); 200.0 * (x[1] - x[0] * x[0]) |]

/// The published algorithms transcribed on plain floats: SGD-HD / SGDN-HD / Adam-HD (Baydin et
/// al.) with the learning-rate optimizers of the report (plain, Algorithm 1 with mu = 0.9,
/// Algorithm 2 with 0.9, 0.999, 1e-8). Adam's eps as torch.optim.Adam places it. Returns the
/// parameters and the rate after each step, from (-1.5, 2) on Rosenbrock.
let hdByFormula (model: ModelOptimizer) (lop: LrOptimizer) (alpha0: float) (beta: float) (steps: int) =
    let x = [| -1.5; 2.0 |]
    let dPrev = [| 0.0; 0.0 |]
    let buf = [| 0.0; 0.0 |]
    let m = [| 0.0; 0.0 |]
    let v = [| 0.0; 0.0 |]
    let mutable alpha, hv, hm, hs = alpha0, 0.0, 0.0, 0.0
    [ for t in 1..steps do
        let g = rosenGrad x
        let h = -(g[0] * dPrev[0] + g[1] * dPrev[1])
        alpha <-
            match lop with
            | SgdLop -> alpha - beta * h
            | SgdnLop ->
                hv <- 0.9 * hv + h
                alpha - beta * (h + 0.9 * hv)
            | AdamLop ->
                hm <- 0.9 * hm + 0.1 * h
                hs <- 0.999 * hs + 0.001 * h * h
                alpha - beta * (hm / (1.0 - 0.9 ** float t)) / (sqrt (hs / (1.0 - 0.999 ** float t)) + 1e-8)
        for i in 0..1 do
            let d =
                match model with
                | SgdOp -> g[i]
                | SgdnOp ->
                    buf[i] <- 0.9 * buf[i] + g[i]
                    g[i] + 0.9 * buf[i]
                | AdamOp ->
                    m[i] <- 0.9 * m[i] + 0.1 * g[i]
                    v[i] <- 0.999 * v[i] + 0.001 * g[i] * g[i]
                    (m[i] / (1.0 - 0.9 ** float t)) / (sqrt v[i] / sqrt (1.0 - 0.999 ** float t) + 1e-8)
            x[i] <- x[i] - alpha * d
            dPrev[i] <- d
        yield Array.append (Array.copy x) [| alpha |] ]

let cli (args: string list) =
    use out = new StringWriter()
    use err = new StringWriter()
    let code = Optimizers.Experiments.Cli.run (Array.ofList args) out err
    Expect.equal code 0 $"exit code ({err})"
    out.ToString().Split('\n', StringSplitOptions.RemoveEmptyEntries)

[<Tests>]
let tests =
    testList "hypergradient" [
        for model in models do
            for lop in lops do
                for perParameter in [ false; true ] do
                    let o = { Hd.forModel model lop with Lr = 0.01; HypergradLr = Hyper.Fixed 0.0; WeightDecay = 0.01; PerParameter = perParameter }
                    testPropertyWithConfig config $"{Hd.name o} (per-parameter {perParameter}) with hypergrad_lr = 0 equals its base optimizer exactly" <| fun (pr: Problem) ->
                        Expect.equal (updates (Hd.create o) pr 1.0) (updates (baseOf model (Hyper.Fixed 0.01) 0.01) pr 1.0) "updates"

        testPropertyWithConfig config "hd (autodiff) with hypergrad_lr = 0 equals its inner optimizer exactly" <| fun (pr: Problem) ->
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
            testPropertyWithConfig config $"{Hd.opName model}: the closed-form hypergradient equals the autodiff one" <| fun (pr: Problem) ->
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
                Expect.floatClose { absolute = 1e-6; relative = 1e-6 } h fd "h_t vs d loss(theta_{t-1}) / d alpha"

        for name, initial in [ "lr", 0.01; "beta1", 0.9; "beta2", 0.999; "weight_decay", 0.01 ] do
            testCase $"autodiff hypergradient of adam's {name} equals finite differences" <| fun () ->
                let t = 6
                let make (v: string -> Hyper) =
                    Adam.create { Adam.defaults with Lr = v "lr"; Beta1 = v "beta1"; Beta2 = v "beta2"; WeightDecay = v "weight_decay" }
                let fixedOr (n: string) = Hyper.Fixed(match n with "lr" -> 0.01 | "beta1" -> 0.9 | "beta2" -> 0.999 | _ -> 0.01)
                let auto = AutoHd.create "auto" (fun hs -> make (fun n -> if n = name then Hyper.Learnable hs[n] else fixedOr n)) [ AutoHd.adapt name initial (Hyper.Fixed 0.0) ]
                let h = runOn rosen auto t |> List.last |> snd |> watched ("hypergrad_" + name)
                let fd = fdOfUpdate rosen (fun f -> make (fun n -> if n = name then Hyper.Scheduled f else fixedOr n)) initial t
                Expect.floatClose { absolute = 1e-6; relative = 1e-5 } h fd $"d loss / d {name}"

        testCase "two stacked levels: level 2's hypergradient of beta equals finite differences, and beta learns" <| fun () ->
            let t = 6
            let adam (lr: Hyper) = Adam.create { Adam.defaults with Lr = lr }
            let level1 (beta: Hyper) = AutoHd.create "level1" (fun hs -> adam (Hyper.Learnable hs["lr"])) [ AutoHd.adapt "lr" 0.01 beta ]
            let stacked (level2: float) = AutoHd.stack "two" (fun hs -> adam (Hyper.Learnable hs["lr"])) [ AutoHd.adapt "lr" 0.01 (Hyper.Fixed 1e-5) ] (Hyper.Fixed level2)
            let h = runOn rosen (stacked 0.0) t |> List.last |> snd |> watched "hypergrad_hypergrad_lr_lr"
            let fd = fdOfUpdate rosen (fun f -> level1 (Hyper.Scheduled f)) 1e-5 t
            Expect.floatClose { absolute = 1e-6; relative = 1e-5 } h fd "d loss / d beta"
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
                    cli [ "trace"; "--task"; "rosenbrock"; "--start"; "-1.5,2"; "--optimizer"; name; "--lr"; string alpha0
                          "--opt"; $"hypergrad_lr={beta}"; "--steps"; "200"; "--dtype"; "float64"; "--show-lr" ]
                Expect.equal rows[0] "step,loss,p0,p1,lr,hypergrad_lr" "header"
                let ours = rows[2..] |> Array.map (fun r -> r.Split(',')[2..4] |> Array.map float)
                let formula = hdByFormula model lop alpha0 beta 200 |> Array.ofList
                Expect.isTrue (formula |> Array.forall (Array.forall Double.IsFinite)) "the reference run stays finite"
                Array.iteri2 (fun k a e -> closeRel 1e-9 a e $"step {k + 1}: (x, y, alpha)") ours formula
                let alphas = formula |> Array.map (fun r -> r[2])
                Expect.isGreaterThan (Array.max alphas - Array.min alphas) (1e-3 * alpha0) "the rate moved"

        testCase "the alpha_0 sensitivity experiment on a tiny task counts iterations to the threshold" <| fun () ->
            // Plain SGD on x^2: loss_k = (1 - 2 alpha)^(2k) loss_0, so the first k with
            // loss_k < thr is ceil(ln(thr / loss_0) / (2 ln |1 - 2 alpha|)), worked out in closed form.
            let rows =
                cli [ "sensitivity"; "--task"; "sum-of-squares"; "--start"; "1,2,3"; "--optimizers"; "sgd,sgd-hd,sgd_op-sgdn_lop"
                      "--opt"; "hypergrad_lr=1e-4"; "--lrs"; "0.1,0.01"; "--threshold"; "1e-3"; "--max-steps"; "2000"
                      "--dtype"; "float64"; "--format"; "csv" ]
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

        testCase "aliases name the classic three" <| fun () ->
            for alias, full in [ "sgd-hd", "sgd_op-sgd_lop"; "sgdn-hd", "sgdn_op-sgd_lop"; "adam-hd", "adam_op-sgd_lop" ] do
                Expect.equal (Registry.createOptimizer alias []).Name full alias

        testCase "the rate can be kept from going negative" <| fun () ->
            // x^2 from (1, 2, 3) with alpha_0 = 0.9 overshoots: g_2 . g_1 < 0, so h_2 = 44.8 and
            // plain HD takes alpha to 0.9 - 0.05 * 44.8 = -1.34.
            let quadratic = Synthetic.sumOfSquares 3 (Some [| 1.0; 2.0; 3.0 |])
            let run guard =
                let o = { Hd.forModel SgdOp SgdLop with Lr = 0.9; HypergradLr = Hyper.Fixed 0.05; Guard = guard }
                runOn quadratic (Hd.create o) 5 |> List.map (snd >> watched "lr")
            Expect.floatClose Accuracy.veryHigh (run Unguarded).[1] -1.34 "alpha_2 by hand"
            Expect.isTrue (run Unguarded |> List.exists (fun a -> a < 0.0)) "unguarded, this setting drives the rate negative"
            Expect.isTrue (run ClipAtZero |> List.forall (fun a -> a >= 0.0)) "clipped at 0"
            Expect.isTrue (run Multiplicative |> List.forall (fun a -> a > 0.0)) "multiplicative keeps the sign of alpha_0"

        testCase "validation names the optimizer and the argument" <| fun () ->
            for o, arg in
                [ { Hd.defaults with Lr = -1.0 }, "lr"
                  { Hd.defaults with HypergradLr = Hyper.Fixed -1.0 }, "hypergrad_lr"
                  { Hd.defaults with LopBeta2 = 1.0 }, "lop_beta2"
                  { Hd.defaults with LrOptimizer = AdamLop; Guard = Multiplicative }, "lr_guard" ] do
                let e = Expect.throwsC (fun () -> Hd.create o |> ignore) id
                Expect.stringContains e.Message arg "names the argument"
                Expect.stringContains e.Message "_op-" "names the optimizer"
            let e = Expect.throwsC (fun () -> Registry.createOptimizer "hd" [ "adapt", "betta1" ] |> ignore) id
            Expect.stringContains e.Message "no numeric hyperparameter 'betta1'; valid: lr, beta1" "hd lists what can adapt"
    ]
