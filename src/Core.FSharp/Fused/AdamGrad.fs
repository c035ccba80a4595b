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
/// and for output gradients P, M, V of p', m', v' (U = -lr P):
///   dq = U / (1 - b1^t),   dm' = M + dq / den,   dden = -dq q / den,   dv' = V + dden s / (2 sqrt(v'))
///   dm = b1 dm',   dv = b2 dv',   dgg = (1 - b1) dm' + 2 (1 - b2) gg dv',   dp = P + wd dgg,   dg = dgg
///   dlr = -sum P u,   deps = sum dden,   dwd = sum dgg p
///   db1 = sum dm' (m - gg) + sum (U q) t b1^(t-1) / (1 - b1^t)^2
///   db2 = sum dv' (v - gg^2) + sum (dden sqrt(v')) t b2^(t-1) / (2 (1 - b2^t)^(3/2))
/// With eps_root (optax), den = R + eps, R = sqrt(v' / (1 - b2^t) + eps_root): dv' = V + dden / (2 R (1 - b2^t))
/// and the last term of db2 is sum (dden v' / R) t b2^(t-1) / (2 (1 - b2^t)^2).
/// Optionally the step also gives the direction u (Adam-HD keeps it); its output gradient D adds
/// to U (U = -lr P + D).
/// It is what `Transform.step` runs for Adam (L2 decay, no AMSGrad) when a gradient
/// has to flow through the step and every tensor is contiguous on the CPU, in float32 (SIMD) or
/// float64; everything else goes op by op (`Transform.stepOps`, the reference of its tests). The
/// backward pass is first-order: differentiating it again warns and gives no second derivative.
module AdamGrad =

    /// The element's forward values: gg, m', v', the root r, den, q. r = sqrt(v'), den = r s + eps;
    /// with eps_root (`root`), r = sqrt(v' ib2 + er), den = r + eps (ib2 = 1 / (1 - b2^t)).
    let inline private forwardAt sqrt wd b1 c1 b2 c2 s root ib2 er eps p g m v =
        let gg = g + p * wd
        let struct (m', v') = AdamKernel.moments b1 c1 b2 c2 m v gg
        let r = if root then sqrt (v' * ib2 + er) else sqrt v'
        let den = if root then r + eps else r * s + eps
        struct (gg, m', v', r, den, m' / den)

    /// One element of the backward pass: (dp, dg, dm, dv) and the terms of the hyperparameter sums
    /// (lr, eps, wd, b1, ib1, b2, s). dD is the output gradient of the direction u, where the step
    /// gives it (Adam-HD's state keeps u), else zero.
    let inline private backwardAt sqrt wd b1 c1 b2 c2 s root ib2 er eps ib1 negLr two half p g m v dP dM dV dD =
        let struct (gg, m', v', r, den, q) = forwardAt sqrt wd b1 c1 b2 c2 s root ib2 er eps p g m v
        let dU = dP * negLr + dD
        let dq = dU * ib1
        let dm' = dM + dq / den
        let dden = -(dq * q) / den
        let dv' = dV + (if root then dden * ib2 * half / r else dden * s * half / r)
        let dgg = dm' * c1 + two * c2 * gg * dv'
        struct (dP + dgg * wd, dgg, dm' * b1, dv' * b2,
                -(dP * (q * ib1)), dden, dgg * p, dm' * (m - gg), dU * q, dv' * (v - gg * gg), (if root then dden * v' / r else dden * r))

    /// The hyperparameters of one step as numbers (the forward and backward loops' constants).
    [<Struct>]
    type private Coeffs =
        { Lr: float; Wd: float; B1: float; B2: float; Eps: float; EpsRoot: float; T: int }
        member c.Bc1 = 1.0 - Math.Pow(c.B1, float c.T)
        member c.Bc2 = 1.0 - Math.Pow(c.B2, float c.T)

    /// All elements of a contiguous CPU tensor as a span of 'T (the float64 loops' view).
    let spanOf<'T when 'T: unmanaged and 'T: struct and 'T: (new: unit -> 'T) and 'T :> ValueType> (t: Tensor) : Span<'T> =
        MemoryMarshal.Cast<byte, 'T>(t.bytes)

    /// Forward over one float32 chunk; uO (empty when the step does not give it) gets the direction.
    /// `stream`: non-temporal stores (Kernel.store), for outputs too large to stay in the cache.
    [<MethodImpl(MethodImplOptions.AggressiveOptimization)>]
    let private forward32 (c: Coeffs) (stream: bool) (p: Span<float32>) (g: Span<float32>) (m: Span<float32>) (v: Span<float32>)
                          (pO: Span<float32>) (mO: Span<float32>) (vO: Span<float32>) (uO: Span<float32>) =
        let wd, b1, c1, b2, c2 = float32 c.Wd, float32 c.B1, float32 (1.0 - c.B1), float32 c.B2, float32 (1.0 - c.B2)
        let s, eps, negStep, ib1 = float32 (1.0 / Math.Sqrt c.Bc2), float32 c.Eps, float32 (-c.Lr / c.Bc1), float32 (1.0 / c.Bc1)
        let root, ib2, er = c.EpsRoot <> 0.0, float32 (1.0 / c.Bc2), float32 c.EpsRoot
        let withU = not uO.IsEmpty
        let pv = MemoryMarshal.Cast<float32, Vector<float32>> p
        let gv = MemoryMarshal.Cast<float32, Vector<float32>> g
        let mv = MemoryMarshal.Cast<float32, Vector<float32>> m
        let vv = MemoryMarshal.Cast<float32, Vector<float32>> v
        let po = MemoryMarshal.Cast<float32, Vector<float32>> pO
        let mo = MemoryMarshal.Cast<float32, Vector<float32>> mO
        let vo = MemoryMarshal.Cast<float32, Vector<float32>> vO
        let uo = MemoryMarshal.Cast<float32, Vector<float32>> uO
        let wdV, b1V, c1V, b2V, c2V = Vector<float32>(wd), Vector<float32>(b1), Vector<float32>(c1), Vector<float32>(b2), Vector<float32>(c2)
        let sV, epsV, stepV, ib1V = Vector<float32>(s), Vector<float32>(eps), Vector<float32>(negStep), Vector<float32>(ib1)
        let ib2V, erV = Vector<float32>(ib2), Vector<float32>(er)
        for k in 0 .. pv.Length - 1 do
            let struct (_, mk, vk, _, _, q) = forwardAt (fun (x: Vector<float32>) -> Vector.SquareRoot x) wdV b1V c1V b2V c2V sV root ib2V erV epsV pv[k] gv[k] mv[k] vv[k]
            Kernel.store stream mo k mk
            Kernel.store stream vo k vk
            Kernel.store stream po k (pv[k] + q * stepV)
            if withU then Kernel.store stream uo k (q * ib1V)
        for i in pv.Length * Vector<float32>.Count .. p.Length - 1 do
            let struct (_, mi, vi, _, _, q) = forwardAt MathF.Sqrt wd b1 c1 b2 c2 s root ib2 er eps p[i] g[i] m[i] v[i]
            mO[i] <- mi
            vO[i] <- vi
            pO[i] <- p[i] + q * negStep
            if withU then uO[i] <- q * ib1

    /// Forward over one float64 tensor (element by element: the tests' precision path).
    let private forward64 (c: Coeffs) (p: Span<float>) (g: Span<float>) (m: Span<float>) (v: Span<float>)
                          (pO: Span<float>) (mO: Span<float>) (vO: Span<float>) (uO: Span<float>) =
        let s, negStep, ib1 = 1.0 / Math.Sqrt c.Bc2, -c.Lr / c.Bc1, 1.0 / c.Bc1
        for i in 0 .. p.Length - 1 do
            let struct (_, mi, vi, _, _, q) = forwardAt Math.Sqrt c.Wd c.B1 (1.0 - c.B1) c.B2 (1.0 - c.B2) s (c.EpsRoot <> 0.0) (1.0 / c.Bc2) c.EpsRoot c.Eps p[i] g[i] m[i] v[i]
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

    /// Backward over one float32 chunk, adding the chunk's hyperparameter sums into `sums`; dD is
    /// the direction's output gradient (empty: none); `stream` as in forward32.
    [<MethodImpl(MethodImplOptions.AggressiveOptimization)>]
    let private backward32 (c: Coeffs) (stream: bool) (sums: Sums) (p: Span<float32>) (g: Span<float32>) (m: Span<float32>) (v: Span<float32>)
                           (dP: Span<float32>) (dM: Span<float32>) (dV: Span<float32>) (dD: Span<float32>)
                           (dp: Span<float32>) (dg: Span<float32>) (dm: Span<float32>) (dv: Span<float32>) =
        let wd, b1, c1, b2, c2 = float32 c.Wd, float32 c.B1, float32 (1.0 - c.B1), float32 c.B2, float32 (1.0 - c.B2)
        let s, eps, ib1, negLr = float32 (1.0 / Math.Sqrt c.Bc2), float32 c.Eps, float32 (1.0 / c.Bc1), float32 (-c.Lr)
        let root, ib2, er = c.EpsRoot <> 0.0, float32 (1.0 / c.Bc2), float32 c.EpsRoot
        let withD = not dD.IsEmpty
        let pv = MemoryMarshal.Cast<float32, Vector<float32>> p
        let gv = MemoryMarshal.Cast<float32, Vector<float32>> g
        let mv = MemoryMarshal.Cast<float32, Vector<float32>> m
        let vv = MemoryMarshal.Cast<float32, Vector<float32>> v
        let dPv = MemoryMarshal.Cast<float32, Vector<float32>> dP
        let dMv = MemoryMarshal.Cast<float32, Vector<float32>> dM
        let dVv = MemoryMarshal.Cast<float32, Vector<float32>> dV
        let dDv = MemoryMarshal.Cast<float32, Vector<float32>> dD
        let dpv = MemoryMarshal.Cast<float32, Vector<float32>> dp
        let dgv = MemoryMarshal.Cast<float32, Vector<float32>> dg
        let dmv = MemoryMarshal.Cast<float32, Vector<float32>> dm
        let dvv = MemoryMarshal.Cast<float32, Vector<float32>> dv
        let V (x: float32) = Vector<float32>(x)
        let wdV, b1V, c1V, b2V, c2V, sV, epsV, ib1V, negLrV, twoV, halfV = V wd, V b1, V c1, V b2, V c2, V s, V eps, V ib1, V negLr, V 2.0f, V 0.5f
        let ib2V, erV = V ib2, V er
        let mutable a0, a1, a2, a3, a4, a5, a6 = Vector<float32>.Zero, Vector<float32>.Zero, Vector<float32>.Zero, Vector<float32>.Zero, Vector<float32>.Zero, Vector<float32>.Zero, Vector<float32>.Zero
        for k in 0 .. pv.Length - 1 do
            let struct (xp, xg, xm, xv, lr, e, w, bb1, i1, bb2, ss) =
                backwardAt (fun (x: Vector<float32>) -> Vector.SquareRoot x) wdV b1V c1V b2V c2V sV root ib2V erV epsV ib1V negLrV twoV halfV
                    pv[k] gv[k] mv[k] vv[k] dPv[k] dMv[k] dVv[k] (if withD then dDv[k] else Vector<float32>.Zero)
            Kernel.store stream dpv k xp
            Kernel.store stream dgv k xg
            Kernel.store stream dmv k xm
            Kernel.store stream dvv k xv
            a0 <- a0 + lr; a1 <- a1 + e; a2 <- a2 + w; a3 <- a3 + bb1; a4 <- a4 + i1; a5 <- a5 + bb2; a6 <- a6 + ss
        let sum (x: Vector<float32>) = float (Vector.Sum x)
        sums.Add(sum a0, sum a1, sum a2, sum a3, sum a4, sum a5, sum a6)
        for i in pv.Length * Vector<float32>.Count .. p.Length - 1 do
            let struct (xp, xg, xm, xv, lr, e, w, bb1, i1, bb2, ss) =
                backwardAt MathF.Sqrt wd b1 c1 b2 c2 s root ib2 er eps ib1 negLr 2.0f 0.5f p[i] g[i] m[i] v[i] dP[i] dM[i] dV[i] (if withD then dD[i] else 0.0f)
            dp[i] <- xp
            dg[i] <- xg
            dm[i] <- xm
            dv[i] <- xv
            sums.Add(float lr, float e, float w, float bb1, float i1, float bb2, float ss)

    /// Backward over one float64 tensor.
    let private backward64 (c: Coeffs) (sums: Sums) (p: Span<float>) (g: Span<float>) (m: Span<float>) (v: Span<float>)
                           (dP: Span<float>) (dM: Span<float>) (dV: Span<float>) (dD: Span<float>)
                           (dp: Span<float>) (dg: Span<float>) (dm: Span<float>) (dv: Span<float>) =
        let s = 1.0 / Math.Sqrt c.Bc2
        for i in 0 .. p.Length - 1 do
            let struct (xp, xg, xm, xv, lr, e, w, bb1, i1, bb2, ss) =
                backwardAt Math.Sqrt c.Wd c.B1 (1.0 - c.B1) c.B2 (1.0 - c.B2) s (c.EpsRoot <> 0.0) (1.0 / c.Bc2) c.EpsRoot c.Eps (1.0 / c.Bc1) (-c.Lr) 2.0 0.5
                    p[i] g[i] m[i] v[i] dP[i] dM[i] dV[i] (if dD.IsEmpty then 0.0 else dD[i])
            dp[i] <- xp
            dg[i] <- xg
            dm[i] <- xm
            dv[i] <- xv
            sums.Add(lr, e, w, bb1, i1, bb2, ss)

    let private value (t: Tensor) = t.ToDouble()

    /// How many times the fused function has run forward, once per step (for tests that must know it did).
    let mutable calls = 0L

    /// The autograd function over all n tensors of a step, in one call: a call of a custom autograd
    /// function costs about 40-75 us of fixed overhead in TorchSharp (measured: Adam's forward on 1M
    /// float32 parameters took 2.2 ms in one tensor and 9.6 ms in 100, one call each), which one call
    /// per tensor paid n times. Inputs: p_1..p_n, g_1..g_n, m_1..m_n, v_1..v_n (each p_i, g_i, m_i,
    /// v_i of one shape; all of one dtype), lr, b1, b2, wd (0-d tensors), then eps (a float), t (the
    /// step, from 1), n, whether to give the directions, and eps_root (a float, 0: none). Outputs p'_1..p'_n, m'.., v'.. and, if
    /// asked, the directions u_1..u_n.
    type private Step() =
        inherit torch.autograd.MultiTensorFunction<Step>()

        override _.Name = "adam_step"

        override _.forward(ctx: torch.autograd.AutogradContext, vars: obj[]) : List<Tensor> =
            let n = (vars.Length - 9) / 4
            let x (k: int) = vars[k] :?> Tensor
            let ps, gs, ms, vs = Array.init n x, Array.init n (fun i -> x (n + i)), Array.init n (fun i -> x (2 * n + i)), Array.init n (fun i -> x (3 * n + i))
            let lr, b1, b2, wd = x (4 * n), x (4 * n + 1), x (4 * n + 2), x (4 * n + 3)
            let eps, t, withU, epsRoot = vars[4 * n + 4] :?> float, vars[4 * n + 5] :?> int, vars[4 * n + 7] :?> bool, vars[4 * n + 8] :?> float
            let c = { Lr = value lr; Wd = value wd; B1 = value b1; B2 = value b2; Eps = eps; EpsRoot = epsRoot; T = t }
            Threading.Interlocked.Increment(&calls) |> ignore
            ctx.save_for_backward(List(Array.concat [ ps; gs; ms; vs; [| lr; b1; b2; wd |] ]))
            ctx.save_data("eps", box eps)
            ctx.save_data("t", box t)
            ctx.save_data("n", box n)
            ctx.save_data("withU", box withU)
            ctx.save_data("epsRoot", box epsRoot)
            let fresh (xs: Tensor[]) = Array.map (fun (a: Tensor) -> torch.empty_like a) xs
            let pO, mO, vO = fresh ps, fresh ms, fresh vs
            let uO = if withU then fresh ps else [||]
            if ps[0].dtype = torch.ScalarType.Float32 then
                let stream = Kernel.streams (Array.concat [ pO; mO; vO; uO ])
                Kernel.forChunksStoring stream (Array.init n (fun i -> i, int (ps[i].numel ()))) (fun i s l ->
                    forward32 c stream (Kernel.span ps[i] s l) (Kernel.span gs[i] s l) (Kernel.span ms[i] s l) (Kernel.span vs[i] s l)
                        (Kernel.span pO[i] s l) (Kernel.span mO[i] s l) (Kernel.span vO[i] s l) (if withU then Kernel.span uO[i] s l else Span<float32>.Empty))
            else
                for i in 0 .. n - 1 do
                    forward64 c (spanOf<float> ps[i]) (spanOf<float> gs[i]) (spanOf<float> ms[i]) (spanOf<float> vs[i])
                        (spanOf<float> pO[i]) (spanOf<float> mO[i]) (spanOf<float> vO[i]) (if withU then spanOf<float> uO[i] else Span<float>.Empty)
            List(Array.concat [ pO; mO; vO; uO ])

        override _.backward(ctx: torch.autograd.AutogradContext, grads: List<Tensor>) : List<Tensor> =
            Kernel.warnIfDifferentiated "adam_step: second derivatives (create_graph) through the fused Adam step are not computed (its backward pass is hand-written); set Optimizers.Fused.Kernel.useSimd <- false for the op-by-op form"
            let saved = ctx.get_saved_variables ()
            let n, withU = ctx.get_data "n" :?> int, ctx.get_data "withU" :?> bool
            let ps, gs, ms, vs = Array.init n (fun i -> saved[i]), Array.init n (fun i -> saved[n + i]), Array.init n (fun i -> saved[2 * n + i]), Array.init n (fun i -> saved[3 * n + i])
            let lr, b1, b2, wd = saved[4 * n], saved[4 * n + 1], saved[4 * n + 2], saved[4 * n + 3]
            let eps, t, epsRoot = ctx.get_data "eps" :?> float, ctx.get_data "t" :?> int, ctx.get_data "epsRoot" :?> float
            let c = { Lr = value lr; Wd = value wd; B1 = value b1; B2 = value b2; Eps = eps; EpsRoot = epsRoot; T = t }
            use _ = torch.no_grad ()
            // the output gradients as contiguous tensors (LibTorch may hand over expanded zeros, or
            // none); the directions' only where they have one (none: they enter as zero)
            let dOut (k: int) = Array.init n (fun i -> let d = grads[k * n + i] in if isNull d then torch.zeros_like ps[i] else d.contiguous ())
            let dP, dM, dV = dOut 0, dOut 1, dOut 2
            let dD = Array.init n (fun i -> if withU && not (isNull grads[3 * n + i]) then grads[3 * n + i].contiguous () else null)
            let fresh (xs: Tensor[]) = Array.map (fun (a: Tensor) -> torch.empty_like a) xs
            let dp, dg, dm, dv = fresh ps, fresh gs, fresh ms, fresh vs
            let sums =
                if ps[0].dtype = torch.ScalarType.Float32 then
                    let stream = Kernel.streams (Array.concat [ dp; dg; dm; dv ])
                    let add (a: float[]) (b: float[]) = Array.map2 (+) a b
                    Kernel.sumChunks stream (Array.init n (fun i -> i, int (ps[i].numel ()))) (Array.zeroCreate 7) add (fun i s l ->
                        let sums = Sums()
                        backward32 c stream sums (Kernel.span ps[i] s l) (Kernel.span gs[i] s l) (Kernel.span ms[i] s l) (Kernel.span vs[i] s l)
                            (Kernel.span dP[i] s l) (Kernel.span dM[i] s l) (Kernel.span dV[i] s l) (if isNull dD[i] then Span<float32>.Empty else Kernel.span dD[i] s l)
                            (Kernel.span dp[i] s l) (Kernel.span dg[i] s l) (Kernel.span dm[i] s l) (Kernel.span dv[i] s l)
                        sums.V)
                    |> Array.fold add (Array.zeroCreate 7)
                else
                    let sums = Sums()
                    for i in 0 .. n - 1 do
                        backward64 c sums (spanOf<float> ps[i]) (spanOf<float> gs[i]) (spanOf<float> ms[i]) (spanOf<float> vs[i])
                            (spanOf<float> dP[i]) (spanOf<float> dM[i]) (spanOf<float> dV[i]) (if isNull dD[i] then Span<float>.Empty else spanOf<float> dD[i])
                            (spanOf<float> dp[i]) (spanOf<float> dg[i]) (spanOf<float> dm[i]) (spanOf<float> dv[i])
                    sums.V
            let tt = float t
            let dLr = sums[0]
            let dWd = sums[2]
            let dB1 = sums[3] + sums[4] * tt * Math.Pow(c.B1, tt - 1.0) / (c.Bc1 * c.Bc1)
            // through 1 / sqrt(1 - b2^t) (s), or with eps_root through 1 / (1 - b2^t) inside the root
            let dB2 = sums[5] + sums[6] * tt * Math.Pow(c.B2, tt - 1.0) / (2.0 * Math.Pow(c.Bc2, (if epsRoot <> 0.0 then 2.0 else 1.5)))
            let scalar (like: Tensor) (x: float) = torch.tensor(x, dtype = like.dtype, device = like.device).reshape(like.shape)
            List(Array.concat [ dp; dg; dm; dv; [| scalar lr dLr; scalar b1 dB1; scalar b2 dB2; scalar wd dWd; null; null; null; null; null |] ])

    /// True when the function takes these tensors: all contiguous CPU tensors of one dtype,
    /// float32 or float64, with the same number of elements.
    let fusable (ts: Tensor list) =
        Kernel.useSimd
        && (let d = (List.head ts).dtype
            (d = torch.ScalarType.Float32 || d = torch.ScalarType.Float64)
            && ts |> List.forall (fun t -> t.dtype = d && t.device_type = DeviceType.CPU && t.is_contiguous ()
                                           && t.numel () = (List.head ts).numel () && t.numel () <= int64 (Int32.MaxValue / 8)))

    /// True when one call can take every parameter's tensors: each parameter's `fusable`, and one
    /// dtype for all of them.
    let fusableAll (perParameter: Tensor list list) =
        perParameter |> List.forall fusable
        && (perParameter |> List.map (fun ts -> (List.head ts).dtype) |> List.distinct |> List.length) <= 1

    /// One differentiable fused Adam step of n tensors at step t (from 1), in one call: p', m', v'
    /// and, with `withDirection`, the directions u = m-hat / (sqrt(v-hat) + eps) (else empty).
    let applyAll (ps: Tensor[]) (gs: Tensor[]) (ms: Tensor[]) (vs: Tensor[]) (lr: Tensor) (b1: Tensor) (b2: Tensor) (wd: Tensor)
                 (eps: float) (epsRoot: float) (t: int) (withDirection: bool) : Tensor[] * Tensor[] * Tensor[] * Tensor[] =
        let n = ps.Length
        let tensors = Array.concat [ ps; gs; ms; vs; [| lr; b1; b2; wd |] ] |> Array.map box
        let out = Step.apply(Array.append tensors [| box eps; box t; box n; box withDirection; box epsRoot |])
        let part k = Array.init n (fun i -> out[k * n + i])
        part 0, part 1, part 2, (if withDirection then part 3 else [||])

    /// A hyperparameter's value at a step as a 0-d tensor: its own tensor (which may require grad),
    /// else a float64 constant.
    let asTensor (h: HValue) : Tensor =
        match h with
        | HValue.Ten t -> t
        | HValue.Num v -> torch.tensor(v, dtype = torch.ScalarType.Float64)

    /// Adam's differentiable step over trees (the state of Adam.create's chain, whose parts `wd`,
    /// `moments` and `lr` read their state): new parameters and state as `Transform.stepOps` gives
    /// them, or None for what the function does not take (a tensor that is not contiguous CPU
    /// float32/float64, or tensors of two dtypes).
    let treeStep (chain: Kernel.Chain) (wd: Transformation) (moments: Transformation) (lrPart: Transformation)
                 (lr: Hyper) (beta1: Hyper) (beta2: Hyper) (eps: float) (epsRoot: float) (weightDecay: Hyper) : Tree -> State -> Tree -> (Tree * State) option =
        fun grads state parameters ->
            let wdS, aS, lrS = chain.Of(wd, state), chain.Of(moments, state), chain.Of(lrPart, state)
            let ms, vs = aS.Slot "exp_avg", aS.Slot "exp_avg_sq"
            Kernel.checkNames chain.Name parameters [ "gradients", grads; "first moments", ms; "second moments", vs ]
            let tensorsOf i = [ parameters.Values[i]; grads.Values[i]; ms.Values[i]; vs.Values[i] ]
            if parameters.Count = 0 || not (fusableAll (List.init parameters.Count tensorsOf)) then None
            else
                let lrT, wdT = asTensor (Hyper.at lrS.Count lr), asTensor (Hyper.at wdS.Count weightDecay)
                let b1T, b2T = asTensor (Hyper.at aS.Count beta1), asTensor (Hyper.at aS.Count beta2)
                let p', m', v', _ = applyAll parameters.Values grads.Values ms.Values vs.Values lrT b1T b2T wdT eps epsRoot (aS.Count + 1) false
                let tree (values: Tensor[]) = { Names = parameters.Names; Values = values }
                let stepped = chain.Stepped state
                let moments' = { chain.Of(moments, stepped) with Slots = Map.ofList [ "exp_avg", tree m'; "exp_avg_sq", tree v' ] }
                Some(tree p', chain.With(moments, moments', stepped))
