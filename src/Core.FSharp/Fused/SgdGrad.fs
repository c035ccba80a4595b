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
/// float32 Vector<float32> wide over the fused kernels' chunks in parallel (new tensors of
/// Kernel.streamBytes or more in all stored non-temporally: Kernel.streams), float64 element by
/// element; every tensor contiguous on the CPU, else `Transform.stepOps` takes the step.
/// One autograd call per step takes all the parameters' tensors: a call costs 40-75 us however
/// small its tensors, so a call per tensor made the overhead dominate (forward, 1M float32
/// parameters: 0.45 ms in 1 tensor, 4.6 ms in 100, 1.7 ms op by op).
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

    /// The float32 forward over one chunk, Vector<float32> wide, then the tail. `stream`:
    /// non-temporal vector stores (Kernel.store), for outputs too large to stay in the cache.
    [<MethodImpl(MethodImplOptions.AggressiveOptimization)>]
    let private forward32 (c: Coeffs) (stream: bool) (p: Span<float32>) (g: Span<float32>) (b: Span<float32>) (pO: Span<float32>) (bO: Span<float32>) =
        let pv = MemoryMarshal.Cast<float32, Vector<float32>> p
        let gv = MemoryMarshal.Cast<float32, Vector<float32>> g
        let bv = MemoryMarshal.Cast<float32, Vector<float32>> b
        let po = MemoryMarshal.Cast<float32, Vector<float32>> pO
        let bo = MemoryMarshal.Cast<float32, Vector<float32>> bO
        let wd, mu, keep, negLr = V c.Wd, V c.Mu, V c.Keep, V(-c.Lr)
        for k in 0 .. pv.Length - 1 do
            let struct (_, bk, dk) = forwardAt c.First c.Nesterov wd mu keep pv[k] gv[k] (if c.First then pv[k] else bv[k])
            Kernel.store stream bo k bk
            Kernel.store stream po k (pv[k] + dk * negLr)
        let tail = pv.Length * Vector<float32>.Count
        forwardLoop c float32 (p.Slice tail) (g.Slice tail) (b.Slice tail) (pO.Slice tail) (bO.Slice tail)

    /// The float32 backward over one chunk, Vector<float32> wide, then the tail; returns the sums.
    /// `stream` as in forward32.
    [<MethodImpl(MethodImplOptions.AggressiveOptimization)>]
    let private backward32 (c: Coeffs) (stream: bool) (p: Span<float32>) (g: Span<float32>) (b: Span<float32>) (dP: Span<float32>) (dB: Span<float32>)
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
            Kernel.store stream dpv k (dPv[k] + dgg * wd)
            Kernel.store stream dgv k dgg
            Kernel.store stream dbv k (if c.First then Vector<float32>.Zero else db' * mu)
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


    /// The autograd function, called once per step with all n parameters' tensors. Inputs:
    /// p_0..p_{n-1}, g_0.., b_0.. (each parameter's tensors of one shape and dtype), lr, mu,
    /// dampening, wd (0-d tensors), first and nesterov (bools), n. Outputs p'_0.., b'_0..; backward
    /// gives the inputs' gradients in their order, a hyperparameter's summed over all tensors.
    type private Step() =
        inherit torch.autograd.MultiTensorFunction<Step>()

        override _.Name = "sgd_momentum_step"

        override _.forward(ctx: torch.autograd.AutogradContext, vars: obj[]) : List<Tensor> =
            let n = vars[vars.Length - 1] :?> int
            let x (k: int) = vars[k] :?> Tensor
            let ps, gs, bs = Array.init n x, Array.init n (fun i -> x (n + i)), Array.init n (fun i -> x (2 * n + i))
            let lr, mu, damp, wd = x (3 * n), x (3 * n + 1), x (3 * n + 2), x (3 * n + 3)
            let c = { Lr = value lr; Wd = value wd; Mu = value mu; Keep = 1.0 - value damp; First = vars[3 * n + 4] :?> bool; Nesterov = vars[3 * n + 5] :?> bool }
            Threading.Interlocked.Increment(&calls) |> ignore
            ctx.save_for_backward(List(Array.concat [ ps; gs; bs; [| lr; mu; damp; wd |] ]))
            ctx.save_data("first", box c.First)
            ctx.save_data("nesterov", box c.Nesterov)
            ctx.save_data("n", box n)
            let pO, bO = Array.map torch.empty_like ps, Array.map torch.empty_like bs
            let single i = ps[i].dtype = torch.ScalarType.Float32
            // over the float32 outputs only: the float64 ones are not the vector loops' (parameters may mix dtypes)
            let stream = Kernel.streams [| for i in 0 .. n - 1 do if single i then yield pO[i]; yield bO[i] |]
            Kernel.forChunksStoring stream [| for i in 0 .. n - 1 do if single i then yield i, int (ps[i].numel ()) |] (fun i s l ->
                forward32 c stream (Kernel.span ps[i] s l) (Kernel.span gs[i] s l) (Kernel.span bs[i] s l) (Kernel.span pO[i] s l) (Kernel.span bO[i] s l))
            for i in 0 .. n - 1 do
                if not (single i) then
                    forwardLoop c float (AdamGrad.spanOf<float> ps[i]) (AdamGrad.spanOf<float> gs[i]) (AdamGrad.spanOf<float> bs[i])
                        (AdamGrad.spanOf<float> pO[i]) (AdamGrad.spanOf<float> bO[i])
            List(Array.append pO bO)

        override _.backward(ctx: torch.autograd.AutogradContext, grads: List<Tensor>) : List<Tensor> =
            Kernel.warnIfDifferentiated "sgd_momentum_step: second derivatives (create_graph) through the fused SGD step are not computed (its backward pass is hand-written); set Optimizers.Fused.Kernel.useSimd <- false for the op-by-op form"
            let saved = ctx.get_saved_variables ()
            let n = ctx.get_data "n" :?> int
            let ps, gs, bs = Array.init n (fun i -> saved[i]), Array.init n (fun i -> saved[n + i]), Array.init n (fun i -> saved[2 * n + i])
            let lr, mu, damp, wd = saved[3 * n], saved[3 * n + 1], saved[3 * n + 2], saved[3 * n + 3]
            let c = { Lr = value lr; Wd = value wd; Mu = value mu; Keep = 1.0 - value damp; First = ctx.get_data "first" :?> bool; Nesterov = ctx.get_data "nesterov" :?> bool }
            use _ = torch.no_grad ()
            // the output gradients as contiguous tensors (LibTorch may hand over expanded zeros, or none)
            let dOut k i = if isNull grads[k * n + i] then torch.zeros_like ps[i] else grads[k * n + i].contiguous ()
            let dP, dB = Array.init n (dOut 0), Array.init n (dOut 1)
            let dp, dg, db = Array.map torch.empty_like ps, Array.map torch.empty_like gs, Array.map torch.empty_like bs
            let single i = ps[i].dtype = torch.ScalarType.Float32
            let stream = Kernel.streams [| for i in 0 .. n - 1 do if single i then yield dp[i]; yield dg[i]; yield db[i] |]
            let add (struct (a, b, c, d)) (struct (w, x, y, z)) = struct (a + w, b + x, c + y, d + z)
            let zero = struct (0.0, 0.0, 0.0, 0.0)
            let struct (sLr, sWd, sDamp, sMu) =
                Array.append
                    (Kernel.sumChunks stream [| for i in 0 .. n - 1 do if single i then yield i, int (ps[i].numel ()) |] zero add (fun i s l ->
                        backward32 c stream (Kernel.span ps[i] s l) (Kernel.span gs[i] s l) (Kernel.span bs[i] s l) (Kernel.span dP[i] s l) (Kernel.span dB[i] s l)
                            (Kernel.span dp[i] s l) (Kernel.span dg[i] s l) (Kernel.span db[i] s l)))
                    [| for i in 0 .. n - 1 do
                        if not (single i) then
                            backwardLoop c float (AdamGrad.spanOf<float> ps[i]) (AdamGrad.spanOf<float> gs[i]) (AdamGrad.spanOf<float> bs[i])
                                (AdamGrad.spanOf<float> dP[i]) (AdamGrad.spanOf<float> dB[i])
                                (AdamGrad.spanOf<float> dp[i]) (AdamGrad.spanOf<float> dg[i]) (AdamGrad.spanOf<float> db[i]) |]
                |> Array.fold add zero
            let scalar (like: Tensor) (x: float) = torch.tensor(x, dtype = like.dtype, device = like.device).reshape(like.shape)
            List(Array.concat [ dp; dg; db; [| scalar lr sLr; scalar mu sMu; scalar damp sDamp; scalar wd sWd; null; null; null |] ])

    /// SGD-with-momentum's differentiable step over trees (the state of Sgd.create with momentum:
    /// parts add_decayed_weights, trace_momentum, scale_by_learning_rate), as `Transform.stepOps`
    /// gives it, in one call of the function over all the tensors, or None for what it does not
    /// take (no momentum, or any tensor that is not contiguous CPU float32/float64: then the whole
    /// step goes op by op).
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
                    let n = parameters.Count
                    let out =
                        if n = 0 then [||]
                        else
                            Step.apply(Array.concat [ Array.map box parameters.Values; Array.map box grads.Values; Array.map box bufs.Values
                                                      [| box lrT; box muT; box dampT; box wdT; box (mS.Count = 0); box nesterov; box n |] ])
                            |> Array.ofSeq
                    let tree k = { Names = parameters.Names; Values = Array.sub out (k * n) n }
                    let stepped = chain.Stepped state
                    let moves' = { chain.Of(moves, stepped) with Slots = Map.ofList [ "momentum_buffer", tree 1 ] }
                    Some(tree 0, chain.With(moves, moves', stepped))
