namespace Optimizers.Fused

open System
open System.Collections.Generic
open System.Numerics
open System.Runtime.CompilerServices
open System.Runtime.InteropServices
open TorchSharp
open Optimizers

/// RMSProp's step (Hinton et al. 2012, in torch.optim.RMSprop's form: Handcrafted/RmsProp.fs,
/// Accumulators.rmsprop) as one differentiable operation, as AdamGrad is Adam's: a custom autograd
/// function with a hand-written backward giving the gradients with respect to p, g, the square
/// average v, the momentum buffer b and the hyperparameters lr, alpha, momentum mu and
/// weight_decay (0-d tensors; eps is a constant of the rule, not differentiated). With
/// gg = g + wd p,
///   v' = alpha v + (1 - alpha) gg^2,   r = sqrt(v'),   d = r + eps,   u = gg / d
///   b' = u (first momentum step) | mu b + u (momentum) | u (none),   p' = p - lr b'
/// and for output gradients P, V, B of p', v', b' (B = 0 without momentum; U = -lr P):
///   du = B + U,   dd = -du u / d,   dv' = V + dd / (2 r),   dgg = du / d + 2 (1 - alpha) gg dv'
///   dp = P + wd dgg,   dg = dgg,   dv = alpha dv',   db = mu du (momentum, not the first step; else 0)
///   dlr = -sum P b',   dalpha = sum dv' (v - gg^2),   dwd = sum dgg p,   dmu = sum du b (as db)
/// Only the non-centered rule: `treeStep` returns None for centered = true (and for tensors that
/// are not contiguous CPU float32/float64), and `Transform.step` then goes op by op (`stepOps`,
/// the reference of its tests). float32 Vector<float32> wide over the fused kernels' chunks in
/// parallel (new tensors of Kernel.streamBytes or more in all stored non-temporally:
/// Kernel.streams), float64 element by element; one autograd call per step over all the parameters'
/// tensors (a call's fixed 40-75 us made a call per tensor costly with many tensors, as SgdGrad
/// measured). First-order: differentiating the backward pass again warns and gives no second
/// derivative.
module RmsPropGrad =

    /// The element's forward values: gg, v', r, d, u, b' (b' = u without momentum).
    let inline private forwardAt sqrt wd alpha keep eps momentum first mu p g v b =
        let gg = g + p * wd
        let v' = v * alpha + (gg * gg) * keep
        let r = sqrt v'
        let d = r + eps
        let u = gg / d
        struct (gg, v', r, d, u, (if momentum && not first then b * mu + u else u))

    /// One element of the backward pass: (dp, dg, dv, db) and the terms of the sums (lr, alpha, wd, mu).
    let inline private backwardAt sqrt wd alpha keep eps momentum first mu negLr zero two half p g v b dP dV dB =
        let struct (gg, v', r, d, u, b') = forwardAt sqrt wd alpha keep eps momentum first mu p g v b
        let du = if momentum then dB + dP * negLr else dP * negLr
        let dd = -(du * u) / d
        let dv' = dV + dd * half / r
        let dgg = du / d + two * keep * gg * dv'
        let fromB = momentum && not first
        struct (dP + dgg * wd, dgg, dv' * alpha, (if fromB then du * mu else zero),
                -(dP * b'), dv' * (v - gg * gg), dgg * p, (if fromB then du * b else zero))

    /// The hyperparameters of one step as numbers (the loops' constants).
    [<Struct>]
    type private Coeffs =
        { Lr: float; Wd: float; Alpha: float; Eps: float; Mu: float; Momentum: bool; First: bool }
        /// Whether the step reads the old buffer (momentum after its first step).
        member c.ReadsB = c.Momentum && not c.First

    /// How many times the fused function has run forward (for tests that must know it did).
    let mutable calls = 0L

    let inline private forwardLoop (c: Coeffs) conv sqrt (p: Span<'T>) (g: Span<'T>) (v: Span<'T>) (b: Span<'T>)
                                   (pO: Span<'T>) (vO: Span<'T>) (bO: Span<'T>) =
        let wd, alpha, keep, eps, mu, negLr = conv c.Wd, conv c.Alpha, conv (1.0 - c.Alpha), conv c.Eps, conv c.Mu, conv (-c.Lr)
        for i in 0 .. p.Length - 1 do
            // b is read only after the first momentum step (else it may be empty: p stands in)
            let struct (_, vi, _, _, _, bi) = forwardAt sqrt wd alpha keep eps c.Momentum c.First mu p[i] g[i] v[i] (if c.ReadsB then b[i] else p[i])
            vO[i] <- vi
            if c.Momentum then bO[i] <- bi
            pO[i] <- p[i] + bi * negLr

    /// The backward loop; returns the sums (dlr, dalpha, dwd, dmu) in float64.
    let inline private backwardLoop (c: Coeffs) conv sqrt (p: Span<'T>) (g: Span<'T>) (v: Span<'T>) (b: Span<'T>)
                                    (dP: Span<'T>) (dV: Span<'T>) (dB: Span<'T>) (dp: Span<'T>) (dg: Span<'T>) (dv: Span<'T>) (db: Span<'T>) =
        let wd, alpha, keep, eps, mu, negLr = conv c.Wd, conv c.Alpha, conv (1.0 - c.Alpha), conv c.Eps, conv c.Mu, conv (-c.Lr)
        let zero, two, half = conv 0.0, conv 2.0, conv 0.5
        let mutable sLr, sAlpha, sWd, sMu = 0.0, 0.0, 0.0, 0.0
        for i in 0 .. p.Length - 1 do
            let struct (xp, xg, xv, xb, lr, a, w, m) =
                backwardAt sqrt wd alpha keep eps c.Momentum c.First mu negLr zero two half
                    p[i] g[i] v[i] (if c.ReadsB then b[i] else p[i]) dP[i] dV[i] (if c.Momentum then dB[i] else zero)
            dp[i] <- xp
            dg[i] <- xg
            dv[i] <- xv
            if c.Momentum then db[i] <- xb
            sLr <- sLr + float lr
            sAlpha <- sAlpha + float a
            sWd <- sWd + float w
            sMu <- sMu + float m
        struct (sLr, sAlpha, sWd, sMu)

    let private V (x: float) = Vector<float32>(float32 x)

    let private vsqrt (x: Vector<float32>) = Vector.SquareRoot x

    let private vectors (s: Span<float32>) = MemoryMarshal.Cast<float32, Vector<float32>> s

    /// The float32 forward over one chunk, Vector<float32> wide, then the tail. `stream`:
    /// non-temporal vector stores (Kernel.store), for outputs too large to stay in the cache.
    [<MethodImpl(MethodImplOptions.AggressiveOptimization)>]
    let private forward32 (c: Coeffs) (stream: bool) (p: Span<float32>) (g: Span<float32>) (v: Span<float32>) (b: Span<float32>)
                          (pO: Span<float32>) (vO: Span<float32>) (bO: Span<float32>) =
        let pv = vectors p
        let gv = vectors g
        let vv = vectors v
        let bv = vectors b
        let po = vectors pO
        let vo = vectors vO
        let bo = vectors bO
        let wd, alpha, keep, eps, mu, negLr = V c.Wd, V c.Alpha, V(1.0 - c.Alpha), V c.Eps, V c.Mu, V(-c.Lr)
        for k in 0 .. pv.Length - 1 do
            let struct (_, vk, _, _, _, bk) = forwardAt vsqrt wd alpha keep eps c.Momentum c.First mu pv[k] gv[k] vv[k] (if c.ReadsB then bv[k] else pv[k])
            Kernel.store stream vo k vk
            if c.Momentum then Kernel.store stream bo k bk
            Kernel.store stream po k (pv[k] + bk * negLr)
        let tail = pv.Length * Vector<float32>.Count
        // the buffer's spans are empty without momentum (no tail to slice)
        let bT = if c.Momentum then b.Slice tail else b
        let bOT = if c.Momentum then bO.Slice tail else bO
        forwardLoop c float32 MathF.Sqrt (p.Slice tail) (g.Slice tail) (v.Slice tail) bT (pO.Slice tail) (vO.Slice tail) bOT

    /// The float32 backward over one chunk, Vector<float32> wide, then the tail; returns the sums.
    /// `stream` as in forward32.
    [<MethodImpl(MethodImplOptions.AggressiveOptimization)>]
    let private backward32 (c: Coeffs) (stream: bool) (p: Span<float32>) (g: Span<float32>) (v: Span<float32>) (b: Span<float32>)
                           (dP: Span<float32>) (dV: Span<float32>) (dB: Span<float32>)
                           (dp: Span<float32>) (dg: Span<float32>) (dv: Span<float32>) (db: Span<float32>) =
        let pv = vectors p
        let gv = vectors g
        let vv = vectors v
        let bv = vectors b
        let dPv = vectors dP
        let dVv = vectors dV
        let dBv = vectors dB
        let dpv = vectors dp
        let dgv = vectors dg
        let dvv = vectors dv
        let dbv = vectors db
        let wd, alpha, keep, eps, mu, negLr = V c.Wd, V c.Alpha, V(1.0 - c.Alpha), V c.Eps, V c.Mu, V(-c.Lr)
        let zero, two, half = Vector<float32>.Zero, V 2.0, V 0.5
        let mutable sLr, sAlpha, sWd, sMu = zero, zero, zero, zero
        for k in 0 .. pv.Length - 1 do
            let struct (xp, xg, xv, xb, lr, a, w, m) =
                backwardAt vsqrt wd alpha keep eps c.Momentum c.First mu negLr zero two half
                    pv[k] gv[k] vv[k] (if c.ReadsB then bv[k] else pv[k]) dPv[k] dVv[k] (if c.Momentum then dBv[k] else zero)
            Kernel.store stream dpv k xp
            Kernel.store stream dgv k xg
            Kernel.store stream dvv k xv
            if c.Momentum then Kernel.store stream dbv k xb
            sLr <- sLr + lr
            sAlpha <- sAlpha + a
            sWd <- sWd + w
            sMu <- sMu + m
        let tail = pv.Length * Vector<float32>.Count
        // the buffer's spans are empty without momentum (no tail to slice)
        let bT = if c.Momentum then b.Slice tail else b
        let dBT = if c.Momentum then dB.Slice tail else dB
        let dbT = if c.Momentum then db.Slice tail else db
        let struct (tLr, tAlpha, tWd, tMu) =
            backwardLoop c float32 MathF.Sqrt (p.Slice tail) (g.Slice tail) (v.Slice tail) bT
                (dP.Slice tail) (dV.Slice tail) dBT (dp.Slice tail) (dg.Slice tail) (dv.Slice tail) dbT
        let sum (x: Vector<float32>) = float (Vector.Sum x)
        struct (sum sLr + tLr, sum sAlpha + tAlpha, sum sWd + tWd, sum sMu + tMu)

    /// A chunk of a float32 tensor that may be absent (the buffer without momentum): empty then.
    let private span32 (t: Tensor) (start: int) (length: int) = if isNull t then Span<float32>.Empty else Kernel.span t start length

    /// All of a float64 tensor that may be absent: empty then.
    let private span64 (t: Tensor) = if isNull t then Span<float>.Empty else AdamGrad.spanOf<float> t

    let private value (t: Tensor) = t.ToDouble()

    /// The autograd function, called once per step with all n parameters' tensors. Inputs:
    /// p_0..p_{n-1}, g_0.., v_0.., b_0.. (each parameter's tensors of one shape and dtype; the b
    /// null without momentum), lr, alpha, mu (null without momentum), wd (0-d tensors), eps (a
    /// float), first (the first momentum step) and n. Outputs p'_0.., v'_0.. and, with momentum,
    /// b'_0..; backward gives the inputs' gradients in their order, a hyperparameter's summed over
    /// all tensors.
    type private Step() =
        inherit torch.autograd.MultiTensorFunction<Step>()

        static member Coeffs(lr: Tensor, alpha: Tensor, mu: Tensor, wd: Tensor, eps: float, first: bool) : Coeffs =
            { Lr = value lr; Wd = value wd; Alpha = value alpha; Eps = eps
              Mu = (if isNull mu then 0.0 else value mu); Momentum = not (isNull mu); First = first }

        override _.Name = "rmsprop_step"

        override _.forward(ctx: torch.autograd.AutogradContext, vars: obj[]) : List<Tensor> =
            let n = vars[vars.Length - 1] :?> int
            let x (k: int) = match vars[k] with :? Tensor as t -> t | _ -> null
            let ps, gs, vs, bs = Array.init n x, Array.init n (fun i -> x (n + i)), Array.init n (fun i -> x (2 * n + i)), Array.init n (fun i -> x (3 * n + i))
            let lr, alpha, mu, wd = x (4 * n), x (4 * n + 1), x (4 * n + 2), x (4 * n + 3)
            let eps, first = vars[4 * n + 4] :?> float, vars[4 * n + 5] :?> bool
            let c = Step.Coeffs(lr, alpha, mu, wd, eps, first)
            Threading.Interlocked.Increment(&calls) |> ignore
            // null entries (no momentum) are saved as undefined and come back as null
            ctx.save_for_backward(List(Array.concat [ ps; gs; vs; bs; [| lr; alpha; mu; wd |] ]))
            ctx.save_data("eps", box eps)
            ctx.save_data("first", box first)
            ctx.save_data("n", box n)
            let pO, vO = Array.map torch.empty_like ps, Array.map torch.empty_like vs
            let bO = ps |> Array.map (fun p -> if c.Momentum then torch.empty_like p else null)
            let single i = ps[i].dtype = torch.ScalarType.Float32
            // over the float32 outputs only: the float64 ones are not the vector loops' (parameters may mix dtypes)
            let stream = Kernel.streams [| for i in 0 .. n - 1 do if single i then yield pO[i]; yield vO[i]; if c.Momentum then yield bO[i] |]
            Kernel.forChunksStoring stream [| for i in 0 .. n - 1 do if single i then yield i, int (ps[i].numel ()) |] (fun i s l ->
                forward32 c stream (Kernel.span ps[i] s l) (Kernel.span gs[i] s l) (Kernel.span vs[i] s l) (span32 bs[i] s l)
                    (Kernel.span pO[i] s l) (Kernel.span vO[i] s l) (span32 bO[i] s l))
            for i in 0 .. n - 1 do
                if not (single i) then
                    forwardLoop c float Math.Sqrt (AdamGrad.spanOf<float> ps[i]) (AdamGrad.spanOf<float> gs[i]) (AdamGrad.spanOf<float> vs[i]) (span64 bs[i])
                        (AdamGrad.spanOf<float> pO[i]) (AdamGrad.spanOf<float> vO[i]) (span64 bO[i])
            List(if c.Momentum then Array.concat [ pO; vO; bO ] else Array.append pO vO)

        override _.backward(ctx: torch.autograd.AutogradContext, grads: List<Tensor>) : List<Tensor> =
            Kernel.warnIfDifferentiated "rmsprop_step: second derivatives (create_graph) through the fused RMSProp step are not computed (its backward pass is hand-written); set Optimizers.Fused.Kernel.useSimd <- false for the op-by-op form"
            let saved = ctx.get_saved_variables ()
            let n = ctx.get_data "n" :?> int
            let at k = Array.init n (fun i -> saved[k * n + i])
            let ps, gs, vs, bs = at 0, at 1, at 2, at 3
            let lr, alpha, mu, wd = saved[4 * n], saved[4 * n + 1], saved[4 * n + 2], saved[4 * n + 3]
            let c = Step.Coeffs(lr, alpha, mu, wd, ctx.get_data "eps" :?> float, ctx.get_data "first" :?> bool)
            use _ = torch.no_grad ()
            // the output gradients as contiguous tensors (LibTorch may hand over expanded zeros, or none)
            let dOut k i = if isNull grads[k * n + i] then torch.zeros_like ps[i] else grads[k * n + i].contiguous ()
            let dP, dV = Array.init n (dOut 0), Array.init n (dOut 1)
            let dB = Array.init n (fun i -> if c.Momentum then dOut 2 i else null)
            let dp, dg, dv = Array.map torch.empty_like ps, Array.map torch.empty_like gs, Array.map torch.empty_like vs
            let db = ps |> Array.map (fun p -> if c.Momentum then torch.empty_like p else null)
            let single i = ps[i].dtype = torch.ScalarType.Float32
            let stream = Kernel.streams [| for i in 0 .. n - 1 do if single i then yield dp[i]; yield dg[i]; yield dv[i]; if c.Momentum then yield db[i] |]
            let add (struct (a, b, c, d)) (struct (w, x, y, z)) = struct (a + w, b + x, c + y, d + z)
            let zero = struct (0.0, 0.0, 0.0, 0.0)
            let struct (sLr, sAlpha, sWd, sMu) =
                Array.append
                    (Kernel.sumChunks stream [| for i in 0 .. n - 1 do if single i then yield i, int (ps[i].numel ()) |] zero add (fun i s l ->
                        backward32 c stream (Kernel.span ps[i] s l) (Kernel.span gs[i] s l) (Kernel.span vs[i] s l) (span32 bs[i] s l)
                            (Kernel.span dP[i] s l) (Kernel.span dV[i] s l) (span32 dB[i] s l)
                            (Kernel.span dp[i] s l) (Kernel.span dg[i] s l) (Kernel.span dv[i] s l) (span32 db[i] s l)))
                    [| for i in 0 .. n - 1 do
                        if not (single i) then
                            backwardLoop c float Math.Sqrt (AdamGrad.spanOf<float> ps[i]) (AdamGrad.spanOf<float> gs[i]) (AdamGrad.spanOf<float> vs[i]) (span64 bs[i])
                                (AdamGrad.spanOf<float> dP[i]) (AdamGrad.spanOf<float> dV[i]) (span64 dB[i])
                                (AdamGrad.spanOf<float> dp[i]) (AdamGrad.spanOf<float> dg[i]) (AdamGrad.spanOf<float> dv[i]) (span64 db[i]) |]
                |> Array.fold add zero
            let scalar (like: Tensor) (x: float) = torch.tensor(x, dtype = like.dtype, device = like.device).reshape(like.shape)
            List(Array.concat [ dp; dg; dv; db; [| scalar lr sLr; scalar alpha sAlpha; (if c.Momentum then scalar mu sMu else null); scalar wd sWd; null; null; null |] ])

    /// RMSProp's differentiable step over trees (the state of RmsProp.create's chain, whose parts
    /// `wdPart` (add_decayed_weights), `rms` (scale_by_rms), `moves` (identity or trace_momentum)
    /// and `lrPart` (scale_by_learning_rate) read their state), as `Transform.stepOps` gives it, in
    /// one call of the function over all the tensors, or None for what it does not take: centered =
    /// true, or any tensor that is not contiguous CPU float32/float64 (the whole step op by op).
    let treeStep (chain: Kernel.Chain) (wdPart: Transformation) (rms: Transformation) (moves: Transformation) (lrPart: Transformation)
                 (lr: Hyper) (alpha: Hyper) (eps: float) (weightDecay: Hyper) (momentum: Hyper) (centered: bool) : Tree -> State -> Tree -> (Tree * State) option =
        let hasMomentum = not (Hyper.isZero momentum)
        fun grads state parameters ->
            if centered then None
            else
                let wdS, rS, mS, lrS = chain.Of(wdPart, state), chain.Of(rms, state), chain.Of(moves, state), chain.Of(lrPart, state)
                let vs = rS.Slot "square_avg"
                let bufs = if hasMomentum then Some(mS.Slot "momentum_buffer") else None
                Kernel.checkNames chain.Name parameters
                    [ yield "gradients", grads
                      yield "mean squares", vs
                      match bufs with Some x -> yield "momentum buffers", x | None -> () ]
                let bufOf i = match bufs with Some t -> t.Values[i] | None -> null
                let tensorsOf i = [ yield parameters.Values[i]; yield grads.Values[i]; yield vs.Values[i]; if hasMomentum then yield bufOf i ]
                if not (Array.forall (fun i -> AdamGrad.fusable (tensorsOf i)) [| 0 .. parameters.Count - 1 |]) then None
                else
                    let lrT, wdT = AdamGrad.asTensor (Hyper.at lrS.Count lr), AdamGrad.asTensor (Hyper.at wdS.Count weightDecay)
                    let alphaT = AdamGrad.asTensor (Hyper.at rS.Count alpha)
                    let muT = if hasMomentum then AdamGrad.asTensor (Hyper.at mS.Count momentum) else null
                    let first = hasMomentum && mS.Count = 0
                    let n = parameters.Count
                    let out =
                        if n = 0 then [||]
                        else
                            Step.apply(Array.concat [ Array.map box parameters.Values; Array.map box grads.Values; Array.map box vs.Values
                                                      Array.init n (bufOf >> box); [| box lrT; box alphaT; box muT; box wdT; box eps; box first; box n |] ])
                            |> Array.ofSeq
                    let tree k = { Names = parameters.Names; Values = Array.sub out (k * n) n }
                    let stepped = chain.Stepped state
                    let rms' = { chain.Of(rms, stepped) with Slots = Map.ofList [ "square_avg", tree 1 ] }
                    let stepped = chain.With(rms, rms', stepped)
                    let state' =
                        if hasMomentum then chain.With(moves, { chain.Of(moves, stepped) with Slots = Map.ofList [ "momentum_buffer", tree 2 ] }, stepped)
                        else stepped
                    Some(tree 0, state')
