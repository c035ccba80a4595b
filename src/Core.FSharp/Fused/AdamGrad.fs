namespace Optimizers.Fused

open System
open System.Collections.Generic
open System.Numerics
open System.Runtime.CompilerServices
open System.Runtime.InteropServices
open TorchSharp
open Optimizers

/// Adam's step as one differentiable operation (issue 15): a custom autograd function whose
/// forward is one SIMD pass over p, g, m, v and whose hand-written backward gives the gradients
/// with respect to the parameters, the gradient input, both moments and the hyperparameters lr,
/// beta1, beta2 and weight_decay (0-d tensors, with or without grad). With gg = g + wd p,
///   m' = b1 m + (1 - b1) gg,   v' = b2 v + (1 - b2) gg^2,   den = sqrt(v') s + eps
///   q = m' / den,   u = q / (1 - b1^t),   p' = p - lr u        (s = 1 / sqrt(1 - b2^t))
/// and for output gradients P, M, V of p', m', v' (U = -lr P, or -lr P + D with the direction u
/// as a fourth output, `applyWithDirection`, D its output gradient):
///   dq = U / (1 - b1^t),   dm' = M + dq / den,   dden = -dq q / den,   dv' = V + dden s / (2 sqrt(v'))
///   dm = b1 dm',   dv = b2 dv',   dgg = (1 - b1) dm' + 2 (1 - b2) gg dv',   dp = P + wd dgg,   dg = dgg
///   dlr = -sum P u,   deps = sum dden,   dwd = sum dgg p
///   db1 = sum dm' (m - gg) + sum (U q) t b1^(t-1) / (1 - b1^t)^2
///   db2 = sum dv' (v - gg^2) + sum (dden sqrt(v')) t b2^(t-1) / (2 (1 - b2^t)^(3/2))
/// It is what `Transform.step` runs for Adam (L2 decay, no AMSGrad, no eps_root) when a gradient
/// has to flow through the step and every tensor is contiguous on the CPU, in float32 (SIMD) or
/// float64; everything else goes op by op (`Transform.stepOps`, the reference of its tests). The
/// backward pass is first-order: differentiating it again warns and gives no second derivative.
module AdamGrad =

    /// The element's forward values: gg, m', v', sqrt(v'), den, q.
    let inline private forwardAt sqrt wd b1 c1 b2 c2 s eps p g m v =
        let gg = g + p * wd
        let struct (m', v') = AdamKernel.moments b1 c1 b2 c2 m v gg
        let r = sqrt v'
        let den = r * s + eps
        struct (gg, m', v', r, den, m' / den)

    /// One element of the backward pass: (dp, dg, dm, dv) and the terms of the hyperparameter sums
    /// (lr, eps, wd, b1, ib1, b2, s).
    let inline private backwardAt sqrt wd b1 c1 b2 c2 s eps ib1 negLr two half p g m v dP dM dV dD =
        let struct (gg, m', v', r, den, q) = forwardAt sqrt wd b1 c1 b2 c2 s eps p g m v
        let dU = dP * negLr + dD
        let dq = dU * ib1
        let dm' = dM + dq / den
        let dden = -(dq * q) / den
        let dv' = dV + dden * s * half / r
        let dgg = dm' * c1 + two * c2 * gg * dv'
        struct (dP + dgg * wd, dgg, dm' * b1, dv' * b2,
                -(dP * (q * ib1)), dden, dgg * p, dm' * (m - gg), dU * q, dv' * (v - gg * gg), dden * r)

    /// The hyperparameters of one step as numbers (the forward and backward loops' constants).
    [<Struct>]
    type private Coeffs =
        { Lr: float; Wd: float; B1: float; B2: float; Eps: float; T: int }
        member c.Bc1 = 1.0 - Math.Pow(c.B1, float c.T)
        member c.Bc2 = 1.0 - Math.Pow(c.B2, float c.T)

    /// All elements of a contiguous CPU tensor as a span of 'T (the float64 loops' view).
    let spanOf<'T when 'T: unmanaged and 'T: struct and 'T: (new: unit -> 'T) and 'T :> ValueType> (t: Tensor) : Span<'T> =
        MemoryMarshal.Cast<byte, 'T>(t.bytes)

    /// Forward over one float32 chunk (and the direction u into uO unless it is empty).
    [<MethodImpl(MethodImplOptions.AggressiveOptimization)>]
    let private forward32 (c: Coeffs) (p: Span<float32>) (g: Span<float32>) (m: Span<float32>) (v: Span<float32>)
                          (pO: Span<float32>) (mO: Span<float32>) (vO: Span<float32>) (uO: Span<float32>) =
        let wd, b1, c1, b2, c2 = float32 c.Wd, float32 c.B1, float32 (1.0 - c.B1), float32 c.B2, float32 (1.0 - c.B2)
        let s, eps, negStep = float32 (1.0 / Math.Sqrt c.Bc2), float32 c.Eps, float32 (-c.Lr / c.Bc1)
        let pv = MemoryMarshal.Cast<float32, Vector<float32>> p
        let gv = MemoryMarshal.Cast<float32, Vector<float32>> g
        let mv = MemoryMarshal.Cast<float32, Vector<float32>> m
        let vv = MemoryMarshal.Cast<float32, Vector<float32>> v
        let po = MemoryMarshal.Cast<float32, Vector<float32>> pO
        let mo = MemoryMarshal.Cast<float32, Vector<float32>> mO
        let vo = MemoryMarshal.Cast<float32, Vector<float32>> vO
        let uo = MemoryMarshal.Cast<float32, Vector<float32>> uO
        let withU, ib1 = not uO.IsEmpty, float32 (1.0 / c.Bc1)
        let wdV, b1V, c1V, b2V, c2V = Vector<float32>(wd), Vector<float32>(b1), Vector<float32>(c1), Vector<float32>(b2), Vector<float32>(c2)
        let sV, epsV, stepV, ib1V = Vector<float32>(s), Vector<float32>(eps), Vector<float32>(negStep), Vector<float32>(ib1)
        for k in 0 .. pv.Length - 1 do
            let struct (_, mk, vk, _, _, q) = forwardAt (fun (x: Vector<float32>) -> Vector.SquareRoot x) wdV b1V c1V b2V c2V sV epsV pv[k] gv[k] mv[k] vv[k]
            mo[k] <- mk
            vo[k] <- vk
            po[k] <- pv[k] + q * stepV
            if withU then uo[k] <- q * ib1V
        for i in pv.Length * Vector<float32>.Count .. p.Length - 1 do
            let struct (_, mi, vi, _, _, q) = forwardAt MathF.Sqrt wd b1 c1 b2 c2 s eps p[i] g[i] m[i] v[i]
            mO[i] <- mi
            vO[i] <- vi
            pO[i] <- p[i] + q * negStep
            if withU then uO[i] <- q * ib1

    /// Forward over one float64 chunk (element by element: the tests' precision path).
    let private forward64 (c: Coeffs) (p: Span<float>) (g: Span<float>) (m: Span<float>) (v: Span<float>)
                          (pO: Span<float>) (mO: Span<float>) (vO: Span<float>) (uO: Span<float>) =
        let s, negStep, ib1 = 1.0 / Math.Sqrt c.Bc2, -c.Lr / c.Bc1, 1.0 / c.Bc1
        for i in 0 .. p.Length - 1 do
            let struct (_, mi, vi, _, _, q) = forwardAt Math.Sqrt c.Wd c.B1 (1.0 - c.B1) c.B2 (1.0 - c.B2) s c.Eps p[i] g[i] m[i] v[i]
            mO[i] <- mi
            vO[i] <- vi
            pO[i] <- p[i] + q * negStep
            if not uO.IsEmpty then uO[i] <- q * ib1

    /// The seven hyperparameter sums of the backward pass, in float64.
    type private Sums() =
        member val V = Array.zeroCreate<float> 7
        member x.Add(a: float, b: float, c: float, d: float, e: float, f: float, g: float) =
            let v = x.V
            v[0] <- v[0] + a; v[1] <- v[1] + b; v[2] <- v[2] + c; v[3] <- v[3] + d; v[4] <- v[4] + e; v[5] <- v[5] + f; v[6] <- v[6] + g

    /// Backward over one float32 chunk, adding the chunk's hyperparameter sums into `sums` (dD:
    /// the direction's output gradient, empty when there is no direction output).
    [<MethodImpl(MethodImplOptions.AggressiveOptimization)>]
    let private backward32 (c: Coeffs) (sums: Sums) (p: Span<float32>) (g: Span<float32>) (m: Span<float32>) (v: Span<float32>)
                           (dP: Span<float32>) (dM: Span<float32>) (dV: Span<float32>) (dD: Span<float32>)
                           (dp: Span<float32>) (dg: Span<float32>) (dm: Span<float32>) (dv: Span<float32>) =
        let wd, b1, c1, b2, c2 = float32 c.Wd, float32 c.B1, float32 (1.0 - c.B1), float32 c.B2, float32 (1.0 - c.B2)
        let s, eps, ib1, negLr = float32 (1.0 / Math.Sqrt c.Bc2), float32 c.Eps, float32 (1.0 / c.Bc1), float32 (-c.Lr)
        let pv = MemoryMarshal.Cast<float32, Vector<float32>> p
        let gv = MemoryMarshal.Cast<float32, Vector<float32>> g
        let mv = MemoryMarshal.Cast<float32, Vector<float32>> m
        let vv = MemoryMarshal.Cast<float32, Vector<float32>> v
        let dPv = MemoryMarshal.Cast<float32, Vector<float32>> dP
        let dMv = MemoryMarshal.Cast<float32, Vector<float32>> dM
        let dVv = MemoryMarshal.Cast<float32, Vector<float32>> dV
        let dDv = MemoryMarshal.Cast<float32, Vector<float32>> dD
        let withD = not dD.IsEmpty
        let dpv = MemoryMarshal.Cast<float32, Vector<float32>> dp
        let dgv = MemoryMarshal.Cast<float32, Vector<float32>> dg
        let dmv = MemoryMarshal.Cast<float32, Vector<float32>> dm
        let dvv = MemoryMarshal.Cast<float32, Vector<float32>> dv
        let V (x: float32) = Vector<float32>(x)
        let wdV, b1V, c1V, b2V, c2V, sV, epsV, ib1V, negLrV, twoV, halfV = V wd, V b1, V c1, V b2, V c2, V s, V eps, V ib1, V negLr, V 2.0f, V 0.5f
        let mutable a0, a1, a2, a3, a4, a5, a6 = Vector<float32>.Zero, Vector<float32>.Zero, Vector<float32>.Zero, Vector<float32>.Zero, Vector<float32>.Zero, Vector<float32>.Zero, Vector<float32>.Zero
        for k in 0 .. pv.Length - 1 do
            let struct (xp, xg, xm, xv, lr, e, w, bb1, i1, bb2, ss) =
                backwardAt (fun (x: Vector<float32>) -> Vector.SquareRoot x) wdV b1V c1V b2V c2V sV epsV ib1V negLrV twoV halfV
                    pv[k] gv[k] mv[k] vv[k] dPv[k] dMv[k] dVv[k] (if withD then dDv[k] else Vector<float32>.Zero)
            dpv[k] <- xp
            dgv[k] <- xg
            dmv[k] <- xm
            dvv[k] <- xv
            a0 <- a0 + lr; a1 <- a1 + e; a2 <- a2 + w; a3 <- a3 + bb1; a4 <- a4 + i1; a5 <- a5 + bb2; a6 <- a6 + ss
        let sum (x: Vector<float32>) = float (Vector.Sum x)
        sums.Add(sum a0, sum a1, sum a2, sum a3, sum a4, sum a5, sum a6)
        for i in pv.Length * Vector<float32>.Count .. p.Length - 1 do
            let struct (xp, xg, xm, xv, lr, e, w, bb1, i1, bb2, ss) =
                backwardAt MathF.Sqrt wd b1 c1 b2 c2 s eps ib1 negLr 2.0f 0.5f p[i] g[i] m[i] v[i] dP[i] dM[i] dV[i] (if withD then dD[i] else 0.0f)
            dp[i] <- xp
            dg[i] <- xg
            dm[i] <- xm
            dv[i] <- xv
            sums.Add(float lr, float e, float w, float bb1, float i1, float bb2, float ss)

    /// Backward over one float64 chunk.
    let private backward64 (c: Coeffs) (sums: Sums) (p: Span<float>) (g: Span<float>) (m: Span<float>) (v: Span<float>)
                           (dP: Span<float>) (dM: Span<float>) (dV: Span<float>) (dD: Span<float>)
                           (dp: Span<float>) (dg: Span<float>) (dm: Span<float>) (dv: Span<float>) =
        let s = 1.0 / Math.Sqrt c.Bc2
        for i in 0 .. p.Length - 1 do
            let struct (xp, xg, xm, xv, lr, e, w, bb1, i1, bb2, ss) =
                backwardAt Math.Sqrt c.Wd c.B1 (1.0 - c.B1) c.B2 (1.0 - c.B2) s c.Eps (1.0 / c.Bc1) (-c.Lr) 2.0 0.5
                    p[i] g[i] m[i] v[i] dP[i] dM[i] dV[i] (if dD.IsEmpty then 0.0 else dD[i])
            dp[i] <- xp
            dg[i] <- xg
            dm[i] <- xm
            dv[i] <- xv
            sums.Add(lr, e, w, bb1, i1, bb2, ss)

    /// Run `body start length` over the chunks of n elements, each with its own sums, in parallel
    /// as the fused kernels do; returns the sums added up.
    let private overChunks (n: int) (body: Sums -> int -> int -> unit) : float[] =
        let chunk = max 1024 Kernel.chunkElements
        let count = (n + chunk - 1) / chunk
        let parts = Array.init count (fun _ -> Sums())
        Kernel.forChunks [| 0, n |] (fun _ start len -> body parts[start / chunk] start len)
        Array.init 7 (fun k -> parts |> Array.sumBy (fun s -> s.V[k]))

    let private value (t: Tensor) = t.ToDouble()

    /// How many times the fused function has run forward (for tests that must know it did).
    let mutable calls = 0L

    /// The autograd function. Inputs: p, g, m, v (tensors of one shape and dtype), lr, b1, b2, wd
    /// (0-d tensors), eps (a float), t (the step, from 1) and whether to output the direction u too.
    type private Step() =
        inherit torch.autograd.MultiTensorFunction<Step>()

        override _.Name = "adam_step"

        override _.forward(ctx: torch.autograd.AutogradContext, vars: obj[]) : List<Tensor> =
            let x (k: int) = vars[k] :?> Tensor
            let p, g, m, v, lr, b1, b2, wd = x 0, x 1, x 2, x 3, x 4, x 5, x 6, x 7
            let eps, t, withU = vars[8] :?> float, vars[9] :?> int, vars[10] :?> bool
            let c = { Lr = value lr; Wd = value wd; B1 = value b1; B2 = value b2; Eps = eps; T = t }
            Threading.Interlocked.Increment(&calls) |> ignore
            ctx.save_for_backward(List [ p; g; m; v; lr; b1; b2; wd ])
            ctx.save_data("eps", box eps)
            ctx.save_data("t", box t)
            ctx.save_data("u", box withU)
            let pO, mO, vO = torch.empty_like p, torch.empty_like m, torch.empty_like v
            let uO = if withU then torch.empty_like p else null
            let n = int (p.numel ())
            if p.dtype = torch.ScalarType.Float32 then
                Kernel.forChunks [| 0, n |] (fun _ s l ->
                    forward32 c (Kernel.span p s l) (Kernel.span g s l) (Kernel.span m s l) (Kernel.span v s l)
                        (Kernel.span pO s l) (Kernel.span mO s l) (Kernel.span vO s l) (if withU then Kernel.span uO s l else Span<float32>.Empty))
            else
                forward64 c (spanOf<float> p) (spanOf<float> g) (spanOf<float> m) (spanOf<float> v) (spanOf<float> pO) (spanOf<float> mO) (spanOf<float> vO)
                    (if withU then spanOf<float> uO else Span<float>.Empty)
            if withU then List [ pO; mO; vO; uO ] else List [ pO; mO; vO ]

        override _.backward(ctx: torch.autograd.AutogradContext, grads: List<Tensor>) : List<Tensor> =
            Kernel.warnIfDifferentiated "adam_step: second derivatives (create_graph) through the fused Adam step are not computed (its backward pass is hand-written); set Optimizers.Fused.Kernel.useSimd <- false for the op-by-op form"
            let saved = ctx.get_saved_variables ()
            let p, g, m, v, lr, b1, b2, wd = saved[0], saved[1], saved[2], saved[3], saved[4], saved[5], saved[6], saved[7]
            let eps, t, withU = ctx.get_data "eps" :?> float, ctx.get_data "t" :?> int, ctx.get_data "u" :?> bool
            let c = { Lr = value lr; Wd = value wd; B1 = value b1; B2 = value b2; Eps = eps; T = t }
            use _ = torch.no_grad ()
            // the output gradients as contiguous tensors (LibTorch may hand over expanded zeros, or none)
            let dOut = [| for k in 0 .. (if withU then 3 else 2) -> (if isNull grads[k] then torch.zeros_like p else grads[k].contiguous ()) |]
            let dp, dg, dm, dv = torch.empty_like p, torch.empty_like g, torch.empty_like m, torch.empty_like v
            let n = int (p.numel ())
            let sums =
                if p.dtype = torch.ScalarType.Float32 then
                    overChunks n (fun sums s l ->
                        backward32 c sums (Kernel.span p s l) (Kernel.span g s l) (Kernel.span m s l) (Kernel.span v s l)
                            (Kernel.span dOut[0] s l) (Kernel.span dOut[1] s l) (Kernel.span dOut[2] s l) (if withU then Kernel.span dOut[3] s l else Span<float32>.Empty)
                            (Kernel.span dp s l) (Kernel.span dg s l) (Kernel.span dm s l) (Kernel.span dv s l))
                else
                    let sums = Sums()
                    backward64 c sums (spanOf<float> p) (spanOf<float> g) (spanOf<float> m) (spanOf<float> v)
                        (spanOf<float> dOut[0]) (spanOf<float> dOut[1]) (spanOf<float> dOut[2]) (if withU then spanOf<float> dOut[3] else Span<float>.Empty)
                        (spanOf<float> dp) (spanOf<float> dg) (spanOf<float> dm) (spanOf<float> dv)
                    sums.V
            let tt = float t
            let dLr = sums[0]
            let dWd = sums[2]
            let dB1 = sums[3] + sums[4] * tt * Math.Pow(c.B1, tt - 1.0) / (c.Bc1 * c.Bc1)
            let dB2 = sums[5] + sums[6] * tt * Math.Pow(c.B2, tt - 1.0) / (2.0 * Math.Pow(c.Bc2, 1.5))
            let scalar (like: Tensor) (x: float) = torch.tensor(x, dtype = like.dtype, device = like.device).reshape(like.shape)
            List [ dp; dg; dm; dv; scalar lr dLr; scalar b1 dB1; scalar b2 dB2; scalar wd dWd; null; null; null ]

    /// True when the function takes these tensors: all contiguous CPU tensors of one dtype,
    /// float32 or float64, with the same number of elements.
    let fusable (ts: Tensor list) =
        Kernel.useSimd
        && (let d = (List.head ts).dtype
            (d = torch.ScalarType.Float32 || d = torch.ScalarType.Float64)
            && ts |> List.forall (fun t -> t.dtype = d && t.device_type = DeviceType.CPU && t.is_contiguous ()
                                           && t.numel () = (List.head ts).numel () && t.numel () <= int64 (Int32.MaxValue / 8)))

    /// One differentiable fused Adam step of one tensor at step t (from 1): p', m', v'.
    let apply (p: Tensor) (g: Tensor) (m: Tensor) (v: Tensor) (lr: Tensor) (b1: Tensor) (b2: Tensor) (wd: Tensor) (eps: float) (t: int) =
        let out = Step.apply(p, g, m, v, lr, b1, b2, wd, box eps, box t, box false)
        out[0], out[1], out[2]

    /// `apply` that also outputs the direction u = q / (1 - b1^t) (p' = p - lr u; Adam-HD keeps it
    /// as its "direction"): p', m', v', u.
    let applyWithDirection (p: Tensor) (g: Tensor) (m: Tensor) (v: Tensor) (lr: Tensor) (b1: Tensor) (b2: Tensor) (wd: Tensor) (eps: float) (t: int) =
        let out = Step.apply(p, g, m, v, lr, b1, b2, wd, box eps, box t, box true)
        out[0], out[1], out[2], out[3]

    /// A hyperparameter's value at a step as a 0-d tensor: its own tensor (which may require grad),
    /// else a float64 constant.
    let asTensor (h: HValue) : Tensor =
        match h with
        | HValue.Ten t -> t
        | HValue.Num v -> torch.tensor(v, dtype = torch.ScalarType.Float64)

    /// Adam's differentiable step over trees (the state of Adam.create's chain, whose parts `wd`,
    /// `moments` and `lr` read their state): new parameters and state as `Transform.stepOps` gives
    /// them, or None for what the function does not take (eps_root, or a tensor that is not
    /// contiguous CPU float32/float64).
    let treeStep (chain: Kernel.Chain) (wd: Transformation) (moments: Transformation) (lrPart: Transformation)
                 (lr: Hyper) (beta1: Hyper) (beta2: Hyper) (eps: float) (epsRoot: float) (weightDecay: Hyper) : Tree -> State -> Tree -> (Tree * State) option =
        fun grads state parameters ->
            let wdS, aS, lrS = chain.Of(wd, state), chain.Of(moments, state), chain.Of(lrPart, state)
            let ms, vs = aS.Slot "exp_avg", aS.Slot "exp_avg_sq"
            Kernel.checkNames chain.Name parameters [ "gradients", grads; "first moments", ms; "second moments", vs ]
            let tensorsOf i = [ parameters.Values[i]; grads.Values[i]; ms.Values[i]; vs.Values[i] ]
            if epsRoot <> 0.0 || not (Array.forall (fun i -> fusable (tensorsOf i)) [| 0 .. parameters.Count - 1 |]) then None
            else
                let lrT, wdT = asTensor (Hyper.at lrS.Count lr), asTensor (Hyper.at wdS.Count weightDecay)
                let b1T, b2T = asTensor (Hyper.at aS.Count beta1), asTensor (Hyper.at aS.Count beta2)
                let out = Array.init parameters.Count (fun i ->
                    apply parameters.Values[i] grads.Values[i] ms.Values[i] vs.Values[i] lrT b1T b2T wdT eps (aS.Count + 1))
                let tree (pick: Tensor * Tensor * Tensor -> Tensor) = { Names = parameters.Names; Values = Array.map pick out }
                let stepped = chain.Stepped state
                let moments' = { chain.Of(moments, stepped) with Slots = Map.ofList [ "exp_avg", tree (fun (_, m, _) -> m); "exp_avg_sq", tree (fun (_, _, v) -> v) ] }
                Some(tree (fun (p, _, _) -> p), chain.With(moments, moments', stepped))
