namespace Optimizers.Fused

open System
open System.Numerics
open System.Runtime.CompilerServices
open System.Runtime.InteropServices
open Optimizers

/// The per-step constants of the SGD family's fused loop.
[<Struct>]
type SgdCoeffs =
    { /// -lr
      NegLr: float32
      /// L2 weight decay added to the gradient; used when HasWd
      Wd: float32
      HasWd: bool
      /// Keep a momentum buffer (the state has trace_momentum)
      Momentum: bool
      Mu: float32
      /// 1 - dampening
      Keep: float32
      /// The first momentum step: the buffer becomes the gradient
      First: bool
      Nesterov: bool }

/// The fast path of SGD (Sgd.fs): one pass over p, g (and the momentum buffer b), in the pure
/// path's operation order, so float32 results match it to rounding:
///   g' = g + wd p;  b = g' (first step) | mu b + (1 - dampening) g';  d = g' + mu b | b | g'
///   p  = p + (-lr) d
module SgdKernel =

    /// The loop over one chunk (compiled optimized at once: tier-0 code of a Vector<T> loop is
    /// several times slower, and the first steps of a run would pay for it); `b` is empty without momentum.
    [<MethodImpl(MethodImplOptions.AggressiveOptimization)>]
    let private loop (c: SgdCoeffs) (stream: bool) (p: Span<float32>) (g: Span<float32>) (b: Span<float32>) (pOut: Span<float32>) (bOut: Span<float32>) =
        let pv = MemoryMarshal.Cast<float32, Vector<float32>> p
        let gv = MemoryMarshal.Cast<float32, Vector<float32>> g
        let po = MemoryMarshal.Cast<float32, Vector<float32>> pOut
        let negLr = Vector<float32>(c.NegLr)
        let wd = Vector<float32>(c.Wd)
        let mu = Vector<float32>(c.Mu)
        let keep = Vector<float32>(c.Keep)
        let tail = pv.Length * Vector<float32>.Count
        if not c.Momentum then
            for k in 0 .. pv.Length - 1 do
                let gk = if c.HasWd then gv[k] + pv[k] * wd else gv[k]
                Kernel.store stream po k (pv[k] + gk * negLr)
            for i in tail .. p.Length - 1 do
                let gi = if c.HasWd then g[i] + p[i] * c.Wd else g[i]
                pOut[i] <- p[i] + gi * c.NegLr
        else
            let bv = MemoryMarshal.Cast<float32, Vector<float32>> b
            let bo = MemoryMarshal.Cast<float32, Vector<float32>> bOut
            if not (c.HasWd || c.First || c.Nesterov) then
                // classical momentum, no decay: no branch in the loop
                for k in 0 .. pv.Length - 1 do
                    let bk = bv[k] * mu + gv[k] * keep
                    Kernel.store stream bo k bk
                    Kernel.store stream po k (pv[k] + bk * negLr)
            else
                for k in 0 .. pv.Length - 1 do
                    let gk = if c.HasWd then gv[k] + pv[k] * wd else gv[k]
                    let bk = if c.First then gk else bv[k] * mu + gk * keep
                    Kernel.store stream bo k bk
                    let d = if c.Nesterov then gk + bk * mu else bk
                    Kernel.store stream po k (pv[k] + d * negLr)
            for i in tail .. p.Length - 1 do
                let gi = if c.HasWd then g[i] + p[i] * c.Wd else g[i]
                let bi = if c.First then gi else b[i] * c.Mu + gi * c.Keep
                bOut[i] <- bi
                let d = if c.Nesterov then gi + bi * c.Mu else bi
                pOut[i] <- p[i] + d * c.NegLr

    /// SGD's kernel (Sgd.fs) over the state of its chain, whose parts `wdPart` (weight decay),
    /// `moves` (identity or trace_momentum) and `lrPart` (the learning-rate step) read their state.
    let kernel (chain: Kernel.Chain) (wdPart: Transformation) (moves: Transformation) (lrPart: Transformation)
               (lr: Hyper) (momentum: Hyper) (dampening: Hyper) (weightDecay: Hyper) (nesterov: bool) : Target -> Tree -> State -> Tree -> Tree * State =
        let hasMomentum = not (Hyper.isZero momentum)
        let hasWd = not (Hyper.isZero weightDecay)
        fun target grads state parameters ->
            let wdS, mS, lrS = chain.Of(wdPart, state), chain.Of(moves, state), chain.Of(lrPart, state)
            let bufs = if hasMomentum then Some(mS.Slot "momentum_buffer") else None
            Kernel.checkNames chain.Name parameters
                [ yield "gradients", grads
                  match bufs with Some b -> yield "momentum buffers", b | None -> () ]
            let lrV = Kernel.value lrS.Count lr
            let wd = if hasWd then Kernel.value wdS.Count weightDecay else 0.0
            let mu = if hasMomentum then Kernel.value mS.Count momentum else 0.0
            let keep = if hasMomentum then 1.0 - Kernel.value mS.Count dampening else 1.0
            let first = hasMomentum && mS.Count = 0
            let c =
                { NegLr = float32 (-lrV); Wd = float32 wd; HasWd = hasWd; Momentum = hasMomentum
                  Mu = float32 mu; Keep = float32 keep; First = first; Nesterov = nesterov }
            let out = Kernel.Outputs target
            let pOut = out.Of parameters
            let bufs0, bufs = bufs, Option.map out.Of bufs
            let ps0, ps, gs = parameters.Values, pOut.Values, grads.Values
            let tensorsOf i =
                match bufs with
                | Some b -> [| ps[i]; gs[i]; b.Values[i] |]
                | None -> [| ps[i]; gs[i] |]
            use sc = new Kernel.Scalars()
            let sNegLr, sWd, sMu, sKeep = sc.Of(-lrV), sc.Of wd, sc.Of mu, sc.Of keep
            Kernel.run out parameters.Count tensorsOf
                (fun i start len ->
                    loop c out.Stream (Kernel.span ps0[i] start len) (Kernel.span gs[i] start len) (Kernel.spanAt bufs0 i start len)
                        (Kernel.span ps[i] start len) (Kernel.spanAt bufs i start len))
                (fun i ->
                    let p = ps[i]
                    let g = if hasWd then gs[i].add(p, sWd) else gs[i]
                    match bufs with
                    | None -> p.add_(g, sNegLr) |> ignore
                    | Some bs ->
                        let b = bs.Values[i]
                        if first then b.copy_(g) |> ignore else b.mul_(sMu).add_(g, sKeep) |> ignore
                        let d = if nesterov then g.add(b, sMu) else b
                        p.add_(d, sNegLr) |> ignore)
            pOut, out.State(chain.Stepped state)
