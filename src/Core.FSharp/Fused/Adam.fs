namespace Optimizers.Fused

open System
open System.Numerics
open System.Runtime.CompilerServices
open System.Runtime.InteropServices
open TorchSharp
open Optimizers

/// The per-step constants of the Adam family's fused loop.
[<Struct>]
type AdamCoeffs =
    { /// -lr
      NegLr: float32
      /// L2 weight decay added to the gradient (Adam's weight_decay); used when HasL2
      L2: float32
      HasL2: bool
      /// Decoupled weight decay added to the update before the learning rate (AdamW); used when HasDecoupled
      Decoupled: float32
      HasDecoupled: bool
      B1: float32
      /// 1 - beta1
      C1: float32
      B2: float32
      /// 1 - beta2
      C2: float32
      /// 1 / (1 - beta1^t)
      InvBc1: float32
      /// -lr / (1 - beta1^t)
      Step: float32
      /// 1 / sqrt(1 - beta2^t)
      InvSqrtBc2: float32
      /// 1 / (1 - beta2^t) (with EpsRoot)
      InvBc2: float32
      Eps: float32
      EpsRoot: float32
      HasEpsRoot: bool
      /// AMSGrad: divide by the running maximum of v (a fifth stream, vmax)
      HasMax: bool }

/// Where the weight decay of an Adam-family optimizer acts.
[<RequireQualifiedAccess>]
type AdamDecay =
    /// Adam: L2 added to the gradient before the moments
    | L2
    /// AdamW: added to the update after the moments
    | Decoupled

/// The hyperparameters the Adam family's kernel reads.
type AdamHypers =
    { Lr: Hyper
      Beta1: Hyper
      Beta2: Hyper
      Eps: float
      EpsRoot: float
      WeightDecay: Hyper
      /// AMSGrad's running maximum of v (state part scale_by_amsgrad, slot max_exp_avg_sq)
      Amsgrad: bool
      /// Bias corrections (false only for AMSGrad in Reddi et al.'s form: bc1 = bc2 = 1)
      Debias: bool }

/// The fast path of Adam (Adam.fs), AdamW (AdamW.fs: moments, then decoupled decay) and AMSGrad
/// (AmsGrad.fs, and AdamW's amsgrad): one pass over p, g, m, v (and vmax) computing what
/// Moments.adam / Moments.amsgrad compute, with one division per element (the bias
/// corrections folded into constants, as torch.optim.Adam does), so float32 results match the
/// pure path to a few units in the last place:
///   g' = g + wd p (L2);  m = b1 m + (1 - b1) g';  v = b2 v + (1 - b2) g'^2;  [AMSGrad: v* = vmax = max(vmax, v)]
///   d  = sqrt(v*) / sqrt(1 - b2^t) + eps                   [eps_root: sqrt(v* / (1 - b2^t) + eps_root) + eps]
///   p  = p + (-lr / (1 - b1^t)) m / d                       [decoupled: p + (-lr) (m / (1 - b1^t) / d + wd p)]
/// AMSGrad without bias correction (Reddi et al.) is the same with 1 - b1^t = 1 - b2^t = 1.
module AdamKernel =

    /// Adam's moments at one element, written once for a float32 and for a Vector<float32> of them
    /// (the constants of the same type), in the order of every path (Moments.first / second):
    ///   m' = m b1 + g (1 - b1),   v' = v b2 + (g g) (1 - b2)
    let inline moments b1 c1 b2 c2 m v g = struct (m * b1 + g * c1, v * b2 + (g * g) * c2)

    /// Adam's denominator at one element: sqrt(v) / sqrt(1 - b2^t) + eps as sqrt(v) * (1 / sqrt(1 - b2^t)) + eps.
    let inline denominator sqrt invSqrtBc2 eps v = sqrt v * invSqrtBc2 + eps

    /// The loop over one chunk (compiled optimized at once: tier-0 code of a Vector<T> loop is
    /// several times slower, and the first steps of a run would pay for it).
    [<MethodImpl(MethodImplOptions.AggressiveOptimization)>]
    let private loop (c: AdamCoeffs) (stream: bool) (p: Span<float32>) (g: Span<float32>) (m: Span<float32>) (v: Span<float32>) (vmax: Span<float32>)
                     (pOut: Span<float32>) (mOut: Span<float32>) (vOut: Span<float32>) (vmaxOut: Span<float32>) =
        let pv = MemoryMarshal.Cast<float32, Vector<float32>> p
        let gv = MemoryMarshal.Cast<float32, Vector<float32>> g
        let mv = MemoryMarshal.Cast<float32, Vector<float32>> m
        let vv = MemoryMarshal.Cast<float32, Vector<float32>> v
        let xv = MemoryMarshal.Cast<float32, Vector<float32>> vmax
        let po = MemoryMarshal.Cast<float32, Vector<float32>> pOut
        let mo = MemoryMarshal.Cast<float32, Vector<float32>> mOut
        let vo = MemoryMarshal.Cast<float32, Vector<float32>> vOut
        let xo = MemoryMarshal.Cast<float32, Vector<float32>> vmaxOut
        let negLr, l2, dwd = Vector<float32>(c.NegLr), Vector<float32>(c.L2), Vector<float32>(c.Decoupled)
        let b1, c1, b2, c2 = Vector<float32>(c.B1), Vector<float32>(c.C1), Vector<float32>(c.B2), Vector<float32>(c.C2)
        let invBc1, step = Vector<float32>(c.InvBc1), Vector<float32>(c.Step)
        let invSqrtBc2, invBc2 = Vector<float32>(c.InvSqrtBc2), Vector<float32>(c.InvBc2)
        let eps, epsRoot = Vector<float32>(c.Eps), Vector<float32>(c.EpsRoot)
        if not (c.HasL2 || c.HasDecoupled || c.HasEpsRoot || c.HasMax) then
            // torch.optim.Adam's defaults: no branch in the loop
            for k in 0 .. pv.Length - 1 do
                let struct (mk, vk) = moments b1 c1 b2 c2 mv[k] vv[k] gv[k]
                Kernel.store stream mo k mk
                Kernel.store stream vo k vk
                Kernel.store stream po k (pv[k] + (mk * step) / denominator (fun (x: Vector<float32>) -> Vector.SquareRoot x) invSqrtBc2 eps vk)
        else
            for k in 0 .. pv.Length - 1 do
                let pk = pv[k]
                let gk = if c.HasL2 then gv[k] + pk * l2 else gv[k]
                let struct (mk, vk) = moments b1 c1 b2 c2 mv[k] vv[k] gk
                Kernel.store stream mo k mk
                Kernel.store stream vo k vk
                let vk = if c.HasMax then (let x = Vector.Max(xv[k], vk) in Kernel.store stream xo k x; x) else vk
                let denom = if c.HasEpsRoot then Vector.SquareRoot(vk * invBc2 + epsRoot) + eps else denominator (fun (x: Vector<float32>) -> Vector.SquareRoot x) invSqrtBc2 eps vk
                let pk' = if c.HasDecoupled then pk + ((mk * invBc1) / denom + pk * dwd) * negLr else pk + (mk * step) / denom
                Kernel.store stream po k pk'
        for i in pv.Length * Vector<float32>.Count .. p.Length - 1 do
            let pi = p[i]
            let gi = if c.HasL2 then g[i] + pi * c.L2 else g[i]
            let struct (mi, vi) = moments c.B1 c.C1 c.B2 c.C2 m[i] v[i] gi
            mOut[i] <- mi
            vOut[i] <- vi
            let vi = if c.HasMax then (let x = MathF.Max(vmax[i], vi) in vmaxOut[i] <- x; x) else vi
            let denom = if c.HasEpsRoot then MathF.Sqrt(vi * c.InvBc2 + c.EpsRoot) + c.Eps else denominator MathF.Sqrt c.InvSqrtBc2 c.Eps vi
            pOut[i] <-
                if c.HasDecoupled then pi + ((mi * c.InvBc1) / denom + pi * c.Decoupled) * c.NegLr
                else pi + (mi * c.Step) / denom

    /// The kernel of an Adam-family chain whose parts `wd` (the weight decay), `moments`
    /// (scale_by_adam or scale_by_amsgrad) and `lr` (the learning-rate step) read their state;
    /// `decay` says where the weight decay acts (the chain's order of wd and moments).
    let kernelWith (chain: Kernel.Chain) (decay: AdamDecay) (wd: Transformation) (moments: Transformation) (lr: Transformation) (h: AdamHypers)
        : Target -> Tree -> State -> Tree -> Tree * State =
        let name = chain.Name
        let hasWd = not (Hyper.isZero h.WeightDecay)
        fun target grads state parameters ->
            let wdS, aS, lrS = chain.Of(wd, state), chain.Of(moments, state), chain.Of(lr, state)
            let ms, vs = aS.Slot "exp_avg", aS.Slot "exp_avg_sq"
            let xs = if h.Amsgrad then Some(aS.Slot "max_exp_avg_sq") else None
            Kernel.checkNames name parameters
                [ yield "gradients", grads
                  yield "first moments", ms
                  yield "second moments", vs
                  match xs with Some x -> yield "maxima of the second moments", x | None -> () ]
            let t = aS.Count + 1
            let b1 = Kernel.value aS.Count h.Beta1
            let b2 = Kernel.value aS.Count h.Beta2
            let bc1 = if h.Debias then 1.0 - Math.Pow(b1, float t) else 1.0
            let bc2 = if h.Debias then 1.0 - Math.Pow(b2, float t) else 1.0
            let lr = Kernel.value lrS.Count h.Lr
            let wd = if hasWd then Kernel.value wdS.Count h.WeightDecay else 0.0
            let l2, decoupled = (decay = AdamDecay.L2 && hasWd), (decay = AdamDecay.Decoupled && hasWd)
            let c =
                { NegLr = float32 (-lr); L2 = float32 wd; HasL2 = l2; Decoupled = float32 wd; HasDecoupled = decoupled
                  B1 = float32 b1; C1 = float32 (1.0 - b1); B2 = float32 b2; C2 = float32 (1.0 - b2)
                  InvBc1 = float32 (1.0 / bc1); Step = float32 (-lr / bc1)
                  InvSqrtBc2 = float32 (1.0 / Math.Sqrt bc2); InvBc2 = float32 (1.0 / bc2)
                  Eps = float32 h.Eps; EpsRoot = float32 h.EpsRoot; HasEpsRoot = h.EpsRoot <> 0.0; HasMax = h.Amsgrad }
            let out = Kernel.Outputs target
            let pOut = out.Of parameters
            let ms0, vs0, xs0 = ms, vs, xs
            let ms, vs, xs = out.Of ms, out.Of vs, Option.map out.Of xs
            let ps0, ps, gs = parameters.Values, pOut.Values, grads.Values
            let tensorsOf i =
                match xs with
                | Some x -> [| ps[i]; gs[i]; ms.Values[i]; vs.Values[i]; x.Values[i] |]
                | None -> [| ps[i]; gs[i]; ms.Values[i]; vs.Values[i] |]
            use sc = new Kernel.Scalars()
            let sB1, sC1, sB2, sC2 = sc.Of b1, sc.Of(1.0 - b1), sc.Of b2, sc.Of(1.0 - b2)
            let sWd, sEps, sEpsRoot = sc.Of wd, sc.Of h.Eps, sc.Of h.EpsRoot
            let sSqrtBc2, sBc2, sBc1, sNegLr, sStep = sc.Of(Math.Sqrt bc2), sc.Of bc2, sc.Of bc1, sc.Of(-lr), sc.Of(-lr / bc1)
            Kernel.run out parameters.Count tensorsOf
                (fun i start len ->
                    loop c out.Stream (Kernel.span ps0[i] start len) (Kernel.span gs[i] start len)
                        (Kernel.span ms0.Values[i] start len) (Kernel.span vs0.Values[i] start len) (Kernel.spanAt xs0 i start len)
                        (Kernel.span ps[i] start len) (Kernel.span ms.Values[i] start len) (Kernel.span vs.Values[i] start len) (Kernel.spanAt xs i start len))
                (fun i ->
                    let p, m, v = ps[i], ms.Values[i], vs.Values[i]
                    let g = if l2 then gs[i].add(p, sWd) else gs[i]
                    m.mul_(sB1).add_(g, sC1) |> ignore
                    v.mul_(sB2).addcmul_(g, g, sC2) |> ignore
                    let v =
                        match xs with
                        | Some x -> x.Values[i].copy_(torch.maximum(x.Values[i], v))
                        | None -> v
                    let denom =
                        if h.EpsRoot = 0.0 then v.sqrt().div_(sSqrtBc2).add_(sEps)
                        else v.div(sBc2).add_(sEpsRoot).sqrt_().add_(sEps)
                    if decoupled then p.add_(m.div(denom).div_(sBc1).add_(p, sWd), sNegLr) |> ignore
                    else p.addcdiv_(m, denom, sStep) |> ignore)
            pOut, out.State(chain.Stepped state)
