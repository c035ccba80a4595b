namespace Optimizers.Learned

open System
open System.Collections.Generic
open System.Numerics
open System.Runtime.CompilerServices
open TorchSharp
open Optimizers
open Optimizers.Fused
open Optimizers.Learned.Rows

/// The candidate moments of HyperAdam's AdamCell and the weighted sum of its WeightCell, from
/// the cells' pre-activations (seed 000, Algorithm 2; see HyperAdam.fs), for n coordinates and J
/// candidates: with g [n, 1], m0, v0, bh0, gh0 [n, J], z [n, 2J], q [n, J],
///   beta, gamma = sigmoid(z) (the first J columns, the last J),   rho = ELU(q)
///   m = beta m0 + (1 - beta) g,   v = gamma v0 + (1 - gamma) g^2
///   bh = beta bh0 + (1 - beta),   gh = gamma gh0 + (1 - gamma)
///   field = (m / (bh + eps)) / sqrt(v / (gh + eps) + eps),   d = sum_j rho field   ([n])
/// `apply` computes it as one autograd function with a hand-written backward when every tensor
/// is float32, contiguous and on the CPU (meta-training differentiates through it at every step
/// of a window: op by op it is about 20 LibTorch calls forward and as many backward over [n, J]
/// tensors, each a pass that the graph keeps a tensor of); `ops` is the same function op by op,
/// for every other tensor, and the tests' reference. The hand-written backward pass gives first
/// derivatives (all that meta-training uses); it is not itself differentiable (create_graph warns).
module MomentField =

    /// Outputs (m, v, bh, gh, d) from the inputs.
    type Result = { M: Tensor; V: Tensor; BetaHat: Tensor; GammaHat: Tensor; D: Tensor }

    /// The function op by op (differentiable by LibTorch's autograd, any dtype and device).
    let ops (eps: float) (g: Tensor) (m0: Tensor) (v0: Tensor) (bh0: Tensor) (gh0: Tensor) (z: Tensor) (q: Tensor) : Result =
        let rates = torch.sigmoid z
        let halves = rates.chunk(2L, 1L)
        // contiguous: the backward pass's products over column slices run without vectorisation
        let beta, gamma = halves[0].contiguous(), halves[1].contiguous()
        // b x + (1 - b) y as lerp(y, x, b) = y + b (x - y): the same value, one tensor instead of
        // four (each a [n, J] tensor kept by the meta-gradient's graph)
        use one = torch.ones([| 1L; 1L |], dtype = g.dtype)
        let m = torch.lerp(g, m0, beta)
        let v = torch.lerp(g.square(), v0, gamma)
        let bh = torch.lerp(one, bh0, beta)
        let gh = torch.lerp(one, gh0, gamma)
        let field = (m / Tensors.addNum bh eps) * torch.rsqrt(Tensors.addNum (v / Tensors.addNum gh eps) eps)
        let rho = Tensors.elu q 1.0
        { M = m; V = v; BetaHat = bh; GammaHat = gh; D = (field * rho).sum(1L) }

    // The per-element arithmetic, written once for one float32 and for a Vector<float32> of
    // them (`one`, `eps` of the same type; `sqrt`, `lerp` and `positive` the type's own).

    /// Forward at one element: m, v, bh, gh and rho * field.
    let inline private forwardAt one eps sqrt lerp g g2 m0 v0 bh0 gh0 b c rho =
        let m = lerp g m0 b
        let v = lerp g2 v0 c
        let bh = lerp one bh0 b
        let gh = lerp one gh0 c
        struct (m, v, bh, gh, rho * ((m / (bh + eps)) / sqrt (v / (gh + eps) + eps)))

    /// Backward at one element from the output gradients dm, dv, dbh, dgh and the row's dd:
    /// dm0, dv0, dbh0, dgh0, dbeta and dgamma (of z, through the sigmoid), dq and dg's term.
    let inline private backwardAt one eps negHalf two sqrt lerp positive g g2 m0 v0 bh0 gh0 b c rho dm dv dbh dgh dd =
        // the forward values again (cheaper than keeping them)
        let m = lerp g m0 b
        let v = lerp g2 v0 c
        let ib = one / (lerp one bh0 b + eps)
        let ic = one / (lerp one gh0 c + eps)
        let a = m * ib                      // m / (bh + eps)
        let vn = v * ic                     // v / (gh + eps)
        let r = one / sqrt (vn + eps)       // (v / (gh + eps) + eps)^(-1/2)
        let field = a * r
        // d = sum rho field; rho = ELU(q), whose derivative is 1 above 0 and rho + 1 below (and
        // rho > 0 exactly where q > 0)
        let dField = dd * rho
        let dq = dd * field * positive rho one (rho + one)
        let dA = dField * r
        let dB = negHalf * dField * field * r * r
        let dmT = dm + dA * ib
        let dbhT = dbh - dA * a * ib
        let dvT = dv + dB * ic
        let dghT = dgh - dB * vn * ic
        let dBeta = (dmT * (m0 - g) + dbhT * (bh0 - one)) * b * (one - b)
        let dGamma = (dvT * (v0 - g2) + dghT * (gh0 - one)) * c * (one - c)
        struct (b * dmT, c * dvT, b * dbhT, c * dghT, dBeta, dGamma, dq, (one - b) * dmT + two * g * (one - c) * dvT)


    /// lerp(x, y, w) = w y + (1 - w) x as LibTorch computes it: from x for w < 1/2, from y above
    /// (x + w (y - x) loses the digits of a small (1 - w) x when w is near 1).
    let private flerp (x: float32) (y: float32) (w: float32) = if w < 0.5f then x + w * (y - x) else y - (y - x) * (1.0f - w)
    let private vlerp (x: Vector<float32>) (y: Vector<float32>) (w: Vector<float32>) =
        let diff = y - x
        Vector.ConditionalSelect(Vector.LessThan(w, Vector<float32>(0.5f)), x + w * diff, y - diff * (Vector<float32>.One - w))

    /// Rows [r0, r1) of the forward pass. Spans are [n, J] row-major except g, d ([n]) and
    /// rates ([n, 2J]: beta in the first J columns of a row, gamma in the last J).
    [<MethodImpl(MethodImplOptions.AggressiveOptimization)>]
    let private forwardRows (j: int) (eps: float32) (r0: int) (r1: int)
                            (g: Span<float32>) (m0: Span<float32>) (v0: Span<float32>) (bh0: Span<float32>) (gh0: Span<float32>)
                            (rates: Span<float32>) (rho: Span<float32>)
                            (m: Span<float32>) (v: Span<float32>) (bh: Span<float32>) (gh: Span<float32>) (d: Span<float32>) =
        let offs = offsets j
        let mask = overlapMask j
        let oneV, epsV = Vector<float32>.One, Vector<float32>(eps)
        for i in r0 .. r1 - 1 do
            let gi = g[i]
            let g2 = gi * gi
            let row = i * j
            let rr = i * 2 * j
            if offs.Length > 0 then
                let gV, g2V = Vector<float32>(gi), Vector<float32>(g2)
                let mutable sum = Vector<float32>.Zero
                for n in 0 .. offs.Length - 1 do
                    let k = offs[n]
                    let e = row + k
                    let struct (mk, vk, bhk, ghk, p) =
                        forwardAt oneV epsV vsqrt vlerp gV g2V (at m0 e) (at v0 e) (at bh0 e) (at gh0 e) (at rates (rr + k)) (at rates (rr + j + k)) (at rho e)
                    put m e mk
                    put v e vk
                    put bh e bhk
                    put gh e ghk
                    sum <- sum + (if n = offs.Length - 1 then p * mask else p)
                d[i] <- Vector.Sum sum
            else
                let mutable sum = 0.0f
                for k in 0 .. j - 1 do
                    let e = row + k
                    let struct (mk, vk, bhk, ghk, p) =
                        forwardAt 1.0f eps MathF.Sqrt flerp gi g2 m0[e] v0[e] bh0[e] gh0[e] rates[rr + k] rates[rr + j + k] rho[e]
                    m[e] <- mk
                    v[e] <- vk
                    bh[e] <- bhk
                    gh[e] <- ghk
                    sum <- sum + p
                d[i] <- sum

    /// Rows [r0, r1) of the backward pass: from the output gradients (dm, dv, dbh, dgh [n, J],
    /// dd [n]) the input gradients (dg [n], dm0, dv0, dbh0, dgh0, dq [n, J], dz [n, 2J]).
    [<MethodImpl(MethodImplOptions.AggressiveOptimization)>]
    let private backwardRows (j: int) (eps: float32) (r0: int) (r1: int)
                             (g: Span<float32>) (m0: Span<float32>) (v0: Span<float32>) (bh0: Span<float32>) (gh0: Span<float32>)
                             (rates: Span<float32>) (rho: Span<float32>)
                             (dm: Span<float32>) (dv: Span<float32>) (dbh: Span<float32>) (dgh: Span<float32>) (dd: Span<float32>)
                             (dg: Span<float32>) (dm0: Span<float32>) (dv0: Span<float32>) (dbh0: Span<float32>) (dgh0: Span<float32>)
                             (dz: Span<float32>) (dq: Span<float32>) =
        let offs = offsets j
        let mask = overlapMask j
        let oneV, epsV, negHalfV, twoV = Vector<float32>.One, Vector<float32>(eps), Vector<float32>(-0.5f), Vector<float32>(2.0f)
        for i in r0 .. r1 - 1 do
            let gi = g[i]
            let g2 = gi * gi
            let row = i * j
            let rr = i * 2 * j
            if offs.Length > 0 then
                let gV, g2V, ddV = Vector<float32>(gi), Vector<float32>(g2), Vector<float32>(dd[i])
                let mutable sum = Vector<float32>.Zero
                for n in 0 .. offs.Length - 1 do
                    let k = offs[n]
                    let e = row + k
                    let struct (a0, a1, a2, a3, zb, zc, dqk, dgk) =
                        backwardAt oneV epsV negHalfV twoV vsqrt vlerp vpositive gV g2V (at m0 e) (at v0 e) (at bh0 e) (at gh0 e)
                            (at rates (rr + k)) (at rates (rr + j + k)) (at rho e) (at dm e) (at dv e) (at dbh e) (at dgh e) ddV
                    put dm0 e a0
                    put dv0 e a1
                    put dbh0 e a2
                    put dgh0 e a3
                    put dz (rr + k) zb
                    put dz (rr + j + k) zc
                    put dq e dqk
                    sum <- sum + (if n = offs.Length - 1 then dgk * mask else dgk)
                dg[i] <- Vector.Sum sum
            else
                let mutable sum = 0.0f
                for k in 0 .. j - 1 do
                    let e = row + k
                    let struct (a0, a1, a2, a3, zb, zc, dqk, dgk) =
                        backwardAt 1.0f eps -0.5f 2.0f MathF.Sqrt flerp fpositive gi g2 m0[e] v0[e] bh0[e] gh0[e]
                            rates[rr + k] rates[rr + j + k] rho[e] dm[e] dv[e] dbh[e] dgh[e] dd[i]
                    dm0[e] <- a0
                    dv0[e] <- a1
                    dbh0[e] <- a2
                    dgh0[e] <- a3
                    dz[rr + k] <- zb
                    dz[rr + j + k] <- zc
                    dq[e] <- dqk
                    sum <- sum + dgk
                dg[i] <- sum

    /// The autograd function. Inputs: g, m0, v0, bh0, gh0, z, q (tensors) and eps (a float). It
    /// keeps g, m0, v0, bh0, gh0 and the activations sigmoid(z), ELU(q) (the size of z and q,
    /// which it does not keep) for the backward pass and computes everything else again there.
    type private Fused() =
        inherit torch.autograd.MultiTensorFunction<Fused>()

        override _.Name = "hyperadam_moment_field"

        override _.forward(ctx: torch.autograd.AutogradContext, vars: obj[]) : List<Tensor> =
            let t (k: int) = vars[k] :?> Tensor
            let g, m0, v0, bh0, gh0, z, q = t 0, t 1, t 2, t 3, t 4, t 5, t 6
            let eps = vars[7] :?> float
            let n, j = int m0.shape[0], int m0.shape[1]
            // not disposed here: the context takes its references after forward returns
            let rates = torch.sigmoid z
            let rho = Tensors.elu q 1.0
            ctx.save_for_backward(List [ g; m0; v0; bh0; gh0; rates; rho ])
            ctx.save_data("eps", box eps)
            let m, v, bh, gh = torch.empty_like m0, torch.empty_like m0, torch.empty_like m0, torch.empty_like m0
            let d = torch.empty([| int64 n |], dtype = m0.dtype)
            forRows n j (fun r0 r1 ->
                forwardRows j (float32 eps) r0 r1 (span g) (span m0) (span v0) (span bh0) (span gh0) (span rates) (span rho)
                    (span m) (span v) (span bh) (span gh) (span d))
            List [ m; v; bh; gh; d ]

        override _.backward(ctx: torch.autograd.AutogradContext, grads: List<Tensor>) : List<Tensor> =
            warnIfDifferentiated "hyperadam_moment_field"
            let saved = ctx.get_saved_variables ()
            let g, m0, v0, bh0, gh0, rates, rho = saved[0], saved[1], saved[2], saved[3], saved[4], saved[5], saved[6]
            let eps = ctx.get_data "eps" :?> float
            let n, j = int m0.shape[0], int m0.shape[1]
            use _ = torch.no_grad ()
            // the output gradients as contiguous float32 (LibTorch may hand over expanded zeros)
            let dOut = [| for k in 0 .. 4 -> grads[k].contiguous () |]
            let dg = torch.empty_like g
            let dm0, dv0, dbh0, dgh0, dq = torch.empty_like m0, torch.empty_like m0, torch.empty_like m0, torch.empty_like m0, torch.empty_like rho
            let dz = torch.empty_like rates
            forRows n j (fun r0 r1 ->
                backwardRows j (float32 eps) r0 r1 (span g) (span m0) (span v0) (span bh0) (span gh0) (span rates) (span rho)
                    (span dOut[0]) (span dOut[1]) (span dOut[2]) (span dOut[3]) (span dOut[4])
                    (span dg) (span dm0) (span dv0) (span dbh0) (span dgh0) (span dz) (span dq))
            List [ dg; dm0; dv0; dbh0; dgh0; dz; dq; null ]

    /// Whether `apply` takes the fused function for these inputs.
    let fusable (tensors: Tensor list) = Kernel.useSimd && tensors |> List.forall Kernel.isDirect

    /// The function: fused (one autograd node) for float32 contiguous CPU tensors, else `ops`.
    let apply (eps: float) (g: Tensor) (m0: Tensor) (v0: Tensor) (bh0: Tensor) (gh0: Tensor) (z: Tensor) (q: Tensor) : Result =
        if fusable [ g; m0; v0; bh0; gh0; z; q ] then
            let out = Fused.apply(g, m0, v0, bh0, gh0, z, q, box eps)
            { M = out[0]; V = out[1]; BetaHat = out[2]; GammaHat = out[3]; D = out[4] }
        else ops eps g m0 v0 bh0 gh0 z q
