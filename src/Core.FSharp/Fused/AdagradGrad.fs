namespace Optimizers.Fused

open System
open System.Collections.Generic
open System.Numerics
open System.Runtime.CompilerServices
open System.Runtime.InteropServices
open TorchSharp
open Optimizers

/// Adagrad's step (Duchi et al. 2011, in torch.optim.Adagrad's form: Handcrafted/Adagrad.fs,
/// Accumulators.adagrad, ScaleBy.inverseTimeDecay) as one differentiable operation, as AdamGrad is
/// Adam's: a custom autograd function with a hand-written backward giving the gradients with
/// respect to p, g, the sum of squares s and the hyperparameters lr, weight_decay and lr_decay
/// (0-d tensors; eps is a constant of the rule, not differentiated). With gg = g + wd p and, at
/// the k-th update (k = 0, 1, ...: the decay part's count), f = 1 + k lr_decay,
///   s' = s + gg^2,   r = sqrt(s'),   d = r + eps,   q = gg / d,   p' = p - (lr / f) q
/// and for output gradients P, S of p', s' (Q = -(lr / f) P):
///   dd = -Q q / d,   ds' = S + dd / (2 r),   dgg = Q / d + 2 gg ds'
///   dp = P + wd dgg,   dg = dgg,   ds = ds'
///   dlr = -sum P q / f,   dwd = sum dgg p,   dlr_decay = k lr sum P q / f^2
/// Every tensor contiguous on the CPU, float32 (Vector<float32> wide over the fused kernels'
/// chunks in parallel; new tensors of Kernel.streamBytes or more in all stored non-temporally:
/// Kernel.streams) or float64 (element by element), else `treeStep` returns None and
/// `Transform.step` goes op by op (`stepOps`, the reference of its tests). One autograd call per
/// step takes all the parameters' tensors (a call's fixed 40-75 us made a call per tensor costly
/// with many tensors, as SgdGrad measured). First-order: differentiating the backward pass again
/// warns and gives no second derivative.
module AdagradGrad =

    /// The element's forward values: gg, s', r, d, q.
    let inline private forwardAt sqrt wd eps p g s =
        let gg = g + p * wd
        let s' = s + gg * gg
        let r = sqrt s'
        let d = r + eps
        struct (gg, s', r, d, gg / d)

    /// One element of the backward pass: (dp, dg, ds) and the terms of the sums (P q, dgg p).
    let inline private backwardAt sqrt wd eps negStep two half p g s dP dS =
        let struct (gg, _, r, d, q) = forwardAt sqrt wd eps p g s
        let dq = dP * negStep
        let dd = -(dq * q) / d
        let ds' = dS + dd * half / r
        let dgg = dq / d + two * gg * ds'
        struct (dP + dgg * wd, dgg, ds', dP * q, dgg * p)

    /// The hyperparameters of one step as numbers (the loops' constants); K is the decay's count.
    [<Struct>]
    type private Coeffs =
        { Lr: float; Wd: float; LrDecay: float; Eps: float; K: int }
        /// The decay's divisor 1 + k lr_decay.
        member c.F = 1.0 + float c.K * c.LrDecay
        /// The signed step size -lr / f.
        member c.NegStep = -c.Lr / c.F

    /// How many times the fused function has run forward (for tests that must know it did).
    let mutable calls = 0L

    let inline private forwardLoop (c: Coeffs) conv sqrt (p: Span<'T>) (g: Span<'T>) (s: Span<'T>) (pO: Span<'T>) (sO: Span<'T>) =
        let wd, eps, negStep = conv c.Wd, conv c.Eps, conv c.NegStep
        for i in 0 .. p.Length - 1 do
            let struct (_, si, _, _, q) = forwardAt sqrt wd eps p[i] g[i] s[i]
            sO[i] <- si
            pO[i] <- p[i] + q * negStep

    /// The backward loop; returns the sums (sum P q, sum dgg p) in float64.
    let inline private backwardLoop (c: Coeffs) conv sqrt (p: Span<'T>) (g: Span<'T>) (s: Span<'T>) (dP: Span<'T>) (dS: Span<'T>)
                                    (dp: Span<'T>) (dg: Span<'T>) (ds: Span<'T>) =
        let wd, eps, negStep, two, half = conv c.Wd, conv c.Eps, conv c.NegStep, conv 2.0, conv 0.5
        let mutable sPq, sWd = 0.0, 0.0
        for i in 0 .. p.Length - 1 do
            let struct (xp, xg, xs, pq, w) = backwardAt sqrt wd eps negStep two half p[i] g[i] s[i] dP[i] dS[i]
            dp[i] <- xp
            dg[i] <- xg
            ds[i] <- xs
            sPq <- sPq + float pq
            sWd <- sWd + float w
        struct (sPq, sWd)

    let private V (x: float) = Vector<float32>(float32 x)

    let private vsqrt (x: Vector<float32>) = Vector.SquareRoot x

    let private vectors (s: Span<float32>) = MemoryMarshal.Cast<float32, Vector<float32>> s

    /// The float32 forward over one chunk, Vector<float32> wide, then the tail. `stream`:
    /// non-temporal vector stores (Kernel.store), for outputs too large to stay in the cache.
    [<MethodImpl(MethodImplOptions.AggressiveOptimization)>]
    let private forward32 (c: Coeffs) (stream: bool) (p: Span<float32>) (g: Span<float32>) (s: Span<float32>) (pO: Span<float32>) (sO: Span<float32>) =
        let pv = vectors p
        let gv = vectors g
        let sv = vectors s
        let po = vectors pO
        let so = vectors sO
        let wd, eps, negStep = V c.Wd, V c.Eps, V c.NegStep
        for k in 0 .. pv.Length - 1 do
            let struct (_, sk, _, _, q) = forwardAt vsqrt wd eps pv[k] gv[k] sv[k]
            Kernel.store stream so k sk
            Kernel.store stream po k (pv[k] + q * negStep)
        let tail = pv.Length * Vector<float32>.Count
        forwardLoop c float32 MathF.Sqrt (p.Slice tail) (g.Slice tail) (s.Slice tail) (pO.Slice tail) (sO.Slice tail)

    /// The float32 backward over one chunk, Vector<float32> wide, then the tail; returns the sums.
    /// `stream` as in forward32.
    [<MethodImpl(MethodImplOptions.AggressiveOptimization)>]
    let private backward32 (c: Coeffs) (stream: bool) (p: Span<float32>) (g: Span<float32>) (s: Span<float32>) (dP: Span<float32>) (dS: Span<float32>)
                           (dp: Span<float32>) (dg: Span<float32>) (ds: Span<float32>) =
        let pv = vectors p
        let gv = vectors g
        let sv = vectors s
        let dPv = vectors dP
        let dSv = vectors dS
        let dpv = vectors dp
        let dgv = vectors dg
        let dsv = vectors ds
        let wd, eps, negStep, two, half = V c.Wd, V c.Eps, V c.NegStep, V 2.0, V 0.5
        let mutable sPq, sWd = Vector<float32>.Zero, Vector<float32>.Zero
        for k in 0 .. pv.Length - 1 do
            let struct (xp, xg, xs, pq, w) = backwardAt vsqrt wd eps negStep two half pv[k] gv[k] sv[k] dPv[k] dSv[k]
            Kernel.store stream dpv k xp
            Kernel.store stream dgv k xg
            Kernel.store stream dsv k xs
            sPq <- sPq + pq
            sWd <- sWd + w
        let tail = pv.Length * Vector<float32>.Count
        let struct (tPq, tWd) =
            backwardLoop c float32 MathF.Sqrt (p.Slice tail) (g.Slice tail) (s.Slice tail) (dP.Slice tail) (dS.Slice tail)
                (dp.Slice tail) (dg.Slice tail) (ds.Slice tail)
        struct (float (Vector.Sum sPq) + tPq, float (Vector.Sum sWd) + tWd)

    let private value (t: Tensor) = t.ToDouble()

    /// The autograd function, called once per step with all n parameters' tensors. Inputs:
    /// p_0..p_{n-1}, g_0.., s_0.. (each parameter's tensors of one shape and dtype), lr, wd,
    /// lr_decay (0-d tensors), eps (a float), k (the decay's count) and n. Outputs p'_0.., s'_0..;
    /// backward gives the inputs' gradients in their order, a hyperparameter's summed over all tensors.
    type private Step() =
        inherit torch.autograd.MultiTensorFunction<Step>()

        override _.Name = "adagrad_step"

        override _.forward(ctx: torch.autograd.AutogradContext, vars: obj[]) : List<Tensor> =
            let n = vars[vars.Length - 1] :?> int
            let x (k: int) = vars[k] :?> Tensor
            let ps, gs, ss = Array.init n x, Array.init n (fun i -> x (n + i)), Array.init n (fun i -> x (2 * n + i))
            let lr, wd, lrDecay = x (3 * n), x (3 * n + 1), x (3 * n + 2)
            let eps, k = vars[3 * n + 3] :?> float, vars[3 * n + 4] :?> int
            let c = { Lr = value lr; Wd = value wd; LrDecay = value lrDecay; Eps = eps; K = k }
            Threading.Interlocked.Increment(&calls) |> ignore
            ctx.save_for_backward(List(Array.concat [ ps; gs; ss; [| lr; wd; lrDecay |] ]))
            ctx.save_data("eps", box eps)
            ctx.save_data("k", box k)
            ctx.save_data("n", box n)
            let pO, sO = Array.map torch.empty_like ps, Array.map torch.empty_like ss
            let single i = ps[i].dtype = torch.ScalarType.Float32
            // over the float32 outputs only: the float64 ones are not the vector loops' (parameters may mix dtypes)
            let stream = Kernel.streams [| for i in 0 .. n - 1 do if single i then yield pO[i]; yield sO[i] |]
            Kernel.forChunksStoring stream [| for i in 0 .. n - 1 do if single i then yield i, int (ps[i].numel ()) |] (fun i st l ->
                forward32 c stream (Kernel.span ps[i] st l) (Kernel.span gs[i] st l) (Kernel.span ss[i] st l) (Kernel.span pO[i] st l) (Kernel.span sO[i] st l))
            for i in 0 .. n - 1 do
                if not (single i) then
                    forwardLoop c float Math.Sqrt (AdamGrad.spanOf<float> ps[i]) (AdamGrad.spanOf<float> gs[i]) (AdamGrad.spanOf<float> ss[i])
                        (AdamGrad.spanOf<float> pO[i]) (AdamGrad.spanOf<float> sO[i])
            List(Array.append pO sO)

        override _.backward(ctx: torch.autograd.AutogradContext, grads: List<Tensor>) : List<Tensor> =
            Kernel.warnIfDifferentiated "adagrad_step: second derivatives (create_graph) through the fused Adagrad step are not computed (its backward pass is hand-written); set Optimizers.Fused.Kernel.useSimd <- false for the op-by-op form"
            let saved = ctx.get_saved_variables ()
            let n = ctx.get_data "n" :?> int
            let ps, gs, ss = Array.init n (fun i -> saved[i]), Array.init n (fun i -> saved[n + i]), Array.init n (fun i -> saved[2 * n + i])
            let lr, wd, lrDecay = saved[3 * n], saved[3 * n + 1], saved[3 * n + 2]
            let c = { Lr = value lr; Wd = value wd; LrDecay = value lrDecay; Eps = ctx.get_data "eps" :?> float; K = ctx.get_data "k" :?> int }
            use _ = torch.no_grad ()
            // the output gradients as contiguous tensors (LibTorch may hand over expanded zeros, or none)
            let dOut k i = if isNull grads[k * n + i] then torch.zeros_like ps[i] else grads[k * n + i].contiguous ()
            let dP, dS = Array.init n (dOut 0), Array.init n (dOut 1)
            let dp, dg, ds = Array.map torch.empty_like ps, Array.map torch.empty_like gs, Array.map torch.empty_like ss
            let single i = ps[i].dtype = torch.ScalarType.Float32
            let stream = Kernel.streams [| for i in 0 .. n - 1 do if single i then yield dp[i]; yield dg[i]; yield ds[i] |]
            let add (struct (a, b)) (struct (x, y)) = struct (a + x, b + y)
            let zero = struct (0.0, 0.0)
            let struct (sPq, sWd) =
                Array.append
                    (Kernel.sumChunks stream [| for i in 0 .. n - 1 do if single i then yield i, int (ps[i].numel ()) |] zero add (fun i st l ->
                        backward32 c stream (Kernel.span ps[i] st l) (Kernel.span gs[i] st l) (Kernel.span ss[i] st l) (Kernel.span dP[i] st l) (Kernel.span dS[i] st l)
                            (Kernel.span dp[i] st l) (Kernel.span dg[i] st l) (Kernel.span ds[i] st l)))
                    [| for i in 0 .. n - 1 do
                        if not (single i) then
                            backwardLoop c float Math.Sqrt (AdamGrad.spanOf<float> ps[i]) (AdamGrad.spanOf<float> gs[i]) (AdamGrad.spanOf<float> ss[i])
                                (AdamGrad.spanOf<float> dP[i]) (AdamGrad.spanOf<float> dS[i])
                                (AdamGrad.spanOf<float> dp[i]) (AdamGrad.spanOf<float> dg[i]) (AdamGrad.spanOf<float> ds[i]) |]
                |> Array.fold add zero
            let f = c.F
            let scalar (like: Tensor) (x: float) = torch.tensor(x, dtype = like.dtype, device = like.device).reshape(like.shape)
            List(Array.concat [ dp; dg; ds; [| scalar lr (-sPq / f); scalar wd sWd; scalar lrDecay (float c.K * c.Lr * sPq / (f * f)); null; null; null |] ])

    /// Adagrad's differentiable step over trees (the state of Adagrad.create's chain, whose parts
    /// `wdPart` (add_decayed_weights), `sumsPart` (scale_by_adagrad), `decay` (identity or
    /// scale_by_inverse_time_decay) and `lrPart` (scale_by_learning_rate) read their state), as
    /// `Transform.stepOps` gives it, in one call of the function over all the tensors, or None when
    /// any tensor is not contiguous CPU float32/float64 (the whole step op by op).
    let treeStep (chain: Kernel.Chain) (wdPart: Transformation) (sumsPart: Transformation) (decay: Transformation) (lrPart: Transformation)
                 (lr: Hyper) (lrDecay: Hyper) (weightDecay: Hyper) (eps: float) : Tree -> State -> Tree -> (Tree * State) option =
        let decays = not (Hyper.isZero lrDecay)
        fun grads state parameters ->
            let wdS, aS, dS, lrS = chain.Of(wdPart, state), chain.Of(sumsPart, state), chain.Of(decay, state), chain.Of(lrPart, state)
            let sums = aS.Slot "sum"
            Kernel.checkNames chain.Name parameters [ "gradients", grads; "sums of squares", sums ]
            let tensorsOf i = [ parameters.Values[i]; grads.Values[i]; sums.Values[i] ]
            if not (Array.forall (fun i -> AdamGrad.fusable (tensorsOf i)) [| 0 .. parameters.Count - 1 |]) then None
            else
                let lrT, wdT = AdamGrad.asTensor (Hyper.at lrS.Count lr), AdamGrad.asTensor (Hyper.at wdS.Count weightDecay)
                // without decay the chain has `identity` there (no count): f = 1
                let k = if decays then dS.Count else 0
                let decayT = AdamGrad.asTensor (if decays then Hyper.at k lrDecay else HValue.Num 0.0)
                let n = parameters.Count
                let out =
                    if n = 0 then [||]
                    else
                        Step.apply(Array.concat [ Array.map box parameters.Values; Array.map box grads.Values; Array.map box sums.Values
                                                  [| box lrT; box wdT; box decayT; box eps; box k; box n |] ])
                        |> Array.ofSeq
                let tree j = { Names = parameters.Names; Values = Array.sub out (j * n) n }
                let stepped = chain.Stepped state
                let sums' = { chain.Of(sumsPart, stepped) with Slots = Map.ofList [ "sum", tree 1 ] }
                Some(tree 0, chain.With(sumsPart, sums', stepped))
