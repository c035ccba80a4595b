namespace Optimizers.Fused

open System
open System.Numerics
open System.Runtime.CompilerServices
open System.Runtime.InteropServices
open Optimizers

/// The per-step constants of Adagrad's fused loop.
[<Struct>]
type AdagradCoeffs =
    { /// -lr / (1 + k lr_decay), the learning rate of this step with its decay
      NegLr: float32
      /// L2 weight decay added to the gradient; used when HasWd
      Wd: float32
      HasWd: bool
      Eps: float32 }

/// The fast path of Adagrad (Adagrad.fs): one pass over p, g and the sum of squares s, in the pure
/// path's operation order, so float32 results match it to rounding:
///   g' = g + wd p;  s = s + g'^2;  p = p + (-lr / (1 + k lr_decay)) g' / (sqrt(s) + eps)
module AdagradKernel =

    /// The loop over one chunk (compiled optimized at once, as the other kernels' loops).
    [<MethodImpl(MethodImplOptions.AggressiveOptimization)>]
    let private loop (c: AdagradCoeffs) (stream: bool) (p: Span<float32>) (g: Span<float32>) (s: Span<float32>) (pOut: Span<float32>) (sOut: Span<float32>) =
        let pv = MemoryMarshal.Cast<float32, Vector<float32>> p
        let gv = MemoryMarshal.Cast<float32, Vector<float32>> g
        let sv = MemoryMarshal.Cast<float32, Vector<float32>> s
        let po = MemoryMarshal.Cast<float32, Vector<float32>> pOut
        let so = MemoryMarshal.Cast<float32, Vector<float32>> sOut
        let negLr, wd, eps = Vector<float32>(c.NegLr), Vector<float32>(c.Wd), Vector<float32>(c.Eps)
        for k in 0 .. pv.Length - 1 do
            let gk = if c.HasWd then gv[k] + pv[k] * wd else gv[k]
            let sk = sv[k] + gk * gk
            Kernel.store stream so k sk
            Kernel.store stream po k (pv[k] + (gk / (Vector.SquareRoot sk + eps)) * negLr)
        for i in pv.Length * Vector<float32>.Count .. p.Length - 1 do
            let gi = if c.HasWd then g[i] + p[i] * c.Wd else g[i]
            let si = s[i] + gi * gi
            sOut[i] <- si
            pOut[i] <- p[i] + (gi / (MathF.Sqrt si + c.Eps)) * c.NegLr

    /// Adagrad's kernel (Adagrad.fs) over the state of its chain, whose parts `wdPart` (weight
    /// decay), `sums` (scale_by_adagrad), `decay` (identity or scale_by_inverse_time_decay) and
    /// `lrPart` (the learning-rate step) read their state.
    let kernel (chain: Kernel.Chain) (wdPart: Transformation) (sumsPart: Transformation) (decay: Transformation) (lrPart: Transformation)
               (lr: Hyper) (lrDecay: Hyper) (weightDecay: Hyper) (eps: float) : Target -> Tree -> State -> Tree -> Tree * State =
        let hasWd = not (Hyper.isZero weightDecay)
        let decays = not (Hyper.isZero lrDecay)
        fun target grads state parameters ->
            let wdS, aS, dS, lrS = chain.Of(wdPart, state), chain.Of(sumsPart, state), chain.Of(decay, state), chain.Of(lrPart, state)
            let sums = aS.Slot "sum"
            Kernel.checkNames chain.Name parameters [ "gradients", grads; "sums of squares", sums ]
            let lrV = Kernel.value lrS.Count lr
            let wd = if hasWd then Kernel.value wdS.Count weightDecay else 0.0
            let f = if decays then 1.0 + float dS.Count * Kernel.value dS.Count lrDecay else 1.0
            let c = { NegLr = float32 (-lrV / f); Wd = float32 wd; HasWd = hasWd; Eps = float32 eps }
            let out = Kernel.Outputs target
            let pOut = out.Of parameters
            let sums0, sums = sums, out.Of sums
            let ps0, ps, gs = parameters.Values, pOut.Values, grads.Values
            use sc = new Kernel.Scalars()
            let sNegLr, sWd, sEps, sOne = sc.Of(-lrV / f), sc.Of wd, sc.Of eps, sc.Of 1.0
            Kernel.run out parameters.Count (fun i -> [| ps[i]; gs[i]; sums.Values[i] |])
                (fun i start len ->
                    loop c out.Stream (Kernel.span ps0[i] start len) (Kernel.span gs[i] start len) (Kernel.span sums0.Values[i] start len)
                        (Kernel.span ps[i] start len) (Kernel.span sums.Values[i] start len))
                (fun i ->
                    let p, sum = ps[i], sums.Values[i]
                    let g = if hasWd then gs[i].add(p, sWd) else gs[i]
                    sum.addcmul_(g, g, sOne) |> ignore
                    p.addcdiv_(g, sum.sqrt().add_(sEps), sNegLr) |> ignore)
            pOut, out.State(chain.Stepped state)
