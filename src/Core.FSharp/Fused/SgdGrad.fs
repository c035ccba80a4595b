namespace Optimizers.Fused

open System
open System.Collections.Generic
open System.Numerics
open System.Runtime.CompilerServices
open System.Runtime.InteropServices
open TorchSharp
open Optimizers

/// SGD's step with momentum (classical or Nesterov) as one differentiable operation, as AdamGrad
/// is Adam's: a custom autograd function with a hand-written backward giving the gradients with
/// respect to p, g, the momentum buffer b and the hyperparameters lr, momentum mu, dampening and
/// weight_decay (0-d tensors). With gg = g + wd p and k = 1 - dampening,
///   b' = gg (first step) | mu b + k gg,   d = gg + mu b' (Nesterov) | b',   p' = p - lr d
/// and for output gradients P, B of p', b' (D = -lr P):
///   db' = B + D (mu D for Nesterov),   dgg = (1 for Nesterov) D + (1 | k) db',   db = mu db' (0 at the first step)
///   dp = P + wd dgg,   dg = dgg,   dlr = -sum P d,   dwd = sum dgg p,   ddampening = -sum db' gg (not first)
///   dmu = sum db' b (not first) + sum D b' (Nesterov)
/// float32 Vector<float32> wide over the fused kernels' chunks in parallel, float64 element by
/// element; every tensor contiguous on the CPU, else `Transform.stepOps` takes the step.
module SgdGrad =

    /// The element's forward values: gg, b', d.
    let inline private forwardAt first nesterov wd mu keep p g b =
        let gg = g + p * wd
        let b' = if first then gg else b * mu + gg * keep
        struct (gg, b', (if nesterov then gg + b' * mu else b'))

    [<Struct>]
    type private Coeffs = { Lr: float; Wd: float; Mu: float; Keep: float; First: bool; Nesterov: bool }

    /// How many times the fused function has run forward (for tests that must know it did).
    let mutable calls = 0L

    let inline private forwardLoop (c: Coeffs) conv (p: Span<'T>) (g: Span<'T>) (b: Span<'T>) (pO: Span<'T>) (bO: Span<'T>) =
        let wd, mu, keep, negLr = conv c.Wd, conv c.Mu, conv c.Keep, conv (-c.Lr)
        for i in 0 .. p.Length - 1 do
            let struct (_, bi, di) = forwardAt c.First c.Nesterov wd mu keep p[i] g[i] (if c.First then p[i] else b[i])
            bO[i] <- bi
            pO[i] <- p[i] + di * negLr

    /// The backward loop; returns the sums (dlr, dwd, ddampening, dmu) in float64.
    let inline private backwardLoop (c: Coeffs) conv (p: Span<'T>) (g: Span<'T>) (b: Span<'T>) (dP: Span<'T>) (dB: Span<'T>)
                                    (dp: Span<'T>) (dg: Span<'T>) (db: Span<'T>) =
        let wd, mu, keep, negLr = conv c.Wd, conv c.Mu, conv c.Keep, conv (-c.Lr)
        let mutable sLr, sWd, sDamp, sMu = 0.0, 0.0, 0.0, 0.0
        for i in 0 .. p.Length - 1 do
            let bi = if c.First then p[i] else b[i]
            let struct (gg, b', d) = forwardAt c.First c.Nesterov wd mu keep p[i] g[i] bi
            let dD = dP[i] * negLr
            let db' = if c.Nesterov then dB[i] + dD * mu else dB[i] + dD
            let fromB = if c.First then db' else db' * keep
            let dgg = if c.Nesterov then dD + fromB else fromB
            dp[i] <- dP[i] + dgg * wd
            dg[i] <- dgg
            db[i] <- (if c.First then LanguagePrimitives.GenericZero else db' * mu)
            sLr <- sLr - float (dP[i] * d)
            sWd <- sWd + float (dgg * p[i])
            if not c.First then
                sDamp <- sDamp - float (db' * gg)
                sMu <- sMu + float (db' * bi)
            if c.Nesterov then sMu <- sMu + float (dD * b')
        struct (sLr, sWd, sDamp, sMu)

    let private value (t: Tensor) = t.ToDouble()

    let private V (x: float) = Vector<float32>(float32 x)

    /// The float32 forward over one chunk, Vector<float32> wide, then the tail.
    [<MethodImpl(MethodImplOptions.AggressiveOptimization)>]
    let private forward32 (c: Coeffs) (p: Span<float32>) (g: Span<float32>) (b: Span<float32>) (pO: Span<float32>) (bO: Span<float32>) =
        let pv = MemoryMarshal.Cast<float32, Vector<float32>> p
        let gv = MemoryMarshal.Cast<float32, Vector<float32>> g
        let bv = MemoryMarshal.Cast<float32, Vector<float32>> b
        let po = MemoryMarshal.Cast<float32, Vector<float32>> pO
        let bo = MemoryMarshal.Cast<float32, Vector<float32>> bO
        let wd, mu, keep, negLr = V c.Wd, V c.Mu, V c.Keep, V(-c.Lr)
        for k in 0 .. pv.Length - 1 do
            let struct (_, bk, dk) = forwardAt c.First c.Nesterov wd mu keep pv[k] gv[k] (if c.First then pv[k] else bv[k])
            bo[k] <- bk
            po[k] <- pv[k] + dk * negLr
        let tail = pv.Length * Vector<float32>.Count
        forwardLoop c float32 (p.Slice tail) (g.Slice tail) (b.Slice tail) (pO.Slice tail) (bO.Slice tail)

    /// The float32 backward over one chunk, Vector<float32> wide, then the tail; returns the sums.
    [<MethodImpl(MethodImplOptions.AggressiveOptimization)>]
    let private backward32 (c: Coeffs) (p: Span<float32>) (g: Span<float32>) (b: Span<float32>) (dP: Span<float32>) (dB: Span<float32>)
                           (dp: Span<float32>) (dg: Span<float32>) (db: Span<float32>) =
        let pv = MemoryMarshal.Cast<float32, Vector<float32>> p
        let gv = MemoryMarshal.Cast<float32, Vector<float32>> g
        let bv = MemoryMarshal.Cast<float32, Vector<float32>> b
        let dPv = MemoryMarshal.Cast<float32, Vector<float32>> dP
        let dBv = MemoryMarshal.Cast<float32, Vector<float32>> dB
        let dpv = MemoryMarshal.Cast<float32, Vector<float32>> dp
        let dgv = MemoryMarshal.Cast<float32, Vector<float32>> dg
        let dbv = MemoryMarshal.Cast<float32, Vector<float32>> db
        let wd, mu, keep, negLr = V c.Wd, V c.Mu, V c.Keep, V(-c.Lr)
        let mutable sLr, sWd, sDamp, sMu = Vector<float32>.Zero, Vector<float32>.Zero, Vector<float32>.Zero, Vector<float32>.Zero
        for k in 0 .. pv.Length - 1 do
            let bk = if c.First then pv[k] else bv[k]
            let struct (gg, b', d) = forwardAt c.First c.Nesterov wd mu keep pv[k] gv[k] bk
            let dD = dPv[k] * negLr
            let db' = if c.Nesterov then dBv[k] + dD * mu else dBv[k] + dD
            let fromB = if c.First then db' else db' * keep
            let dgg = if c.Nesterov then dD + fromB else fromB
            dpv[k] <- dPv[k] + dgg * wd
            dgv[k] <- dgg
            dbv[k] <- (if c.First then Vector<float32>.Zero else db' * mu)
            sLr <- sLr - dPv[k] * d
            sWd <- sWd + dgg * pv[k]
            if not c.First then
                sDamp <- sDamp - db' * gg
                sMu <- sMu + db' * bk
            if c.Nesterov then sMu <- sMu + dD * b'
        let tail = pv.Length * Vector<float32>.Count
        let struct (tLr, tWd, tDamp, tMu) =
            backwardLoop c float32 (p.Slice tail) (g.Slice tail) (b.Slice tail) (dP.Slice tail) (dB.Slice tail) (dp.Slice tail) (dg.Slice tail) (db.Slice tail)
        let sum (x: Vector<float32>) = float (Vector.Sum x)
        struct (sum sLr + tLr, sum sWd + tWd, sum sDamp + tDamp, sum sMu + tMu)


    /// The autograd function. Inputs: p, g, b (tensors of one shape and dtype), lr, mu, dampening,
    /// wd (0-d tensors), first and nesterov (bools).
    type private Step() =
        inherit torch.autograd.MultiTensorFunction<Step>()

        override _.Name = "sgd_momentum_step"

        override _.forward(ctx: torch.autograd.AutogradContext, vars: obj[]) : List<Tensor> =
            let x (k: int) = vars[k] :?> Tensor
            let p, g, b, lr, mu, damp, wd = x 0, x 1, x 2, x 3, x 4, x 5, x 6
            let c = { Lr = value lr; Wd = value wd; Mu = value mu; Keep = 1.0 - value damp; First = vars[7] :?> bool; Nesterov = vars[8] :?> bool }
            Threading.Interlocked.Increment(&calls) |> ignore
            ctx.save_for_backward(List [ p; g; b; lr; mu; damp; wd ])
            ctx.save_data("first", box c.First)
            ctx.save_data("nesterov", box c.Nesterov)
            let pO, bO = torch.empty_like p, torch.empty_like b
            if p.dtype = torch.ScalarType.Float32 then
                Kernel.forChunks [| 0, int (p.numel ()) |] (fun _ s l ->
                    forward32 c (Kernel.span p s l) (Kernel.span g s l) (Kernel.span b s l) (Kernel.span pO s l) (Kernel.span bO s l))
            else forwardLoop c float (AdamGrad.spanOf<float> p) (AdamGrad.spanOf<float> g) (AdamGrad.spanOf<float> b) (AdamGrad.spanOf<float> pO) (AdamGrad.spanOf<float> bO)
            List [ pO; bO ]

        override _.backward(ctx: torch.autograd.AutogradContext, grads: List<Tensor>) : List<Tensor> =
            Kernel.warnIfDifferentiated "sgd_momentum_step: second derivatives (create_graph) through the fused SGD step are not computed (its backward pass is hand-written); set Optimizers.Fused.Kernel.useSimd <- false for the op-by-op form"
            let saved = ctx.get_saved_variables ()
            let p, g, b, lr, mu, damp, wd = saved[0], saved[1], saved[2], saved[3], saved[4], saved[5], saved[6]
            let c = { Lr = value lr; Wd = value wd; Mu = value mu; Keep = 1.0 - value damp; First = ctx.get_data "first" :?> bool; Nesterov = ctx.get_data "nesterov" :?> bool }
            use _ = torch.no_grad ()
            let dP = if isNull grads[0] then torch.zeros_like p else grads[0].contiguous ()
            let dB = if isNull grads[1] then torch.zeros_like p else grads[1].contiguous ()
            let dp, dg, db = torch.empty_like p, torch.empty_like g, torch.empty_like b
            let struct (sLr, sWd, sDamp, sMu) =
                if p.dtype = torch.ScalarType.Float32 then
                    let n = int (p.numel ())
                    let chunk = max 1024 Kernel.chunkElements
                    let parts = Array.zeroCreate<struct (float * float * float * float)> ((n + chunk - 1) / chunk)
                    Kernel.forChunks [| 0, n |] (fun _ s l ->
                        parts[s / chunk] <-
                            backward32 c (Kernel.span p s l) (Kernel.span g s l) (Kernel.span b s l) (Kernel.span dP s l) (Kernel.span dB s l)
                                (Kernel.span dp s l) (Kernel.span dg s l) (Kernel.span db s l))
                    parts |> Array.fold (fun (struct (a, b, c, d)) (struct (w, x, y, z)) -> struct (a + w, b + x, c + y, d + z)) (struct (0.0, 0.0, 0.0, 0.0))
                else
                    backwardLoop c float (AdamGrad.spanOf<float> p) (AdamGrad.spanOf<float> g) (AdamGrad.spanOf<float> b) (AdamGrad.spanOf<float> dP) (AdamGrad.spanOf<float> dB)
                        (AdamGrad.spanOf<float> dp) (AdamGrad.spanOf<float> dg) (AdamGrad.spanOf<float> db)
            let scalar (like: Tensor) (x: float) = torch.tensor(x, dtype = like.dtype, device = like.device).reshape(like.shape)
            List [ dp; dg; db; scalar lr sLr; scalar mu sMu; scalar damp sDamp; scalar wd sWd; null; null ]

    /// SGD-with-momentum's differentiable step over trees (the state of Sgd.create with momentum:
    /// parts add_decayed_weights, trace_momentum, scale_by_learning_rate), as `Transform.stepOps`
    /// gives it, or None for what it does not take (no momentum, or tensors that are not contiguous
    /// CPU float32/float64).
    let treeStep (chain: Kernel.Chain) (wdPart: Transformation) (moves: Transformation) (lrPart: Transformation)
                 (lr: Hyper) (momentum: Hyper) (dampening: Hyper) (weightDecay: Hyper) (nesterov: bool) : Tree -> State -> Tree -> (Tree * State) option =
        fun grads state parameters ->
            if Hyper.isZero momentum then None
            else
                let wdS, mS, lrS = chain.Of(wdPart, state), chain.Of(moves, state), chain.Of(lrPart, state)
                let bufs = mS.Slot "momentum_buffer"
                Kernel.checkNames chain.Name parameters [ "gradients", grads; "momentum buffers", bufs ]
                let tensorsOf i = [ parameters.Values[i]; grads.Values[i]; bufs.Values[i] ]
                if not (Array.forall (fun i -> AdamGrad.fusable (tensorsOf i)) [| 0 .. parameters.Count - 1 |]) then None
                else
                    let lrT, wdT = AdamGrad.asTensor (Hyper.at lrS.Count lr), AdamGrad.asTensor (Hyper.at wdS.Count weightDecay)
                    let muT, dampT = AdamGrad.asTensor (Hyper.at mS.Count momentum), AdamGrad.asTensor (Hyper.at mS.Count dampening)
                    let out = Array.init parameters.Count (fun i ->
                        let r = Step.apply(parameters.Values[i], grads.Values[i], bufs.Values[i], lrT, muT, dampT, wdT, box (mS.Count = 0), box nesterov)
                        r[0], r[1])
                    let stepped = chain.Stepped state
                    let moves' = { chain.Of(moves, stepped) with Slots = Map.ofList [ "momentum_buffer", { Names = parameters.Names; Values = Array.map snd out } ] }
                    Some({ Names = parameters.Names; Values = Array.map fst out }, chain.With(moves, moves', stepped))
