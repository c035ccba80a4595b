namespace Optimizers.Fused

open System
open System.Numerics
open System.Runtime.CompilerServices
open System.Runtime.InteropServices
open Optimizers

/// The per-step constants of RMSProp's fused loop.
[<Struct>]
type RmsPropCoeffs =
    { /// -lr
      NegLr: float32
      /// L2 weight decay added to the gradient; used when HasWd
      Wd: float32
      HasWd: bool
      /// alpha and 1 - alpha
      A: float32
      C: float32
      Eps: float32
      /// Keep the mean gradient (slot grad_avg) and divide by the estimated standard deviation
      Centered: bool
      /// Keep a momentum buffer (the state has trace_momentum)
      Momentum: bool
      Mu: float32
      /// The first momentum step: the buffer becomes the scaled gradient
      First: bool }

/// The fast path of RMSProp (RmsProp.fs): one pass over p, g, v (and the mean gradient a, the
/// momentum buffer b), in the pure path's operation order, so float32 results match it to rounding:
///   g' = g + wd p;  v = alpha v + (1 - alpha) (g' g')
///   d  = sqrt(v) + eps  | centered: a = alpha a + (1 - alpha) g',  d = sqrt(v - a^2) + eps
///   u  = g' / d;  momentum: b = u (first step) | mu b + u,  u = b
///   p  = p + (-lr) u
module RmsPropKernel =

    /// The loop over one chunk (compiled optimized at once, as the other kernels' loops); `a` is
    /// empty unless centered, `b` unless with momentum.
    [<MethodImpl(MethodImplOptions.AggressiveOptimization)>]
    let private loop (c: RmsPropCoeffs) (stream: bool) (p: Span<float32>) (g: Span<float32>) (v: Span<float32>) (a: Span<float32>) (b: Span<float32>)
                     (pOut: Span<float32>) (vOut: Span<float32>) (aOut: Span<float32>) (bOut: Span<float32>) =
        let pv = MemoryMarshal.Cast<float32, Vector<float32>> p
        let gv = MemoryMarshal.Cast<float32, Vector<float32>> g
        let vv = MemoryMarshal.Cast<float32, Vector<float32>> v
        let av = MemoryMarshal.Cast<float32, Vector<float32>> a
        let bv = MemoryMarshal.Cast<float32, Vector<float32>> b
        let po = MemoryMarshal.Cast<float32, Vector<float32>> pOut
        let vo = MemoryMarshal.Cast<float32, Vector<float32>> vOut
        let ao = MemoryMarshal.Cast<float32, Vector<float32>> aOut
        let bo = MemoryMarshal.Cast<float32, Vector<float32>> bOut
        let negLr, wd, al, cl = Vector<float32>(c.NegLr), Vector<float32>(c.Wd), Vector<float32>(c.A), Vector<float32>(c.C)
        let eps, mu = Vector<float32>(c.Eps), Vector<float32>(c.Mu)
        for k in 0 .. pv.Length - 1 do
            let gk = if c.HasWd then gv[k] + pv[k] * wd else gv[k]
            let vk = vv[k] * al + (gk * gk) * cl
            Kernel.store stream vo k vk
            let denom =
                if c.Centered then
                    let ak = av[k] * al + gk * cl
                    Kernel.store stream ao k ak
                    Vector.SquareRoot(vk - ak * ak) + eps
                else Vector.SquareRoot vk + eps
            let u = gk / denom
            let u = if c.Momentum then (let bk = (if c.First then u else bv[k] * mu + u) in Kernel.store stream bo k bk; bk) else u
            Kernel.store stream po k (pv[k] + u * negLr)
        for i in pv.Length * Vector<float32>.Count .. p.Length - 1 do
            let gi = if c.HasWd then g[i] + p[i] * c.Wd else g[i]
            let vi = v[i] * c.A + (gi * gi) * c.C
            vOut[i] <- vi
            let denom =
                if c.Centered then
                    let ai = a[i] * c.A + gi * c.C
                    aOut[i] <- ai
                    MathF.Sqrt(vi - ai * ai) + c.Eps
                else MathF.Sqrt vi + c.Eps
            let u = gi / denom
            let u = if c.Momentum then (let bi = (if c.First then u else b[i] * c.Mu + u) in bOut[i] <- bi; bi) else u
            pOut[i] <- p[i] + u * c.NegLr

    /// RMSProp's kernel (RmsProp.fs) over the state of its chain, whose parts `wdPart` (weight
    /// decay), `rms` (scale_by_rms), `moves` (identity or trace_momentum) and `lrPart` (the
    /// learning-rate step) read their state.
    let kernel (chain: Kernel.Chain) (wdPart: Transformation) (rms: Transformation) (moves: Transformation) (lrPart: Transformation)
               (lr: Hyper) (alpha: Hyper) (eps: float) (weightDecay: Hyper) (momentum: Hyper) (centered: bool) : Target -> Tree -> State -> Tree -> Tree * State =
        let hasMomentum = not (Hyper.isZero momentum)
        let hasWd = not (Hyper.isZero weightDecay)
        fun target grads state parameters ->
            let wdS, rS, mS, lrS = chain.Of(wdPart, state), chain.Of(rms, state), chain.Of(moves, state), chain.Of(lrPart, state)
            let vs = rS.Slot "square_avg"
            let avgs = if centered then Some(rS.Slot "grad_avg") else None
            let bufs = if hasMomentum then Some(mS.Slot "momentum_buffer") else None
            Kernel.checkNames chain.Name parameters
                [ yield "gradients", grads
                  yield "mean squares", vs
                  match avgs with Some x -> yield "mean gradients", x | None -> ()
                  match bufs with Some x -> yield "momentum buffers", x | None -> () ]
            let lrV = Kernel.value lrS.Count lr
            let wd = if hasWd then Kernel.value wdS.Count weightDecay else 0.0
            let alphaV = Kernel.value rS.Count alpha
            let mu = if hasMomentum then Kernel.value mS.Count momentum else 0.0
            let first = hasMomentum && mS.Count = 0
            let c =
                { NegLr = float32 (-lrV); Wd = float32 wd; HasWd = hasWd; A = float32 alphaV; C = float32 (1.0 - alphaV)
                  Eps = float32 eps; Centered = centered; Momentum = hasMomentum; Mu = float32 mu; First = first }
            let out = Kernel.Outputs target
            let pOut = out.Of parameters
            let vs0, avgs0, bufs0 = vs, avgs, bufs
            let vs, avgs, bufs = out.Of vs, Option.map out.Of avgs, Option.map out.Of bufs
            let ps0, ps, gs = parameters.Values, pOut.Values, grads.Values
            let opt (t: Tree option) i = t |> Option.map (fun t -> t.Values[i])
            let tensorsOf i = Array.concat [ [| ps[i]; gs[i]; vs.Values[i] |]; Option.toArray (opt avgs i); Option.toArray (opt bufs i) ]
            use sc = new Kernel.Scalars()
            let sNegLr, sWd, sA, sC, sEps, sMu, sOne = sc.Of(-lrV), sc.Of wd, sc.Of alphaV, sc.Of(1.0 - alphaV), sc.Of eps, sc.Of mu, sc.Of 1.0
            Kernel.run out parameters.Count tensorsOf
                (fun i start len ->
                    loop c out.Stream (Kernel.span ps0[i] start len) (Kernel.span gs[i] start len) (Kernel.span vs0.Values[i] start len)
                        (Kernel.spanAt avgs0 i start len) (Kernel.spanAt bufs0 i start len)
                        (Kernel.span ps[i] start len) (Kernel.span vs.Values[i] start len) (Kernel.spanAt avgs i start len) (Kernel.spanAt bufs i start len))
                (fun i ->
                    let p, v = ps[i], vs.Values[i]
                    let g = if hasWd then gs[i].add(p, sWd) else gs[i]
                    v.mul_(sA).addcmul_(g, g, sC) |> ignore
                    let denom =
                        match opt avgs i with
                        | Some a ->
                            a.mul_(sA).add_(g, sC) |> ignore
                            // v - a * a as the pure path computes it (addcmul's fused multiply-add
                            // can round v - a^2 = 0 to a tiny negative, and the root to NaN)
                            v.sub(a.mul(a)).sqrt_().add_(sEps)
                        | None -> v.sqrt().add_(sEps)
                    match opt bufs i with
                    | Some b ->
                        if first then b.copy_(g.div(denom)) |> ignore else b.mul_(sMu).addcdiv_(g, denom, sOne) |> ignore
                        p.add_(b, sNegLr) |> ignore
                    | None -> p.addcdiv_(g, denom, sNegLr) |> ignore)
            pOut, out.State(chain.Stepped state)
