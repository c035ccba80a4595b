namespace Optimizers.Hypergradient

open TorchSharp
open Optimizers
open Optimizers.Handcrafted

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
        | AdamOp -> ScaleBy.adamMoments (Hyper.Fixed o.Beta1) (Hyper.Fixed o.Beta2) o.Eps 0.0

    /// Sum of x . y over the tensors of two trees, as one 0-d tensor per rate.
    let private dots (perParameter: bool) (x: Tree) (y: Tree) : Tree =
        let each = Tree.map2 (fun a b -> (a * b).sum()) x y
        if perParameter then each
        else Tree.single Global (each.Values |> Array.reduce (+))

    /// The rates' tree broadcast to the parameters: each tensor's own rate, or the global one.
    let private rateOf (perParameter: bool) (rates: Tree) (name: string) = if perParameter then rates[name] else rates[Global]

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
            let g = if o.WeightDecay = 0.0 then g else Tree.map2 (fun g w -> g + o.WeightDecay * w) g p
            let dPrev = s.Slot "direction"
            // h_t = g_t . grad_alpha u_{t-1} = -g_t . d_{t-1}
            let h = dots o.PerParameter g dPrev |> Tree.map (fun x -> 0.0 - x) // 0 - x: no "-0" at the first step
            let alpha, m, v = s.Slot "lr", s.Slot "lop_m", s.Slot "lop_v"
            let beta = Hyper.at s.Count o.HypergradLr
            let alpha', m', v' =
                match o.LrOptimizer, o.Guard with
                | SgdLop, Multiplicative ->
                    // alpha (1 - beta h / (|g| |d|)); no change while d_{t-1} = 0 (the first step)
                    let norms = Tree.map2 (fun gn dn -> (gn * dn).sqrt()) (dots o.PerParameter g g) (dots o.PerParameter dPrev dPrev)
                    let cosine = Tree.map2 (fun hh nn -> torch.where(nn.gt(Tensors.scalar 0.0), hh / nn, torch.zeros_like hh)) h norms
                    Tree.map2 (fun a c -> a * (1.0 - beta * c)) alpha cosine, m, v
                | SgdLop, _ -> Tree.map2 (fun a hh -> a - beta * hh) alpha h, m, v
                | SgdnLop, _ ->
                    let mu = o.LopMomentum
                    let v' = Tree.map2 (fun vv hh -> mu * vv + hh) v h
                    Tree.map3 (fun a hh vv -> a - beta * (hh + mu * vv)) alpha h v', m, v'
                | AdamLop, _ ->
                    let b1, b2 = o.LopBeta1, o.LopBeta2
                    let m' = Tree.map2 (fun mm hh -> b1 * mm + (1.0 - b1) * hh) m h
                    let v' = Tree.map2 (fun vv hh -> b2 * vv + (1.0 - b2) * (hh * hh)) v h
                    let bc1, bc2 = 1.0 - b1 ** float t, 1.0 - b2 ** float t
                    Tree.map3 (fun a mm vv -> a - beta * ((mm / bc1) / ((vv / bc2).sqrt() + o.LopEps))) alpha m' v', m', v'
            let alpha' = if o.Guard = ClipAtZero then Tree.map (fun a -> a.clamp_min(0.0)) alpha' else alpha'
            let d, inner' = dir.Update g s.Children.Head p
            let u = Tree.mapi (fun name dd -> -(rateOf o.PerParameter alpha' name) * dd) d
            u,
            { s with
                Count = t
                Slots = Map.ofList [ "direction", d; "lr", alpha'; "hypergrad_lr", h; "lop_m", m'; "lop_v", v' ]
                Children = [ inner' ] }
        Transform.create n init update

    /// The three model optimizers with their defaults of the reference code's experiments
    /// (shared/notes/REPRODUCTION.md): alpha_0 = 1e-3; beta = 1e-3 for SGD and SGDN, 1e-7 for Adam.
    let forModel (model: ModelOptimizer) (lop: LrOptimizer) : HdOptions =
        { defaults with
            Model = model
            LrOptimizer = lop
            HypergradLr = Hyper.Fixed(if model = AdamOp then 1e-7 else 1e-3) }
