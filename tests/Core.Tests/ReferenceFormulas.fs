/// Plain-float transcriptions of the published update rules, written independently of the library:
/// none calls it (the hypergradient and MNG ones take its option enums as selectors only). Each
/// catalog rule returns a step function p -> g -> p' that keeps its own state. ReferenceTests,
/// HypergradientTests and ThesisTests compare the library with them.
module Optimizers.Tests.ReferenceFormulas

open System
open Optimizers
open Optimizers.Hypergradient
open Optimizers.Tests.Check

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

    /// Adam transcribed from Kingma and Ba's Algorithm 1 with PyTorch's eps placement, on plain
    /// floats, for the gradient g(x) = 2x.
    let adamOnSquares (lr: float) (b1: float) (b2: float) (eps: float) (x0: float[]) (steps: int) =
        let x = Array.copy x0
        let m = Array.zeroCreate x.Length
        let v = Array.zeroCreate x.Length
        [ for t in 1..steps do
            for i in 0 .. x.Length - 1 do
                let g = 2.0 * x[i]
                m[i] <- b1 * m[i] + (1.0 - b1) * g
                v[i] <- b2 * v[i] + (1.0 - b2) * g * g
                let mHat = m[i] / (1.0 - b1 ** float t)
                let vHat = v[i] / (1.0 - b2 ** float t)
                x[i] <- x[i] - lr * mHat / (sqrt vHat + eps)
            yield Array.copy x ]

    /// The published algorithms transcribed on plain floats: SGD-HD / SGDN-HD / Adam-HD (Baydin et
    /// al.) with the learning-rate optimizers of the report (plain, Algorithm 1 with mu = 0.9,
    /// Algorithm 2 with 0.9, 0.999, 1e-8). Adam's eps as torch.optim.Adam places it. Returns the
    /// parameters and the rate after each step, from (-1.5, 2) on Rosenbrock.
    let hd (model: ModelOptimizer) (lop: LrOptimizer) (alpha0: float) (beta: float) (steps: int) =
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

    /// Algorithm 1 transcribed with plain floats, independently of the library: the iterates
    /// x_1..x_steps for a gradient function.
    let mng (k: int) (eta: float) (signOnly: bool) (grad: float[] -> float[]) (x0: float[]) (steps: int) : float[] list =
        let n = x0.Length
        let g0 = grad x0
        let mutable hx = Array.init n (fun i -> Array.create k x0[i])
        let mutable hg = Array.init n (fun i -> Array.create k g0[i])
        let mutable x = x0
        let out = Collections.Generic.List<float[]>()
        for t in 1 .. steps do
            if t > 1 then
                let g = grad x
                hx <- Array.init n (fun i -> Array.append (hx[i]).[1..] [| x[i] |])
                hg <- Array.init n (fun i -> Array.append (hg[i]).[1..] [| g[i] |])
            x <-
                Array.init n (fun i ->
                    let row = hg[i]
                    let m = row |> Array.map abs |> Array.max
                    let normed = row |> Array.map (fun v -> if signOnly then float (sign v) elif m = 0.0 then 0.0 else v / m)
                    let dx = Array.average normed
                    let hi, lo = Array.max hx[i], Array.min hx[i]
                    (hi + lo) / 2.0 - dx * (hi - lo + eta))
            out.Add x
        List.ofSeq out
