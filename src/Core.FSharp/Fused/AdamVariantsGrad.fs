namespace Optimizers.Fused

open System
open System.Collections.Generic
open System.Numerics
open System.Runtime.CompilerServices
open System.Runtime.InteropServices
open TorchSharp
open Optimizers

/// The differentiable fused steps of Adam's variants AdamW (Loshchilov and Hutter 2019,
/// torch.optim.AdamW, with or without amsgrad: Handcrafted/AdamW.fs) and AMSGrad (Reddi et al.
/// 2018, torch.optim.Adam(amsgrad=True) or without bias correction: Handcrafted/AmsGrad.fs), as
/// AdamGrad is Adam's: one custom autograd function whose forward is one pass over p, g, m, v (and
/// vmax) and whose hand-written backward gives the gradients with respect to p, g, m, v, vmax and
/// the hyperparameters lr, beta1, beta2 and weight_decay (0-d tensors; eps is a constant of the
/// rule). The rule of Moments.adam / Moments.amsgrad with ScaleBy.l2WeightDecay before (L2) or
/// after (decoupled) them, then the learning rate:
///   gg = g + wd p (L2) or g (decoupled)
///   m' = b1 m + (1 - b1) gg,   v' = b2 v + (1 - b2) gg^2,   w = max(vmax, v') (amsgrad) or v'
///   r = sqrt(w),   den = r s + eps,   q = m' / den,   u = q / c
///   upd = u (L2) or u + wd p (decoupled),   p' = p - lr upd
/// with s = 1 / sqrt(1 - b2^t), c = 1 - b1^t (debias), or s = c = 1 (AMSGrad's debias = false).
/// For output gradients P, M, V, W of p', m', v', vmax' (U = -lr P):
///   dq = U / c,   dm' = M + dq / den,   dden = -dq q / den,   dr = dden s / (2 r)
///   amsgrad: dw = W + dr goes to vmax where vmax > v', to v' where v' > vmax, half to each at a
///   tie (torch.maximum's backward); dv' = V + its share   (else dv' = V + dr, no vmax)
///   dgg = (1 - b1) dm' + 2 (1 - b2) gg dv',   dm = b1 dm',   dv = b2 dv',   dg = dgg
///   dp = P + wd dgg (L2) or P + wd U (decoupled)
///   dlr = -sum P upd,   dwd = sum dgg p (L2) or sum U p (decoupled)
///   db1 = sum dm' (m - gg) [+ sum (U q) t b1^(t-1) / c^2]
///   db2 = sum dv' (v - gg^2) [+ sum (dden r) t b2^(t-1) / (2 (1 - b2^t)^(3/2))]   ([...]: debias only)
/// Every tensor contiguous on the CPU, float32 (Vector<float32> wide over the fused kernels' chunks
/// in parallel; new tensors of Kernel.streamBytes or more in all stored non-temporally:
/// Kernel.streams) or float64 (element by element), and eps_root = 0; else `treeStep` returns
/// None and `Transform.step` goes op by op (`stepOps`, the reference of its tests). First-order:
/// differentiating the backward pass again warns and gives no second derivative.
module AdamVariantsGrad =

    /// Which variant: weight decay decoupled (AdamW) or L2 (AMSGrad), the running maximum of v,
    /// bias correction.
    [<Struct>]
    type Form = { Decoupled: bool; Amsgrad: bool; Debias: bool }

    /// The hyperparameters of one step as numbers (the loops' constants).
    [<Struct>]
    type private Coeffs =
        { Lr: float; Wd: float; B1: float; B2: float; Eps: float; T: int; Form: Form }
        member c.Bc1 = 1.0 - Math.Pow(c.B1, float c.T)
        member c.Bc2 = 1.0 - Math.Pow(c.B2, float c.T)
        /// s = 1 / sqrt(1 - b2^t), 1 without bias correction.
        member c.S = if c.Form.Debias then 1.0 / Math.Sqrt c.Bc2 else 1.0
        /// 1 / c = 1 / (1 - b1^t), 1 without bias correction.
        member c.Ib1 = if c.Form.Debias then 1.0 / c.Bc1 else 1.0

    /// The element's forward values: gg, m', v', w, r, den, q, upd (w0: the old vmax).
    let inline private forwardAt sqrt vmax decoupled ams wd b1 c1 b2 c2 s eps ib1 p g m v w0 =
        let gg = if decoupled then g else g + p * wd
        let struct (m', v') = AdamKernel.moments b1 c1 b2 c2 m v gg
        let w = if ams then vmax w0 v' else v'
        let r = sqrt w
        let den = r * s + eps
        let q = m' / den
        let u = q * ib1
        struct (gg, m', v', w, r, den, q, (if decoupled then u + p * wd else u))

    /// One element of the backward pass: (dp, dg, dm, dv, dvmax) and the terms of the sums
    /// (lr, wd, b1, ib1, b2, s). `route w0 v' d` is the share of d that goes to the old vmax.
    let inline private backwardAt sqrt vmax route decoupled ams wd b1 c1 b2 c2 s eps ib1 negLr two half zero p g m v w0 dP dM dV dW =
        let struct (gg, m', v', _, r, den, q, upd) = forwardAt sqrt vmax decoupled ams wd b1 c1 b2 c2 s eps ib1 p g m v w0
        let dU = dP * negLr
        let dq = dU * ib1
        let dm' = dM + dq / den
        let dden = -(dq * q) / den
        let dr = dden * s * half / r
        let struct (dw0, dv') =
            if ams then
                let all = dW + dr
                let toMax = route w0 v' all
                struct (toMax, dV + (all - toMax))
            else struct (zero, dV + dr)
        let dgg = dm' * c1 + two * c2 * gg * dv'
        struct ((if decoupled then dP + dU * wd else dP + dgg * wd), dgg, dm' * b1, dv' * b2, dw0,
                -(dP * upd), (if decoupled then dU * p else dgg * p), dm' * (m - gg), dU * q, dv' * (v - gg * gg), dden * r)

    /// torch.maximum's backward at one element: all of d to the old vmax where it is the larger,
    /// none where v' is, half at a tie.
    let inline private route half zero w0 v' d = if w0 > v' then d elif w0 = v' then d * half else zero

    /// How many times the fused function has run forward (for tests that must know it did).
    let mutable calls = 0L

    /// The forward loop, element by element (float64, and the float32 tails); w, wO empty without amsgrad.
    let inline private forwardLoop (c: Coeffs) conv sqrt (p: Span<'T>) (g: Span<'T>) (m: Span<'T>) (v: Span<'T>) (w: Span<'T>)
                                   (pO: Span<'T>) (mO: Span<'T>) (vO: Span<'T>) (wO: Span<'T>) =
        let f = c.Form
        let wd, b1, c1, b2, c2 = conv c.Wd, conv c.B1, conv (1.0 - c.B1), conv c.B2, conv (1.0 - c.B2)
        let s, eps, ib1, negLr, zero = conv c.S, conv c.Eps, conv c.Ib1, conv (-c.Lr), conv 0.0
        for i in 0 .. p.Length - 1 do
            let w0 = if f.Amsgrad then w[i] else zero
            let struct (_, mi, vi, wi, _, _, _, upd) = forwardAt sqrt max f.Decoupled f.Amsgrad wd b1 c1 b2 c2 s eps ib1 p[i] g[i] m[i] v[i] w0
            mO[i] <- mi
            vO[i] <- vi
            if f.Amsgrad then wO[i] <- wi
            pO[i] <- p[i] + upd * negLr

    /// The six hyperparameter sums of the backward pass (lr, wd, b1, ib1, b2, s), in float64.
    [<Struct>]
    type private Sums =
        { A: float; B: float; C: float; D: float; E: float; F: float }
        static member Zero = { A = 0.0; B = 0.0; C = 0.0; D = 0.0; E = 0.0; F = 0.0 }

    let private plus (x: Sums) (y: Sums) = { A = x.A + y.A; B = x.B + y.B; C = x.C + y.C; D = x.D + y.D; E = x.E + y.E; F = x.F + y.F }

    /// The backward loop, element by element; returns the sums.
    let inline private backwardLoop (c: Coeffs) conv sqrt (p: Span<'T>) (g: Span<'T>) (m: Span<'T>) (v: Span<'T>) (w: Span<'T>)
                                    (dP: Span<'T>) (dM: Span<'T>) (dV: Span<'T>) (dW: Span<'T>)
                                    (dp: Span<'T>) (dg: Span<'T>) (dm: Span<'T>) (dv: Span<'T>) (dw: Span<'T>) =
        let f = c.Form
        let wd, b1, c1, b2, c2 = conv c.Wd, conv c.B1, conv (1.0 - c.B1), conv c.B2, conv (1.0 - c.B2)
        let s, eps, ib1, negLr, zero, two, half = conv c.S, conv c.Eps, conv c.Ib1, conv (-c.Lr), conv 0.0, conv 2.0, conv 0.5
        let mutable sLr, sWd, sB1, sI1, sB2, sS = 0.0, 0.0, 0.0, 0.0, 0.0, 0.0
        for i in 0 .. p.Length - 1 do
            let w0, dWi = (if f.Amsgrad then w[i] else zero), (if f.Amsgrad then dW[i] else zero)
            let struct (xp, xg, xm, xv, xw, lr, wdT, bb1, i1, bb2, ss) =
                backwardAt sqrt max (route half zero) f.Decoupled f.Amsgrad wd b1 c1 b2 c2 s eps ib1 negLr two half zero
                    p[i] g[i] m[i] v[i] w0 dP[i] dM[i] dV[i] dWi
            dp[i] <- xp
            dg[i] <- xg
            dm[i] <- xm
            dv[i] <- xv
            if f.Amsgrad then dw[i] <- xw
            sLr <- sLr + float lr; sWd <- sWd + float wdT; sB1 <- sB1 + float bb1
            sI1 <- sI1 + float i1; sB2 <- sB2 + float bb2; sS <- sS + float ss
        { A = sLr; B = sWd; C = sB1; D = sI1; E = sB2; F = sS }

    let private V (x: float) = Vector<float32>(float32 x)

    let private vsqrt (x: Vector<float32>) = Vector.SquareRoot x

    let private vmax (a: Vector<float32>) (b: Vector<float32>) = Vector.Max(a, b)

    /// `route` over a vector: the masks of w0 > v' and w0 = v' select d, d / 2 or 0.
    let private vroute (w0: Vector<float32>) (v': Vector<float32>) (d: Vector<float32>) =
        Vector.ConditionalSelect(Vector.GreaterThan<float32>(w0, v'), d,
                                 Vector.ConditionalSelect(Vector.Equals<float32>(w0, v'), d * V 0.5, Vector<float32>.Zero))

    let private vectors (s: Span<float32>) = MemoryMarshal.Cast<float32, Vector<float32>> s

    /// A span's elements from `tail` on, or the span itself when empty (vmax without amsgrad).
    let private tailOf (tail: int) (s: Span<float32>) = if s.IsEmpty then s else s.Slice tail

    /// The float32 forward over one chunk, Vector<float32> wide, then the tail. `stream`:
    /// non-temporal vector stores (Kernel.store), for outputs too large to stay in the cache.
    [<MethodImpl(MethodImplOptions.AggressiveOptimization)>]
    let private forward32 (c: Coeffs) (stream: bool) (p: Span<float32>) (g: Span<float32>) (m: Span<float32>) (v: Span<float32>) (w: Span<float32>)
                          (pO: Span<float32>) (mO: Span<float32>) (vO: Span<float32>) (wO: Span<float32>) =
        let f = c.Form
        let pv = vectors p
        let gv = vectors g
        let mv = vectors m
        let vv = vectors v
        let wv = vectors w
        let po = vectors pO
        let mo = vectors mO
        let vo = vectors vO
        let wo = vectors wO
        let wd, b1, c1, b2, c2 = V c.Wd, V c.B1, V (1.0 - c.B1), V c.B2, V (1.0 - c.B2)
        let s, eps, ib1, negLr = V c.S, V c.Eps, V c.Ib1, V (-c.Lr)
        for k in 0 .. pv.Length - 1 do
            let w0 = if f.Amsgrad then wv[k] else Vector<float32>.Zero
            let struct (_, mk, vk, wk, _, _, _, upd) = forwardAt vsqrt vmax f.Decoupled f.Amsgrad wd b1 c1 b2 c2 s eps ib1 pv[k] gv[k] mv[k] vv[k] w0
            Kernel.store stream mo k mk
            Kernel.store stream vo k vk
            if f.Amsgrad then Kernel.store stream wo k wk
            Kernel.store stream po k (pv[k] + upd * negLr)
        let tail = pv.Length * Vector<float32>.Count
        forwardLoop c float32 MathF.Sqrt (p.Slice tail) (g.Slice tail) (m.Slice tail) (v.Slice tail) (tailOf tail w)
            (pO.Slice tail) (mO.Slice tail) (vO.Slice tail) (tailOf tail wO)

    /// The float32 backward over one chunk, Vector<float32> wide, then the tail; returns the sums.
    /// `stream` as in forward32.
    [<MethodImpl(MethodImplOptions.AggressiveOptimization)>]
    let private backward32 (c: Coeffs) (stream: bool) (p: Span<float32>) (g: Span<float32>) (m: Span<float32>) (v: Span<float32>) (w: Span<float32>)
                           (dP: Span<float32>) (dM: Span<float32>) (dV: Span<float32>) (dW: Span<float32>)
                           (dp: Span<float32>) (dg: Span<float32>) (dm: Span<float32>) (dv: Span<float32>) (dw: Span<float32>) : Sums =
        let f = c.Form
        let pv = vectors p
        let gv = vectors g
        let mv = vectors m
        let vv = vectors v
        let wv = vectors w
        let dPv = vectors dP
        let dMv = vectors dM
        let dVv = vectors dV
        let dWv = vectors dW
        let dpv = vectors dp
        let dgv = vectors dg
        let dmv = vectors dm
        let dvv = vectors dv
        let dwv = vectors dw
        let wd, b1, c1, b2, c2 = V c.Wd, V c.B1, V (1.0 - c.B1), V c.B2, V (1.0 - c.B2)
        let s, eps, ib1, negLr, two, half = V c.S, V c.Eps, V c.Ib1, V (-c.Lr), V 2.0, V 0.5
        let zero = Vector<float32>.Zero
        let mutable aLr, aWd, aB1, aI1, aB2, aS = zero, zero, zero, zero, zero, zero
        for k in 0 .. pv.Length - 1 do
            let w0, dWk = (if f.Amsgrad then wv[k] else zero), (if f.Amsgrad then dWv[k] else zero)
            let struct (xp, xg, xm, xv, xw, lr, wdT, bb1, i1, bb2, ss) =
                backwardAt vsqrt vmax vroute f.Decoupled f.Amsgrad wd b1 c1 b2 c2 s eps ib1 negLr two half zero
                    pv[k] gv[k] mv[k] vv[k] w0 dPv[k] dMv[k] dVv[k] dWk
            Kernel.store stream dpv k xp
            Kernel.store stream dgv k xg
            Kernel.store stream dmv k xm
            Kernel.store stream dvv k xv
            if f.Amsgrad then Kernel.store stream dwv k xw
            aLr <- aLr + lr; aWd <- aWd + wdT; aB1 <- aB1 + bb1; aI1 <- aI1 + i1; aB2 <- aB2 + bb2; aS <- aS + ss
        let tail = pv.Length * Vector<float32>.Count
        let t =
            backwardLoop c float32 MathF.Sqrt (p.Slice tail) (g.Slice tail) (m.Slice tail) (v.Slice tail) (tailOf tail w)
                (dP.Slice tail) (dM.Slice tail) (dV.Slice tail) (tailOf tail dW)
                (dp.Slice tail) (dg.Slice tail) (dm.Slice tail) (dv.Slice tail) (tailOf tail dw)
        let sum (x: Vector<float32>) = float (Vector.Sum x)
        plus t { A = sum aLr; B = sum aWd; C = sum aB1; D = sum aI1; E = sum aB2; F = sum aS }

    /// A chunk of a float32 tensor that may be absent (vmax without amsgrad): empty then.
    let private span32 (t: Tensor) (start: int) (length: int) = if isNull t then Span<float32>.Empty else Kernel.span t start length

    /// All of a float64 tensor that may be absent: empty then.
    let private span64 (t: Tensor) = if isNull t then Span<float>.Empty else AdamGrad.spanOf<float> t

    let private value (t: Tensor) = t.ToDouble()

    /// The autograd function over all n tensors of a step in one call (a call costs a fixed 40-75 us
    /// in TorchSharp: see AdamGrad.Step). Inputs: the groups p, g, m, v and, with amsgrad, vmax, n
    /// tensors each (p_i, g_i, m_i, v_i, vmax_i of one shape, all of one dtype), then lr, b1, b2, wd
    /// (0-d tensors), eps (a float), t (the step, from 1), the Form and n. Outputs the groups p', m',
    /// v' and, with amsgrad, vmax'.
    type private Step() =
        inherit torch.autograd.MultiTensorFunction<Step>()

        override _.Name = "adam_variant_step"

        override _.forward(ctx: torch.autograd.AutogradContext, vars: obj[]) : List<Tensor> =
            let n, form = vars[vars.Length - 1] :?> int, vars[vars.Length - 2] :?> Form
            let groups = if form.Amsgrad then 5 else 4
            let x (k: int) = vars[k] :?> Tensor
            let group k = Array.init n (fun i -> x (k * n + i))
            let ps, gs, ms, vs = group 0, group 1, group 2, group 3
            let ws = if form.Amsgrad then group 4 else Array.create n null
            let h = groups * n
            let lr, b1, b2, wd = x h, x (h + 1), x (h + 2), x (h + 3)
            let eps, t = vars[h + 4] :?> float, vars[h + 5] :?> int
            let c = { Lr = value lr; Wd = value wd; B1 = value b1; B2 = value b2; Eps = eps; T = t; Form = form }
            Threading.Interlocked.Increment(&calls) |> ignore
            ctx.save_for_backward(List(Array.init (h + 4) x))
            ctx.save_data("eps", box eps)
            ctx.save_data("t", box t)
            ctx.save_data("form", box form)
            ctx.save_data("n", box n)
            let fresh (xs: Tensor[]) = Array.map (fun (a: Tensor) -> torch.empty_like a) xs
            let pO, mO, vO = fresh ps, fresh ms, fresh vs
            let wO = if form.Amsgrad then fresh vs else Array.create n null
            if ps[0].dtype = torch.ScalarType.Float32 then
                let stream = Kernel.streams (Array.concat [ pO; mO; vO; (if form.Amsgrad then wO else [||]) ])
                Kernel.forChunksStoring stream (Array.init n (fun i -> i, int (ps[i].numel ()))) (fun i s l ->
                    forward32 c stream (Kernel.span ps[i] s l) (Kernel.span gs[i] s l) (Kernel.span ms[i] s l) (Kernel.span vs[i] s l) (span32 ws[i] s l)
                        (Kernel.span pO[i] s l) (Kernel.span mO[i] s l) (Kernel.span vO[i] s l) (span32 wO[i] s l))
            else
                for i in 0 .. n - 1 do
                    forwardLoop c float Math.Sqrt (AdamGrad.spanOf<float> ps[i]) (AdamGrad.spanOf<float> gs[i]) (AdamGrad.spanOf<float> ms[i])
                        (AdamGrad.spanOf<float> vs[i]) (span64 ws[i])
                        (AdamGrad.spanOf<float> pO[i]) (AdamGrad.spanOf<float> mO[i]) (AdamGrad.spanOf<float> vO[i]) (span64 wO[i])
            List(Array.concat [ pO; mO; vO; (if form.Amsgrad then wO else [||]) ])

        override _.backward(ctx: torch.autograd.AutogradContext, grads: List<Tensor>) : List<Tensor> =
            Kernel.warnIfDifferentiated "adam_variant_step: second derivatives (create_graph) through the fused AdamW / AMSGrad step are not computed (its backward pass is hand-written); set Optimizers.Fused.Kernel.useSimd <- false for the op-by-op form"
            let saved = ctx.get_saved_variables ()
            let n, form = ctx.get_data "n" :?> int, ctx.get_data "form" :?> Form
            let groups = if form.Amsgrad then 5 else 4
            let group k = Array.init n (fun i -> saved[k * n + i])
            let ps, gs, ms, vs = group 0, group 1, group 2, group 3
            let ws = if form.Amsgrad then group 4 else Array.create n null
            let h = groups * n
            let lr, b1, b2, wd = saved[h], saved[h + 1], saved[h + 2], saved[h + 3]
            let eps, t = ctx.get_data "eps" :?> float, ctx.get_data "t" :?> int
            let c = { Lr = value lr; Wd = value wd; B1 = value b1; B2 = value b2; Eps = eps; T = t; Form = form }
            use _ = torch.no_grad ()
            // the output gradients as contiguous tensors (LibTorch may hand over expanded zeros, or none)
            let dOut k = Array.init n (fun i -> let d = grads[k * n + i] in if isNull d then torch.zeros_like ps[i] else d.contiguous ())
            let dP, dM, dV = dOut 0, dOut 1, dOut 2
            let dW = if form.Amsgrad then dOut 3 else Array.create n null
            let fresh (xs: Tensor[]) = Array.map (fun (a: Tensor) -> torch.empty_like a) xs
            let dp, dg, dm, dv = fresh ps, fresh gs, fresh ms, fresh vs
            let dw = if form.Amsgrad then fresh vs else Array.create n null
            let sums =
                if ps[0].dtype = torch.ScalarType.Float32 then
                    let stream = Kernel.streams (Array.concat [ dp; dg; dm; dv; (if form.Amsgrad then dw else [||]) ])
                    Kernel.sumChunks stream (Array.init n (fun i -> i, int (ps[i].numel ()))) Sums.Zero plus (fun i s l ->
                        backward32 c stream (Kernel.span ps[i] s l) (Kernel.span gs[i] s l) (Kernel.span ms[i] s l) (Kernel.span vs[i] s l) (span32 ws[i] s l)
                            (Kernel.span dP[i] s l) (Kernel.span dM[i] s l) (Kernel.span dV[i] s l) (span32 dW[i] s l)
                            (Kernel.span dp[i] s l) (Kernel.span dg[i] s l) (Kernel.span dm[i] s l) (Kernel.span dv[i] s l) (span32 dw[i] s l))
                    |> Array.fold plus Sums.Zero
                else
                    Array.init n (fun i ->
                        backwardLoop c float Math.Sqrt (AdamGrad.spanOf<float> ps[i]) (AdamGrad.spanOf<float> gs[i]) (AdamGrad.spanOf<float> ms[i])
                            (AdamGrad.spanOf<float> vs[i]) (span64 ws[i])
                            (AdamGrad.spanOf<float> dP[i]) (AdamGrad.spanOf<float> dM[i]) (AdamGrad.spanOf<float> dV[i]) (span64 dW[i])
                            (AdamGrad.spanOf<float> dp[i]) (AdamGrad.spanOf<float> dg[i]) (AdamGrad.spanOf<float> dm[i]) (AdamGrad.spanOf<float> dv[i]) (span64 dw[i]))
                    |> Array.fold plus Sums.Zero
            let tt = float t
            // the bias corrections' own derivatives (none without them)
            let dB1 = sums.C + (if form.Debias then sums.D * tt * Math.Pow(c.B1, tt - 1.0) / (c.Bc1 * c.Bc1) else 0.0)
            let dB2 = sums.E + (if form.Debias then sums.F * tt * Math.Pow(c.B2, tt - 1.0) / (2.0 * Math.Pow(c.Bc2, 1.5)) else 0.0)
            let scalar (like: Tensor) (x: float) = torch.tensor(x, dtype = like.dtype, device = like.device).reshape(like.shape)
            List(Array.concat [ dp; dg; dm; dv; (if form.Amsgrad then dw else [||])
                                [| scalar lr sums.A; scalar b1 dB1; scalar b2 dB2; scalar wd sums.B; null; null; null; null |] ])

    /// The differentiable step over trees of AdamW (parts: moments, wdPart, lrPart) or AMSGrad
    /// (wdPart, moments, lrPart), the chain's parts read by identity: `moments` is scale_by_adam
    /// or, with form.Amsgrad, scale_by_amsgrad. New parameters and state as `Transform.stepOps`
    /// gives them, or None for what the function does not take (eps_root, or a tensor that is not
    /// contiguous CPU float32/float64).
    let treeStep (chain: Kernel.Chain) (form: Form) (wdPart: Transformation) (moments: Transformation) (lrPart: Transformation)
                 (lr: Hyper) (beta1: Hyper) (beta2: Hyper) (eps: float) (epsRoot: float) (weightDecay: Hyper) : Tree -> State -> Tree -> (Tree * State) option =
        fun grads state parameters ->
            let wdS, aS, lrS = chain.Of(wdPart, state), chain.Of(moments, state), chain.Of(lrPart, state)
            let ms, vs = aS.Slot "exp_avg", aS.Slot "exp_avg_sq"
            let ws = if form.Amsgrad then Some(aS.Slot "max_exp_avg_sq") else None
            Kernel.checkNames chain.Name parameters
                [ yield "gradients", grads
                  yield "first moments", ms
                  yield "second moments", vs
                  match ws with Some x -> yield "maxima of the second moments", x | None -> () ]
            let wOf i = match ws with Some t -> t.Values[i] | None -> null
            let tensorsOf i = [ yield parameters.Values[i]; yield grads.Values[i]; yield ms.Values[i]; yield vs.Values[i]; if form.Amsgrad then yield wOf i ]
            let n = parameters.Count
            if epsRoot <> 0.0 || n = 0 || not (AdamGrad.fusableAll (List.init n tensorsOf)) then None
            else
                let lrT, wdT = AdamGrad.asTensor (Hyper.at lrS.Count lr), AdamGrad.asTensor (Hyper.at wdS.Count weightDecay)
                let b1T, b2T = AdamGrad.asTensor (Hyper.at aS.Count beta1), AdamGrad.asTensor (Hyper.at aS.Count beta2)
                let t = aS.Count + 1
                let tensors = [| yield! parameters.Values; yield! grads.Values; yield! ms.Values; yield! vs.Values
                                 if form.Amsgrad then yield! Array.init n wOf
                                 yield! [| lrT; b1T; b2T; wdT |] |]
                let out = Step.apply(Array.append (Array.map box tensors) [| box eps; box t; box form; box n |])
                let tree k = { Names = parameters.Names; Values = Array.init n (fun i -> out[k * n + i]) }
                let stepped = chain.Stepped state
                let slots = [ yield "exp_avg", tree 1; yield "exp_avg_sq", tree 2; if form.Amsgrad then yield "max_exp_avg_sq", tree 3 ]
                let moments' = { chain.Of(moments, stepped) with Slots = Map.ofList slots }
                Some(tree 0, chain.With(moments, moments', stepped))
