namespace Optimizers.Hypergradient

open System
open System.Numerics
open System.Runtime.CompilerServices
open System.Runtime.InteropServices
open TorchSharp
open Optimizers
open Optimizers.Transforms
open Optimizers.Fused

/// The model optimizer whose learning rate is adapted (the report's "op").
type ModelOptimizer =
    | SgdOp
    | SgdnOp
    | AdamOp

/// The optimizer of the learning rate itself, consuming the hypergradient (the report's "lop").
type LrOptimizer =
    /// alpha_t = alpha_{t-1} - beta h_t (plain hypergradient descent, Baydin et al. 2018)
    | SgdLop
    /// v_t = mu v_{t-1} + h_t; alpha_t = alpha_{t-1} - beta (h_t + mu v_t) (the report's Algorithm 1)
    | SgdnLop
    /// Adam on h_t with its own moments and bias correction (the report's Algorithm 2)
    | AdamLop

/// How the learning rate is kept from going negative (gbaydin/hypergradient-descent issue 4).
type LrGuard =
    /// No guard: the rate may become negative, as in the paper.
    | Unguarded
    /// alpha_t = max(alpha_t, 0).
    | ClipAtZero
    /// alpha_t = alpha_{t-1} (1 - beta h_t / (||g_t|| ||grad_alpha u_{t-1}||)) (Baydin et al., section 4),
    /// which keeps the sign of alpha_0; SgdLop only.
    | Multiplicative

type HdOptions =
    { Model: ModelOptimizer
      LrOptimizer: LrOptimizer
      /// alpha_0
      Lr: float
      /// beta, the hypergradient learning rate
      HypergradLr: Hyper
      /// Nesterov momentum of the SGDN model optimizer
      Momentum: float
      Beta1: float
      Beta2: float
      Eps: float
      /// L2 penalty added to the gradient (used in the hypergradient too, as the reference code does)
      WeightDecay: float
      LopMomentum: float
      LopBeta1: float
      LopBeta2: float
      LopEps: float
      /// One rate per parameter tensor instead of one global rate.
      PerParameter: bool
      Guard: LrGuard }

/// Hypergradient descent in closed form (Baydin et al., ICLR 2018; seed 001 for the learning-rate
/// optimizers). With u_t = -alpha_t d_t the update of the model optimizer and d_t its direction,
/// grad_alpha u_{t-1} = -d_{t-1}, so the hypergradient is
///   h_t = g_t . grad_alpha u_{t-1} = -g_t . d_{t-1}
/// with d = g (SGD), d = g + mu v (SGDN, v_t = mu v_{t-1} + g_t) or
/// d = m-hat / (sqrt(v-hat) + eps) (Adam, in torch.optim.Adam's eps placement, so that with
/// beta = 0 it equals our `adam` exactly; the reference code's Adam-HD puts eps outside the
/// un-corrected sqrt(v), a difference of order eps). Each step first updates the rate from h_t by
/// the learning-rate optimizer, then takes the model step with the new rate. The rate is updated
/// once per step from the whole hypergradient (global) or from each tensor's part of it
/// (per-parameter), never tensor by tensor in sequence (the reference code's bug, its issue 9).
/// The state keeps the rate ("lr") and the last hypergradient ("hypergrad_lr") observable.
module Hd =

    let defaults : HdOptions =
        { Model = SgdOp
          LrOptimizer = SgdLop
          Lr = 1e-3
          HypergradLr = Hyper.Fixed 1e-3
          Momentum = 0.9
          Beta1 = 0.9
          Beta2 = 0.999
          Eps = 1e-8
          WeightDecay = 0.0
          LopMomentum = 0.9
          LopBeta1 = 0.9
          LopBeta2 = 0.999
          LopEps = 1e-8
          PerParameter = false
          Guard = Unguarded }

    let opName = function SgdOp -> "sgd" | SgdnOp -> "sgdn" | AdamOp -> "adam"
    let lopName = function SgdLop -> "sgd" | SgdnLop -> "sgdn" | AdamLop -> "adam"

    /// The report's name: {op}_op-{lop}_lop.
    let name (o: HdOptions) = $"{opName o.Model}_op-{lopName o.LrOptimizer}_lop"

    /// The name of the one rate of the global variant in the "lr" slot.
    [<Literal>]
    let Global = "global"

    let validate (o: HdOptions) =
        let n = name o
        Hyper.checkFloat n "lr" (fun v -> v >= 0.0 && not (System.Double.IsInfinity v)) "a finite number >= 0" o.Lr
        Hyper.checkNonNegative n "hypergrad_lr" o.HypergradLr
        Hyper.checkFloat n "momentum" (fun v -> v > 0.0 && v < 1.0) "in (0, 1)" o.Momentum
        Hyper.checkFloat n "beta1" (fun v -> v >= 0.0 && v < 1.0) "in [0, 1)" o.Beta1
        Hyper.checkFloat n "beta2" (fun v -> v >= 0.0 && v < 1.0) "in [0, 1)" o.Beta2
        Hyper.checkFloat n "eps" (fun v -> v > 0.0) "> 0" o.Eps
        Hyper.checkFloat n "weight_decay" (fun v -> v >= 0.0) ">= 0" o.WeightDecay
        Hyper.checkFloat n "lop_momentum" (fun v -> v >= 0.0 && v < 1.0) "in [0, 1)" o.LopMomentum
        Hyper.checkFloat n "lop_beta1" (fun v -> v >= 0.0 && v < 1.0) "in [0, 1)" o.LopBeta1
        Hyper.checkFloat n "lop_beta2" (fun v -> v >= 0.0 && v < 1.0) "in [0, 1)" o.LopBeta2
        Hyper.checkFloat n "lop_eps" (fun v -> v > 0.0) "> 0" o.LopEps
        if o.Guard = Multiplicative && o.LrOptimizer <> SgdLop then
            Tensors.invalidArg "lr_guard" $"{n}: lr_guard = multiplicative works with the sgd learning-rate optimizer only; use clip or none"

    /// The direction d_t of the model optimizer (its update is -alpha d_t).
    let private direction (o: HdOptions) : Transformation =
        match o.Model with
        | SgdOp -> Transform.identity
        | SgdnOp -> ScaleBy.momentum (Hyper.Fixed o.Momentum) (Hyper.Fixed 0.0) true
        | AdamOp -> Moments.adam (Hyper.Fixed o.Beta1) (Hyper.Fixed o.Beta2) o.Eps 0.0

    /// Sum of x . y over the tensors of two trees, as one float64 0-d tensor per rate (products in
    /// the tensors' dtype, summed in float64: a float32 sum of millions of terms that cancel loses
    /// the hypergradient's leading digits).
    let private dots (perParameter: bool) (x: Tree) (y: Tree) : Tree =
        let each = Tree.map2 (fun a b -> (a * b).sum(torch.ScalarType.Float64)) x y
        if perParameter then each
        else Tree.single Global (each.Values |> Array.reduce Tensors.add)

    /// The rates' tree broadcast to the parameters: each tensor's own rate, or the global one.
    let private rateOf (perParameter: bool) (rates: Tree) (name: string) = if perParameter then rates[name] else rates[Global]

    /// The rates after step s.Count + 1 from the hypergradient h (the learning-rate optimizer, then
    /// the guard): (alpha', lop_m', lop_v'). Numbers enter through Tensors' owned Scalars
    /// (mulNum, ...) or HValue's: TorchSharp's implicit ones (`mu * v`) can be finalized during the native
    /// call, which failed about 1 run in 25 of hd-alpha0-sensitivity ("Unknown scalar type").
    let private rates (o: HdOptions) (s: State) (g: Tree) (dPrev: Tree) (h: Tree) : Tree * Tree * Tree =
        let t = s.Count + 1
        let alpha, m, v = s.Slot "lr", s.Slot "lop_m", s.Slot "lop_v"
        let beta = Hyper.at s.Count o.HypergradLr
        let alpha', m', v' =
            match o.LrOptimizer, o.Guard with
            | SgdLop, Multiplicative ->
                // alpha (1 - beta h / (|g| |d|)); no change while d_{t-1} = 0 (the first step)
                let norms = Tree.map2 (fun gn dn -> (gn * dn).sqrt()) (dots o.PerParameter g g) (dots o.PerParameter dPrev dPrev)
                let positive (x: Tensor) = Tensors.withScalar (fun t s -> t.gt s) x 0.0
                let cosine = Tree.map2 (fun hh nn -> torch.where(positive nn, hh / nn, torch.zeros_like hh)) h norms
                // 1 - beta c as 1 + (-(beta c)): the same float
                Tree.map2 (fun a c -> a * Tensors.addNum (-(beta * c)) 1.0) alpha cosine, m, v
            | SgdLop, _ -> Tree.map2 (fun a hh -> Tensors.sub a (beta * hh)) alpha h, m, v
            | SgdnLop, _ ->
                let mu = o.LopMomentum
                let v' = Tree.map2 (fun vv hh -> Tensors.add (Tensors.mulNum vv mu) hh) v h
                Tree.map3 (fun a hh vv -> Tensors.sub a (beta * Tensors.add hh (Tensors.mulNum vv mu))) alpha h v', m, v'
            | AdamLop, _ ->
                let b1, b2 = o.LopBeta1, o.LopBeta2
                let m' = Tree.map2 (fun mm hh -> Tensors.add (Tensors.mulNum mm b1) (Tensors.mulNum hh (1.0 - b1))) m h
                let v' = Tree.map2 (fun vv hh -> Tensors.add (Tensors.mulNum vv b2) (Tensors.mulNum (hh * hh) (1.0 - b2))) v h
                let bc1, bc2 = 1.0 - b1 ** float t, 1.0 - b2 ** float t
                let step mm vv = Tensors.divNum mm bc1 / Tensors.addNum ((Tensors.divNum vv bc2).sqrt()) o.LopEps
                Tree.map3 (fun a mm vv -> Tensors.sub a (beta * step mm vv)) alpha m' v', m', v'
        (if o.Guard = ClipAtZero then Tree.map (fun a -> Tensors.withScalar (fun t s -> t.clamp_min s) a 0.0) alpha' else alpha'), m', v'

    // ---------------------------------------------------------------------------------------
    // The fused steps, for one global rate without the multiplicative guard: the fused kernels
    // (Transformation.Fast: the fast path in place, the pure path into new tensors) and the
    // differentiable fused steps (Transform.step when a gradient flows through the step). Each
    // takes h_t from d_{t-1} first, then `rates` (0-d ops), then one pass of the model step over
    // all the tensors, which writes the new direction; the state is the op-by-op update's.

    /// How many times the fused hypergradient function has run forward (for tests that must know it did).
    let mutable gradCalls = 0L

    /// The float64 view of elements [start, start + length) of a contiguous CPU float64 tensor.
    let private span64 (t: Tensor) (start: int) (length: int) : Span<float> = (AdamGrad.spanOf<float> t).Slice(start, length)

    /// sum (g + wd p) . d over a float32 chunk as `dots` sums it: g + wd p and the products in
    /// float32, their sum in float64 (p is empty when wd = 0).
    [<MethodImpl(MethodImplOptions.AggressiveOptimization)>]
    let private hyperDot32 (wd: float32) (g: Span<float32>) (p: Span<float32>) (d: Span<float32>) : float =
        let gv = MemoryMarshal.Cast<float32, Vector<float32>> g
        let pv = MemoryMarshal.Cast<float32, Vector<float32>> p
        let dv = MemoryMarshal.Cast<float32, Vector<float32>> d
        let withP, wdV = not p.IsEmpty, Vector<float32>(wd)
        let mutable lo = Vector<float>.Zero
        let mutable hi = Vector<float>.Zero
        for k in 0 .. gv.Length - 1 do
            let gk = if withP then gv[k] + pv[k] * wdV else gv[k]
            let mutable l = Vector<float>.Zero
            let mutable h = Vector<float>.Zero
            Vector.Widen(gk * dv[k], &l, &h)
            lo <- lo + l
            hi <- hi + h
        let mutable total = Vector.Sum(lo + hi)
        for i in gv.Length * Vector<float32>.Count .. g.Length - 1 do
            let gi = if withP then g[i] + p[i] * wd else g[i]
            total <- total + float (gi * d[i])
        total

    /// The same sum over a float64 chunk, element by element.
    let private hyperDot64 (wd: float) (g: Span<float>) (p: Span<float>) (d: Span<float>) : float =
        let mutable total = 0.0
        for i in 0 .. g.Length - 1 do
            let gi = if p.IsEmpty then g[i] else g[i] + p[i] * wd
            total <- total + gi * d[i]
        total

    /// sum_i body(i, start, length) over the chunks of tensors of these sizes, in parallel as the
    /// fused kernels run (Kernel.forChunksStoring: `stream` for bodies that store non-temporally),
    /// each chunk into its own slot and the slots added in order: the same float whatever the
    /// number of threads.
    let private sumOverChunks (stream: bool) (sizes: int[]) (body: int -> int -> int -> float) : float =
        let chunk = max 1024 Kernel.chunkElements // Kernel.forChunks' chunk
        let offsets = Array.scan (fun acc n -> acc + (n + chunk - 1) / chunk) 0 sizes
        let parts = Array.zeroCreate<float> offsets[sizes.Length]
        Kernel.forChunksStoring stream (Array.indexed sizes) (fun i start len -> parts[offsets[i] + start / chunk] <- body i start len)
        Array.sum parts

    /// The fused kernels' -h_t = sum_i (g_i + wd p_i) . d_i in float64: the tensors the loops take
    /// by `hyperDot32` (chunks in parallel, no g + wd p tensor), the others by TorchSharp ops (for
    /// float64 the very sum of `dots`).
    let private hyperSum (wd: float) (gs: Tensor[]) (ps: Tensor[]) (ds: Tensor[]) : float =
        let direct = Array.init gs.Length (fun i -> Kernel.allDirect [| gs[i]; ps[i]; ds[i] |])
        let loops =
            sumOverChunks false (Array.init gs.Length (fun i -> if direct[i] then int (gs[i].numel ()) else 0)) (fun i s l ->
                hyperDot32 (float32 wd) (Kernel.span gs[i] s l) (if wd = 0.0 then Span<float32>.Empty else Kernel.span ps[i] s l) (Kernel.span ds[i] s l))
        let ops =
            Array.init gs.Length (fun i ->
                if direct[i] then 0.0
                else
                    let g = if wd = 0.0 then gs[i] else Tensors.add gs[i] (Tensors.mulNum ps[i] wd)
                    (g * ds[i]).sum(torch.ScalarType.Float64).ToDouble())
        loops + Array.sum ops

    /// A fused step's hypergradient and rates, trees of the one global rate.
    [<NoEquality; NoComparison>]
    type private Rates = { H: Tree; Alpha: Tree; LopM: Tree; LopV: Tree }

    /// `rates` from h (a 0-d float64 tensor).
    let private ratesOf (o: HdOptions) (s: State) (grads: Tree) (h: Tensor) : Rates =
        let h = Tree.single Global h
        // `rates` reads g and d_{t-1} only under the multiplicative guard, which the fused steps exclude
        let alpha', m', v' = rates o s grads (s.Slot "direction") h
        { H = h; Alpha = alpha'; LopM = m'; LopV = v' }

    /// The fused kernels' rates: h_t by `hyperSum`, before the kernel overwrites d_{t-1} in place.
    let private kernelRates (o: HdOptions) (s: State) (grads: Tree) (parameters: Tree) : Rates =
        let total = hyperSum o.WeightDecay grads.Values parameters.Values (s.Slot "direction").Values
        // 0 - total, as the op-by-op h: no -0 at the first step
        ratesOf o s grads (torch.tensor(0.0 - total, dtype = torch.ScalarType.Float64))

    /// The state after a fused step, laid out as the op-by-op update's: the new directions, the
    /// rates and h (the new 0-d tensors, or for Target.InPlace their values copied into the
    /// state's own), and the model optimizer's new state.
    let private stateAfter (target: Target) (s: State) (directions: Tree) (r: Rates) (inner': State) : State =
        let keep (slot: string) (fresh: Tree) =
            match target with
            | Target.Fresh -> fresh
            | Target.InPlace ->
                let old = s.Slot slot
                Array.iter2 (fun (a: Tensor) (b: Tensor) -> a.copy_(b) |> ignore) old.Values fresh.Values
                old
        { s with
            Count = s.Count + 1
            Slots =
              Map.ofList
                [ "direction", directions; "lr", keep "lr" r.Alpha; "hypergrad_lr", keep "hypergrad_lr" r.H
                  "lop_m", keep "lop_m" r.LopM; "lop_v", keep "lop_v" r.LopV ]
            Children = [ inner' ] }

    /// The model optimizer's part of a state (`dir`'s), or a message.
    let private innerOf (n: string) (path: string) (dir: Transformation) (s: State) : State =
        match s.Children with
        | [ a ] when a.Kind = dir.Name -> a
        | _ -> Tensors.invalidArg "state" $"'{n}' ({path}): the state has no '{dir.Name}' part; pass the state made by this optimizer's init or update"

    /// Adam-HD's model step at one element, written once for a float32 and for a Vector<float32>
    /// of them (the constants of the same type, `sqrt` the type's): g' = g + wd p, Adam's moments and
    /// denominator (AdamKernel's, so Adam's arithmetic is written once for every fused path),
    /// the direction d = (m / (sqrt(v) / sqrt(bc2) + eps)) / bc1 with the two divisions by scalars
    /// as multiplications by float32 reciprocals (each within an ulp of Moments.adam's exact
    /// divisions; no loop can equal those bit for bit anyway, LibTorch's vectorised float32 sqrt
    /// being one ulp off in about 15% of elements), and p + (-alpha) d.
    let inline private adamAt sqrt wd b1 c1 b2 c2 invSqrtBc2 invBc1 eps negAlpha p g m v =
        let g' = g + p * wd
        let struct (m', v') = AdamKernel.moments b1 c1 b2 c2 m v g'
        let d = (m' / AdamKernel.denominator sqrt invSqrtBc2 eps v') * invBc1
        struct (m', v', d, p + negAlpha * d)

    /// One pass of `adamAt` over a chunk: Vector<float32>s, then the tail element by element.
    [<MethodImpl(MethodImplOptions.AggressiveOptimization)>]
    let private adamLoop (wd: float32) (b1: float32) (c1: float32) (b2: float32) (c2: float32) (sqrtBc2: float32) (bc1: float32) (eps: float32) (negAlpha: float32)
                         (p: Span<float32>) (g: Span<float32>) (m: Span<float32>) (v: Span<float32>)
                         (pOut: Span<float32>) (mOut: Span<float32>) (vOut: Span<float32>) (dOut: Span<float32>) =
        let pv = MemoryMarshal.Cast<float32, Vector<float32>> p
        let gv = MemoryMarshal.Cast<float32, Vector<float32>> g
        let mv = MemoryMarshal.Cast<float32, Vector<float32>> m
        let vv = MemoryMarshal.Cast<float32, Vector<float32>> v
        let po = MemoryMarshal.Cast<float32, Vector<float32>> pOut
        let mo = MemoryMarshal.Cast<float32, Vector<float32>> mOut
        let vo = MemoryMarshal.Cast<float32, Vector<float32>> vOut
        let dO = MemoryMarshal.Cast<float32, Vector<float32>> dOut
        let invS, invBc1 = 1.0f / sqrtBc2, 1.0f / bc1
        let wdV, b1V, c1V, b2V, c2V = Vector<float32>(wd), Vector<float32>(b1), Vector<float32>(c1), Vector<float32>(b2), Vector<float32>(c2)
        let sV, bcV, epsV, aV = Vector<float32>(invS), Vector<float32>(invBc1), Vector<float32>(eps), Vector<float32>(negAlpha)
        for k in 0 .. pv.Length - 1 do
            let struct (mk, vk, dk, pk) =
                adamAt (fun (x: Vector<float32>) -> Vector.SquareRoot x) wdV b1V c1V b2V c2V sV bcV epsV aV pv[k] gv[k] mv[k] vv[k]
            mo[k] <- mk
            vo[k] <- vk
            dO[k] <- dk
            po[k] <- pk
        for i in pv.Length * Vector<float32>.Count .. p.Length - 1 do
            let struct (mi, vi, di, pi) = adamAt MathF.Sqrt wd b1 c1 b2 c2 invS invBc1 eps negAlpha p[i] g[i] m[i] v[i]
            mOut[i] <- mi
            vOut[i] <- vi
            dOut[i] <- di
            pOut[i] <- pi

    /// The fused kernel of Adam-HD with one global rate and no multiplicative guard: the
    /// hypergradient h_t = -g_t . d_{t-1} (a dot product per tensor), the rate's update as `update`
    /// makes it, then one pass over p, g, m, v that writes m, v, the direction d and p - alpha d.

    /// The fused kernel of Adam-HD: h_t and the rates (`kernelRates`), then one pass over p, g,
    /// m, v that writes m, v, the direction d and p - alpha d. Float64, non-contiguous or non-CPU
    /// tensors take TorchSharp ops.
    let private adamKernel (o: HdOptions) (moments: Transformation) : Target -> Tree -> State -> Tree -> Tree * State =
        let n = name o
        fun target grads state parameters ->
            let aS = innerOf n "fast path" moments state
            let dPrev = state.Slot "direction"
            Kernel.checkNames n parameters [ "gradients", grads; "directions", dPrev; "first moments", aS.Slot "exp_avg"; "second moments", aS.Slot "exp_avg_sq" ]
            let ps0, gs = parameters.Values, grads.Values
            let r = kernelRates o state grads parameters
            let negAlpha = -(r.Alpha[Global].ToDouble())
            let b1, b2 = o.Beta1, o.Beta2
            let bc1, bc2 = 1.0 - b1 ** float (aS.Count + 1), 1.0 - b2 ** float (aS.Count + 1)
            let out = Kernel.Outputs target
            let pOut = out.Of parameters
            let ms0, vs0 = aS.Slot "exp_avg", aS.Slot "exp_avg_sq"
            let ms, vs, ds = out.Of ms0, out.Of vs0, out.Of dPrev
            use sc = new Kernel.Scalars()
            let sB1, sC1, sB2, sC2 = sc.Of b1, sc.Of(1.0 - b1), sc.Of b2, sc.Of(1.0 - b2)
            let sWd, sSqrtBc2, sEps, sBc1, sNegAlpha = sc.Of o.WeightDecay, sc.Of(Math.Sqrt bc2), sc.Of o.Eps, sc.Of bc1, sc.Of negAlpha
            Kernel.run out parameters.Count (fun i -> [| pOut.Values[i]; gs[i]; ms.Values[i]; vs.Values[i]; ds.Values[i] |])
                (fun i start len ->
                    adamLoop (float32 o.WeightDecay) (float32 b1) (float32 (1.0 - b1)) (float32 b2) (float32 (1.0 - b2)) (float32 (Math.Sqrt bc2)) (float32 bc1) (float32 o.Eps) (float32 negAlpha)
                        (Kernel.span ps0[i] start len) (Kernel.span gs[i] start len) (Kernel.span ms0.Values[i] start len) (Kernel.span vs0.Values[i] start len)
                        (Kernel.span pOut.Values[i] start len) (Kernel.span ms.Values[i] start len) (Kernel.span vs.Values[i] start len) (Kernel.span ds.Values[i] start len))
                (fun i ->
                    let p, m, v, d = pOut.Values[i], ms.Values[i], vs.Values[i], ds.Values[i]
                    let g = if o.WeightDecay = 0.0 then gs[i] else gs[i].add(p, sWd)
                    m.mul_(sB1).add_(g, sC1) |> ignore
                    v.mul_(sB2).addcmul_(g, g, sC2) |> ignore
                    d.copy_(m.div(v.sqrt().div_(sSqrtBc2).add_(sEps)).div_(sBc1)) |> ignore
                    p.add_(d, sNegAlpha) |> ignore)
            pOut, stateAfter target state ds r (out.State { aS with Count = aS.Count + 1 })

    /// SGD-HD's and SGDN-HD's model step at one element, written once for float32, Vector<float32>
    /// and float64 (the constants of the same type) in the op-by-op update's order: gg = g + wd p
    /// (with `hasWd`); SGDN (`momentum`): v' = gg at the first step, else v mu + gg, and
    /// d = gg + v' mu; SGD: d = gg. Returns (v', d, p + (-alpha) d).
    let inline private sgdAt momentum first hasWd wd mu negAlpha p g v =
        let gg = if hasWd then g + p * wd else g
        let v' = if momentum && not first then v * mu + gg else gg
        let d = if momentum then gg + v' * mu else gg
        struct (v', d, p + negAlpha * d)

    /// `sgdAt` element by element (the float32 loop's tail, float64 tensors); v and vOut are empty
    /// without momentum, and v is not read at the first step.
    let inline private sgdElements momentum first hasWd wd mu negAlpha (p: Span<'T>) (g: Span<'T>) (v: Span<'T>)
                                   (pOut: Span<'T>) (vOut: Span<'T>) (dOut: Span<'T>) =
        for i in 0 .. p.Length - 1 do
            let struct (vi, di, pi) = sgdAt momentum first hasWd wd mu negAlpha p[i] g[i] (if momentum && not first then v[i] else LanguagePrimitives.GenericZero)
            if momentum then vOut[i] <- vi
            dOut[i] <- di
            pOut[i] <- pi

    /// Elements from `start` on of a span that may be empty (a missing momentum buffer).
    let private from (start: int) (s: Span<float32>) : Span<float32> = if s.IsEmpty then s else s.Slice start

    /// `sgdAt` over a float32 chunk: Vector<float32>s (stored with Kernel.store), then the tail.
    /// Each element is read before it is written, so the outputs may be the inputs (in place).
    [<MethodImpl(MethodImplOptions.AggressiveOptimization)>]
    let private sgdLoop (momentum: bool) (first: bool) (hasWd: bool) (wd: float32) (mu: float32) (negAlpha: float32) (stream: bool)
                        (p: Span<float32>) (g: Span<float32>) (v: Span<float32>) (pOut: Span<float32>) (vOut: Span<float32>) (dOut: Span<float32>) =
        let pv = MemoryMarshal.Cast<float32, Vector<float32>> p
        let gv = MemoryMarshal.Cast<float32, Vector<float32>> g
        let vv = MemoryMarshal.Cast<float32, Vector<float32>> v
        let po = MemoryMarshal.Cast<float32, Vector<float32>> pOut
        let vo = MemoryMarshal.Cast<float32, Vector<float32>> vOut
        let dO = MemoryMarshal.Cast<float32, Vector<float32>> dOut
        let wdV, muV, aV = Vector<float32>(wd), Vector<float32>(mu), Vector<float32>(negAlpha)
        for k in 0 .. pv.Length - 1 do
            let struct (vk, dk, pk) = sgdAt momentum first hasWd wdV muV aV pv[k] gv[k] (if momentum && not first then vv[k] else Vector<float32>.Zero)
            if momentum then Kernel.store stream vo k vk
            Kernel.store stream dO k dk
            Kernel.store stream po k pk
        let tail = pv.Length * Vector<float32>.Count
        sgdElements momentum first hasWd wd mu negAlpha (p.Slice tail) (g.Slice tail) (from tail v) (pOut.Slice tail) (from tail vOut) (dOut.Slice tail)

    /// The fused kernel of SGD-HD and SGDN-HD: h_t and the rates (`kernelRates`), then one pass
    /// over p, g (and v) that writes the direction d (and v) and p - alpha d. Float64,
    /// non-contiguous or non-CPU tensors take TorchSharp ops.
    let private sgdKernel (o: HdOptions) (dir: Transformation) : Target -> Tree -> State -> Tree -> Tree * State =
        let n = name o
        let momentum, hasWd = o.Model = SgdnOp, o.WeightDecay <> 0.0
        fun target grads state parameters ->
            let inner = innerOf n "fast path" dir state
            let dPrev = state.Slot "direction"
            let bufs0 = if momentum then Some(inner.Slot "momentum_buffer") else None
            Kernel.checkNames n parameters
                [ yield "gradients", grads
                  yield "directions", dPrev
                  match bufs0 with Some b -> yield "momentum buffers", b | None -> () ]
            let ps0, gs = parameters.Values, grads.Values
            let r = kernelRates o state grads parameters
            let negAlpha = -(r.Alpha[Global].ToDouble())
            let first = inner.Count = 0
            let out = Kernel.Outputs target
            let pOut, ds = out.Of parameters, out.Of dPrev
            let bufs = Option.map out.Of bufs0
            use sc = new Kernel.Scalars()
            let sWd, sMu, sOne, sNegAlpha = sc.Of o.WeightDecay, sc.Of o.Momentum, sc.Of 1.0, sc.Of negAlpha
            Kernel.run out parameters.Count
                (fun i -> [| yield pOut.Values[i]; yield gs[i]; yield ds.Values[i]; match bufs with Some b -> yield b.Values[i] | None -> () |])
                (fun i start len ->
                    sgdLoop momentum first hasWd (float32 o.WeightDecay) (float32 o.Momentum) (float32 negAlpha) out.Stream
                        (Kernel.span ps0[i] start len) (Kernel.span gs[i] start len) (Kernel.spanAt bufs0 i start len)
                        (Kernel.span pOut.Values[i] start len) (Kernel.spanAt bufs i start len) (Kernel.span ds.Values[i] start len))
                (fun i ->
                    let p, d = pOut.Values[i], ds.Values[i]
                    let g = if hasWd then gs[i].add(p, sWd) else gs[i]
                    match bufs with
                    | None -> d.copy_(g) |> ignore
                    | Some b ->
                        let v = b.Values[i]
                        (if first then v.copy_(g) else v.mul_(sMu).add_(g, sOne)) |> ignore
                        d.copy_(g.add(v, sMu)) |> ignore
                    p.add_(d, sNegAlpha) |> ignore)
            // trace_momentum counts its steps; identity (SGD) keeps its state
            let inner' = if momentum then { inner with Count = inner.Count + 1 } else inner
            pOut, stateAfter target state ds r (out.State inner')

    // ---------------------------------------------------------------------------------------
    // The differentiable fused steps: the hypergradient by `HyperDot`, the rates by `rates` (0-d
    // ops, differentiable as they are), the model step by one autograd call over all the tensors
    // (AdamGrad.applyAll with the directions as a fourth output; `SgdnStep`), for SGD by two ops.

    /// The backward pass over a float32 chunk with nh = -H: dg = nh d, dp = wd dg, dd = nh (g + wd p)
    /// (dp and p empty when wd = 0).
    [<MethodImpl(MethodImplOptions.AggressiveOptimization)>]
    let private hyperDotBack32 (nh: float32) (wd: float32) (g: Span<float32>) (p: Span<float32>) (d: Span<float32>)
                               (dg: Span<float32>) (dp: Span<float32>) (dd: Span<float32>) =
        let gv = MemoryMarshal.Cast<float32, Vector<float32>> g
        let pv = MemoryMarshal.Cast<float32, Vector<float32>> p
        let dv = MemoryMarshal.Cast<float32, Vector<float32>> d
        let dgv = MemoryMarshal.Cast<float32, Vector<float32>> dg
        let dpv = MemoryMarshal.Cast<float32, Vector<float32>> dp
        let ddv = MemoryMarshal.Cast<float32, Vector<float32>> dd
        let withP, wdV, nhV = not p.IsEmpty, Vector<float32>(wd), Vector<float32>(nh)
        for k in 0 .. gv.Length - 1 do
            let x = dv[k] * nhV
            dgv[k] <- x
            if withP then
                dpv[k] <- x * wdV
                ddv[k] <- (gv[k] + pv[k] * wdV) * nhV
            else ddv[k] <- gv[k] * nhV
        for i in gv.Length * Vector<float32>.Count .. g.Length - 1 do
            let x = d[i] * nh
            dg[i] <- x
            if withP then
                dp[i] <- x * wd
                dd[i] <- (g[i] + p[i] * wd) * nh
            else dd[i] <- g[i] * nh

    /// The same over a float64 chunk.
    let private hyperDotBack64 (nh: float) (wd: float) (g: Span<float>) (p: Span<float>) (d: Span<float>)
                               (dg: Span<float>) (dp: Span<float>) (dd: Span<float>) =
        for i in 0 .. g.Length - 1 do
            let x = d[i] * nh
            dg[i] <- x
            if p.IsEmpty then dd[i] <- g[i] * nh
            else
                dp[i] <- x * wd
                dd[i] <- (g[i] + p[i] * wd) * nh

    /// The hypergradient h = -sum_i (g_i + wd p_i) . d_i over all the tensors of a step as one
    /// autograd function. Forward: `hyperDot32` (SIMD, float32 products summed in float64, as
    /// `dots`) or `hyperDot64`, chunks in parallel. Backward, for the output gradient H:
    ///   dg_i = -H d_i,   dp_i = -H wd d_i,   dd_i = -H (g_i + wd p_i)
    /// One call for the whole step, not one per tensor: a call costs some 40-75 us whatever its
    /// size (the graph node, its saved tensors, the output cache), which over the tensors of a
    /// network is more than the arithmetic. Inputs: g_0..g_{n-1}, d_0..d_{n-1}, then p_0..p_{n-1}
    /// only when wd <> 0 (with wd = 0, h does not depend on p), wd (a float) and n (an int); every
    /// tensor contiguous on the CPU, g_i, p_i, d_i of one dtype (float32 or float64) and size.
    type private HyperDot() =
        inherit torch.autograd.MultiTensorFunction<HyperDot>()

        override _.Name = "hd_hypergradient"

        override _.forward(ctx: torch.autograd.AutogradContext, vars: obj[]) : Collections.Generic.List<Tensor> =
            let n, wd = vars[vars.Length - 1] :?> int, vars[vars.Length - 2] :?> float
            let x (k: int) = vars[k] :?> Tensor
            let gs, ds = Array.init n x, Array.init n (fun i -> x (n + i))
            let ps = if wd = 0.0 then [||] else Array.init n (fun i -> x (2 * n + i))
            Threading.Interlocked.Increment(&gradCalls) |> ignore
            ctx.save_for_backward(ResizeArray(Array.concat [ gs; ds; ps ]))
            ctx.save_data("wd", box wd)
            ctx.save_data("n", box n)
            let total =
                sumOverChunks false (gs |> Array.map (fun g -> int (g.numel ()))) (fun i s l ->
                    if gs[i].dtype = torch.ScalarType.Float32 then
                        hyperDot32 (float32 wd) (Kernel.span gs[i] s l) (if wd = 0.0 then Span<float32>.Empty else Kernel.span ps[i] s l) (Kernel.span ds[i] s l)
                    else hyperDot64 wd (span64 gs[i] s l) (if wd = 0.0 then Span<float>.Empty else span64 ps[i] s l) (span64 ds[i] s l))
            // 0 - total, as the op-by-op h: no -0 at the first step
            ResizeArray [ torch.tensor(0.0 - total, dtype = torch.ScalarType.Float64) ]

        override _.backward(ctx: torch.autograd.AutogradContext, grads: Collections.Generic.List<Tensor>) : Collections.Generic.List<Tensor> =
            Kernel.warnIfDifferentiated "hd_hypergradient: second derivatives (create_graph) through the fused Adam-HD step are not computed (its backward pass is hand-written); set Optimizers.Fused.Kernel.useSimd <- false for the op-by-op form"
            let saved = ctx.get_saved_variables ()
            let wd, n = ctx.get_data "wd" :?> float, ctx.get_data "n" :?> int
            let gs, ds = Array.init n (fun i -> saved[i]), Array.init n (fun i -> saved[n + i])
            let ps = if wd = 0.0 then [||] else Array.init n (fun i -> saved[2 * n + i])
            let nh = if isNull grads[0] then 0.0 else -(grads[0].ToDouble())
            use _ = torch.no_grad ()
            let dgs, dds = Array.map torch.empty_like gs, Array.map torch.empty_like ds
            let dps = Array.map torch.empty_like ps
            Kernel.forChunks (gs |> Array.mapi (fun i g -> i, int (g.numel ()))) (fun i s l ->
                if gs[i].dtype = torch.ScalarType.Float32 then
                    hyperDotBack32 (float32 nh) (float32 wd) (Kernel.span gs[i] s l) (if wd = 0.0 then Span<float32>.Empty else Kernel.span ps[i] s l) (Kernel.span ds[i] s l)
                        (Kernel.span dgs[i] s l) (if wd = 0.0 then Span<float32>.Empty else Kernel.span dps[i] s l) (Kernel.span dds[i] s l)
                else
                    hyperDotBack64 nh wd (span64 gs[i] s l) (if wd = 0.0 then Span<float>.Empty else span64 ps[i] s l) (span64 ds[i] s l)
                        (span64 dgs[i] s l) (if wd = 0.0 then Span<float>.Empty else span64 dps[i] s l) (span64 dds[i] s l))
            Kernel.handBack (Seq.append saved grads) (Array.concat [ dgs; dds; dps; [| null; null |] ])

    /// h_t = -(g_t + wd p_t) . d_{t-1} over all the tensors, one `HyperDot` call: a 0-d float64 tensor.
    let private hypergradient (wd: float) (g: Tensor[]) (p: Tensor[]) (d: Tensor[]) : Tensor =
        let vars : obj[] = Array.concat [ Array.map box g; Array.map box d; (if wd = 0.0 then [||] else Array.map box p); [| box wd; box g.Length |] ]
        (HyperDot.apply vars)[0]


    /// Adam-HD's differentiable fused step: new parameters and the state of the op-by-op update
    /// (its layout and values), or None for tensors the fused functions do not take (not contiguous
    /// CPU float32/float64). Per step, one HyperDot call, `rates`' 0-d ops and one AdamGrad call,
    /// whose direction output is the new "direction".
    let private adamGradStep (o: HdOptions) (moments: Transformation) : Tree -> State -> Tree -> (Tree * State) option =
        let n = name o
        fun grads state parameters ->
            let aS = innerOf n "fused gradient path" moments state
            let dPrev = state.Slot "direction"
            let ms, vs = aS.Slot "exp_avg", aS.Slot "exp_avg_sq"
            Kernel.checkNames n parameters [ "gradients", grads; "directions", dPrev; "first moments", ms; "second moments", vs ]
            let tensorsOf i = [ parameters.Values[i]; grads.Values[i]; dPrev.Values[i]; ms.Values[i]; vs.Values[i] ]
            if parameters.Count = 0 || not (AdamGrad.fusableAll (List.init parameters.Count tensorsOf)) then None
            else
                let r = ratesOf o state grads (hypergradient o.WeightDecay grads.Values parameters.Values dPrev.Values)
                let constant (x: float) = torch.tensor(x, dtype = torch.ScalarType.Float64)
                let b1, b2, wd = constant o.Beta1, constant o.Beta2, constant o.WeightDecay
                let p', m', v', d =
                    AdamGrad.applyAll parameters.Values grads.Values ms.Values vs.Values r.Alpha[Global] b1 b2 wd o.Eps 0.0 (aS.Count + 1) true
                let tree (values: Tensor[]) = { Names = parameters.Names; Values = values }
                let moments' = { aS with Count = aS.Count + 1; Slots = Map.ofList [ "exp_avg", tree m'; "exp_avg_sq", tree v' ] }
                Some(tree p', stateAfter Target.Fresh state (tree d) r moments')

    /// How many times the fused SGDN-HD model step has run forward (for tests that must know it did).
    let mutable sgdnStepCalls = 0L

    /// One element of SgdnStep's backward: (dp, dg, dv, P d) for output gradients dP, dD, dV of
    /// p', d, v' (`zero` for dv at the first step, which does not read v).
    let inline private sgdnBackAt first hasWd wd mu negAlpha zero p g v dP dD dV =
        let struct (_, d, _) = sgdAt true first hasWd wd mu negAlpha p g v
        let u = dD + dP * negAlpha
        let dv' = dV + u * mu
        let dgg = u + dv'
        struct ((if hasWd then dP + dgg * wd else dP), dgg, (if first then zero else dv' * mu), dP * d)

    /// SgdnStep's backward element by element (the float32 tail, float64 tensors): writes dp (empty
    /// without weight decay, where dp is P), dg and dv, and returns sum P d in float64.
    let inline private sgdnBackElements first hasWd wd mu negAlpha (p: Span<'T>) (g: Span<'T>) (v: Span<'T>)
                                        (dP: Span<'T>) (dD: Span<'T>) (dV: Span<'T>) (dp: Span<'T>) (dg: Span<'T>) (dv: Span<'T>) : float =
        let zero = LanguagePrimitives.GenericZero
        let withDp = not dp.IsEmpty
        let mutable total = 0.0
        for i in 0 .. p.Length - 1 do
            let struct (xp, xg, xv, pd) = sgdnBackAt first hasWd wd mu negAlpha zero p[i] g[i] (if first then zero else v[i]) dP[i] dD[i] dV[i]
            if withDp then dp[i] <- xp
            dg[i] <- xg
            dv[i] <- xv
            total <- total + float pd
        total

    /// SgdnStep's backward over a float32 chunk: Vector<float32>s (P d widened to float64 and
    /// summed as `hyperDot32` sums), then the tail; returns sum P d.
    [<MethodImpl(MethodImplOptions.AggressiveOptimization)>]
    let private sgdnBack32 (first: bool) (hasWd: bool) (wd: float32) (mu: float32) (negAlpha: float32) (stream: bool)
                           (p: Span<float32>) (g: Span<float32>) (v: Span<float32>) (dP: Span<float32>) (dD: Span<float32>) (dV: Span<float32>)
                           (dp: Span<float32>) (dg: Span<float32>) (dv: Span<float32>) : float =
        let pv = MemoryMarshal.Cast<float32, Vector<float32>> p
        let gv = MemoryMarshal.Cast<float32, Vector<float32>> g
        let vv = MemoryMarshal.Cast<float32, Vector<float32>> v
        let dPv = MemoryMarshal.Cast<float32, Vector<float32>> dP
        let dDv = MemoryMarshal.Cast<float32, Vector<float32>> dD
        let dVv = MemoryMarshal.Cast<float32, Vector<float32>> dV
        let dpv = MemoryMarshal.Cast<float32, Vector<float32>> dp
        let dgv = MemoryMarshal.Cast<float32, Vector<float32>> dg
        let dvv = MemoryMarshal.Cast<float32, Vector<float32>> dv
        let wdV, muV, aV, zero = Vector<float32>(wd), Vector<float32>(mu), Vector<float32>(negAlpha), Vector<float32>.Zero
        let withDp = not dp.IsEmpty
        let mutable lo = Vector<float>.Zero
        let mutable hi = Vector<float>.Zero
        for k in 0 .. pv.Length - 1 do
            let struct (xp, xg, xv, pd) = sgdnBackAt first hasWd wdV muV aV zero pv[k] gv[k] (if first then zero else vv[k]) dPv[k] dDv[k] dVv[k]
            if withDp then Kernel.store stream dpv k xp
            Kernel.store stream dgv k xg
            Kernel.store stream dvv k xv
            let mutable l = Vector<float>.Zero
            let mutable h = Vector<float>.Zero
            Vector.Widen(pd, &l, &h)
            lo <- lo + l
            hi <- hi + h
        let tail = pv.Length * Vector<float32>.Count
        Vector.Sum(lo + hi)
        + sgdnBackElements first hasWd wd mu negAlpha (p.Slice tail) (g.Slice tail) (v.Slice tail) (dP.Slice tail) (dD.Slice tail) (dV.Slice tail)
              (from tail dp) (dg.Slice tail) (dv.Slice tail)

    /// SGDN-HD's model step as one autograd function over all the tensors of a step: forward
    /// `sgdLoop` (float32, chunks in parallel) or `sgdElements` (float64) into new tensors, and a
    /// hand-written backward. With gg = g + wd p, v' = mu v + gg (gg at the first step),
    /// d = gg + mu v', p' = p - alpha d and, for output gradients P, D, V of p', d, v',
    /// U = D - alpha P:
    ///   dv' = V + mu U,   dgg = U + dv',   dv = mu dv' (0 at the first step)
    ///   dp = P + wd dgg (P itself without weight decay),   dg = dgg,   dalpha = -sum P . d
    /// Inputs: p_0..p_{n-1}, g_0.., v_0.., alpha' (0-d), then wd and mu (floats: the options,
    /// constants), first (a bool), n; every tensor contiguous on the CPU, all of one dtype (float32
    /// or float64). Outputs p'_0.., d_0.., v'_0...
    type private SgdnStep() =
        inherit torch.autograd.MultiTensorFunction<SgdnStep>()

        override _.Name = "hd_sgdn_step"

        override _.forward(ctx: torch.autograd.AutogradContext, vars: obj[]) : Collections.Generic.List<Tensor> =
            let k = vars.Length
            let n, first, mu, wd = vars[k - 1] :?> int, vars[k - 2] :?> bool, vars[k - 3] :?> float, vars[k - 4] :?> float
            let x (j: int) = vars[j] :?> Tensor
            let ps, gs, vs, alpha = Array.init n x, Array.init n (fun i -> x (n + i)), Array.init n (fun i -> x (2 * n + i)), x (3 * n)
            Threading.Interlocked.Increment(&sgdnStepCalls) |> ignore
            ctx.save_for_backward(ResizeArray(Array.concat [ ps; gs; vs; [| alpha |] ]))
            for key, value in [ "wd", box wd; "mu", box mu; "first", box first; "n", box n ] do ctx.save_data(key, value)
            let negAlpha, hasWd = -(alpha.ToDouble()), wd <> 0.0
            let pO, dO, vO = Array.map torch.empty_like ps, Array.map torch.empty_like ps, Array.map torch.empty_like vs
            if ps[0].dtype = torch.ScalarType.Float32 then
                let stream = Kernel.streams (Array.concat [ pO; dO; vO ])
                Kernel.forChunksStoring stream (Array.init n (fun i -> i, int (ps[i].numel ()))) (fun i s l ->
                    sgdLoop true first hasWd (float32 wd) (float32 mu) (float32 negAlpha) stream
                        (Kernel.span ps[i] s l) (Kernel.span gs[i] s l) (Kernel.span vs[i] s l) (Kernel.span pO[i] s l) (Kernel.span vO[i] s l) (Kernel.span dO[i] s l))
            else
                for i in 0 .. n - 1 do
                    sgdElements true first hasWd wd mu negAlpha (AdamGrad.spanOf<float> ps[i]) (AdamGrad.spanOf<float> gs[i]) (AdamGrad.spanOf<float> vs[i])
                        (AdamGrad.spanOf<float> pO[i]) (AdamGrad.spanOf<float> vO[i]) (AdamGrad.spanOf<float> dO[i])
            ResizeArray(Array.concat [ pO; dO; vO ])

        override _.backward(ctx: torch.autograd.AutogradContext, grads: Collections.Generic.List<Tensor>) : Collections.Generic.List<Tensor> =
            Kernel.warnIfDifferentiated "hd_sgdn_step: second derivatives (create_graph) through the fused SGDN-HD step are not computed (its backward pass is hand-written); set Optimizers.Fused.Kernel.useSimd <- false for the op-by-op form"
            let saved = ctx.get_saved_variables ()
            let n, first = ctx.get_data "n" :?> int, ctx.get_data "first" :?> bool
            let wd, mu = ctx.get_data "wd" :?> float, ctx.get_data "mu" :?> float
            let ps, gs, vs, alpha = Array.init n (fun i -> saved[i]), Array.init n (fun i -> saved[n + i]), Array.init n (fun i -> saved[2 * n + i]), saved[3 * n]
            let negAlpha, hasWd = -(alpha.ToDouble()), wd <> 0.0
            use _ = torch.no_grad ()
            // the output gradients as contiguous tensors (LibTorch may hand over expanded zeros, or none)
            let dOut (k: int) = Array.init n (fun i -> let d = grads[k * n + i] in if isNull d then torch.zeros_like ps[i] else d.contiguous ())
            let dP, dD, dV = dOut 0, dOut 1, dOut 2
            // without weight decay dp = P: no copy
            let dp = if hasWd then Array.map torch.empty_like ps else Array.map (fun (x: Tensor) -> x.alias ()) dP
            let dg, dv = Array.map torch.empty_like gs, Array.map torch.empty_like vs
            let pd =
                if ps[0].dtype = torch.ScalarType.Float32 then
                    let stream = Kernel.streams (Array.concat [ (if hasWd then dp else [||]); dg; dv ])
                    sumOverChunks stream (Array.init n (fun i -> int (ps[i].numel ()))) (fun i s l ->
                        sgdnBack32 first hasWd (float32 wd) (float32 mu) (float32 negAlpha) stream
                            (Kernel.span ps[i] s l) (Kernel.span gs[i] s l) (Kernel.span vs[i] s l) (Kernel.span dP[i] s l) (Kernel.span dD[i] s l) (Kernel.span dV[i] s l)
                            (if hasWd then Kernel.span dp[i] s l else Span<float32>.Empty) (Kernel.span dg[i] s l) (Kernel.span dv[i] s l))
                else
                    Array.init n (fun i ->
                        sgdnBackElements first hasWd wd mu negAlpha (AdamGrad.spanOf<float> ps[i]) (AdamGrad.spanOf<float> gs[i]) (AdamGrad.spanOf<float> vs[i])
                            (AdamGrad.spanOf<float> dP[i]) (AdamGrad.spanOf<float> dD[i]) (AdamGrad.spanOf<float> dV[i])
                            (if hasWd then AdamGrad.spanOf<float> dp[i] else Span<float>.Empty) (AdamGrad.spanOf<float> dg[i]) (AdamGrad.spanOf<float> dv[i]))
                    |> Array.sum
            let dAlpha = torch.tensor(-pd, dtype = alpha.dtype, device = alpha.device).reshape(alpha.shape)
            Kernel.handBack (Seq.concat [ saved :> Tensor seq; grads; Seq.ofArray (Array.concat [ dP; dD; dV ]) ]) (Array.concat [ dp; dg; dv; [| dAlpha; null; null; null; null |] ])

    /// The differentiable fused steps of SGD-HD and SGDN-HD, as adamGradStep: one HyperDot call,
    /// `rates`' 0-d ops, then the model step. SGDN: one `SgdnStep` call. SGD: d = g + wd p and
    /// p + (-alpha) d op by op, two ops as fast as a fused call (T = 20 unrolls of 1M float32
    /// parameters in 10 tensors with backward, 1 thread, best of 9 runs in each of 3 processes:
    /// 117-139 ms, a fused call 117-197, op by op throughout 139-161).
    let private sgdGradStep (o: HdOptions) (dir: Transformation) : Tree -> State -> Tree -> (Tree * State) option =
        let n = name o
        let momentum = o.Model = SgdnOp
        fun grads state parameters ->
            let inner = innerOf n "fused gradient path" dir state
            let dPrev = state.Slot "direction"
            let bufs = if momentum then Some(inner.Slot "momentum_buffer") else None
            Kernel.checkNames n parameters
                [ yield "gradients", grads
                  yield "directions", dPrev
                  match bufs with Some b -> yield "momentum buffers", b | None -> () ]
            let tensorsOf i =
                [ yield parameters.Values[i]; yield grads.Values[i]; yield dPrev.Values[i]
                  match bufs with Some b -> yield b.Values[i] | None -> () ]
            let count = parameters.Count
            if count = 0 || not (AdamGrad.fusableAll (List.init count tensorsOf)) then None
            else
                let r = ratesOf o state grads (hypergradient o.WeightDecay grads.Values parameters.Values dPrev.Values)
                match bufs with
                | None ->
                    // as `update`: d = g (+ wd p), p + (-alpha) d
                    let d = if o.WeightDecay = 0.0 then grads else Tree.map2 (fun g w -> Tensors.add g (Tensors.mulNum w o.WeightDecay)) grads parameters
                    let negAlpha = -(r.Alpha[Global])
                    Some(Tree.map2 (fun p dd -> Tensors.add p (negAlpha * dd)) parameters d, stateAfter Target.Fresh state d r inner)
                | Some b ->
                    let vars =
                        Array.concat
                            [ Array.map box parameters.Values; Array.map box grads.Values; Array.map box b.Values
                              [| box r.Alpha[Global]; box o.WeightDecay; box o.Momentum; box (inner.Count = 0); box count |] ]
                    let out = SgdnStep.apply vars
                    let tree k = { Names = parameters.Names; Values = Array.init count (fun i -> out[k * count + i]) }
                    let inner' = { inner with Count = inner.Count + 1; Slots = Map.ofList [ "momentum_buffer", tree 2 ] }
                    Some(tree 0, stateAfter Target.Fresh state (tree 1) r inner')

    let create (o: HdOptions) : Transformation =
        validate o
        let n = name o
        let dir = direction o
        let init (p: Tree) =
            let rateNames = if o.PerParameter then p.Names else [| Global |]
            let scalars (v: float) = Tree.ofSeq [ for r in rateNames -> r, torch.tensor(v, dtype = torch.ScalarType.Float64) ]
            { State.empty n with
                Slots =
                  Map.ofList
                    [ "direction", Tree.zerosLike p
                      "lr", scalars o.Lr
                      "hypergrad_lr", scalars 0.0
                      "lop_m", scalars 0.0
                      "lop_v", scalars 0.0 ]
                Children = [ dir.Init p ] }
        let update (g: Tree) (s: State) (p: Tree) =
            let t = s.Count + 1
            let g = if o.WeightDecay = 0.0 then g else Tree.map2 (fun g w -> Tensors.add g (Tensors.mulNum w o.WeightDecay)) g p
            let dPrev = s.Slot "direction"
            // h_t = g_t . grad_alpha u_{t-1} = -g_t . d_{t-1}
            let h = dots o.PerParameter g dPrev |> Tree.map (fun x -> Tensors.sub (torch.zeros_like x) x) // 0 - x: no "-0" at the first step
            let alpha', m', v' = rates o s g dPrev h
            let d, inner' = dir.Update g s.Children.Head p
            let u = Tree.mapi (fun name dd -> -(rateOf o.PerParameter alpha' name) * dd) d
            u,
            { s with
                Count = t
                Slots = Map.ofList [ "direction", d; "lr", alpha'; "hypergrad_lr", h; "lop_m", m'; "lop_v", v' ]
                Children = [ inner' ] }
        let t = Transform.create n init update
        // the fused kernels and the differentiable fused steps serve one global rate; per-parameter
        // rates and the multiplicative guard run op by op
        if not o.PerParameter && o.Guard <> Multiplicative then
            let kernel, gradStep = if o.Model = AdamOp then adamKernel o dir, adamGradStep o dir else sgdKernel o dir, sgdGradStep o dir
            t |> Transform.withFast [ o.HypergradLr ] kernel |> Transform.withDifferentiable gradStep
        else t

    /// The three model optimizers with their defaults of the reference code's experiments
    /// (shared/notes/REPRODUCTION.md): alpha_0 = 1e-3; beta = 1e-3 for SGD and SGDN, 1e-7 for Adam.
    let forModel (model: ModelOptimizer) (lop: LrOptimizer) : HdOptions =
        { defaults with
            Model = model
            LrOptimizer = lop
            HypergradLr = Hyper.Fixed(if model = AdamOp then 1e-7 else 1e-3) }

    let private guards = [ "none", Unguarded; "clip", ClipAtZero; "multiplicative", Multiplicative ]

    /// The registration of `model` with its learning rate learnt by `lop`: the options of that
    /// model and that learning-rate optimizer only.
    let spec (model: ModelOptimizer) (lop: LrOptimizer) : Registration<HdOptions> =
        let modelFields =
            match model with
            | SgdOp -> []
            | SgdnOp -> [ Field.number "momentum" (fun o -> o.Momentum) (fun o v -> { o with Momentum = v }) "Nesterov momentum of the model optimizer" ]
            | AdamOp ->
                [ Field.number "beta1" (fun o -> o.Beta1) (fun o v -> { o with Beta1 = v }) "Adam's first-moment decay"
                  Field.number "beta2" (fun o -> o.Beta2) (fun o v -> { o with Beta2 = v }) "Adam's second-moment decay"
                  Field.number "eps" (fun o -> o.Eps) (fun o v -> { o with Eps = v }) "Adam's eps" ]
        let lopFields =
            match lop with
            | SgdLop -> []
            | SgdnLop -> [ Field.number "lop_momentum" (fun o -> o.LopMomentum) (fun o v -> { o with LopMomentum = v }) "momentum on the hypergradient (Algorithm 1)" ]
            | AdamLop ->
                [ Field.number "lop_beta1" (fun o -> o.LopBeta1) (fun o v -> { o with LopBeta1 = v }) "first-moment decay on the hypergradient (Algorithm 2)"
                  Field.number "lop_beta2" (fun o -> o.LopBeta2) (fun o v -> { o with LopBeta2 = v }) "second-moment decay on the hypergradient"
                  Field.number "lop_eps" (fun o -> o.LopEps) (fun o v -> { o with LopEps = v }) "eps of Adam on the hypergradient" ]
        { Summary = $"{opName model} whose learning rate learns by {lopName lop} on the hypergradient"
          Source = "Baydin et al. 2018; seed 001 (Mittal 2019)"
          Defaults = forModel model lop
          Fields =
            [ Field.number "lr" (fun o -> o.Lr) (fun o v -> { o with Lr = v }) "initial learning rate alpha_0"
              Field.hyper "hypergrad_lr" (fun o -> o.HypergradLr) (fun o v -> { o with HypergradLr = v }) "hypergradient learning rate beta" ]
            @ modelFields @ lopFields
            @ [ Field.number "weight_decay" (fun o -> o.WeightDecay) (fun o v -> { o with WeightDecay = v }) "L2 penalty added to the gradient"
                Field.flag "per_parameter" (fun o -> o.PerParameter) (fun o v -> { o with PerParameter = v }) "one learning rate per parameter tensor"
                Field.word "lr_guard" guards (fun o -> o.Guard) (fun o v -> { o with Guard = v }) "none | clip (at 0) | multiplicative" ]
          Create = create }
