namespace Optimizers.Handcrafted

open TorchSharp
open Optimizers
open Optimizers.Transforms

/// Options of SWATS (the paper's names and defaults).
type SwatsOptions =
    { /// Adam's learning rate (alpha); the SGD phase uses the estimated one.
      Lr: Hyper
      Beta1: Hyper
      Beta2: Hyper
      /// Added to sqrt(v) in Adam's step (the paper's placement, before the bias correction).
      Eps: float
      /// The switch threshold: switch when |lambda_k / (1 - b2^k) - gamma_k| < switch_eps.
      SwitchEps: float
      /// L2 regularisation added to the gradient in both phases.
      WeightDecay: Hyper }

/// SWATS, switching from Adam to SGD (Keskar and Socher 2017, arXiv:1712.07628, Algorithm 1;
/// lecture seed 003). With k the step from 1 and g_k = grad_k + wd * theta_{k-1}:
///   Adam phase: m_k = b1 m_{k-1} + (1 - b1) g_k,   a_k = b2 a_{k-1} + (1 - b2) g_k^2
///               p_k = -lr sqrt(1 - b2^k) / (1 - b1^k) * m_k / (sqrt(a_k) + eps),   theta_k = theta_{k-1} + p_k
///               if p_k . g_k <> 0:  gamma_k = (p_k . p_k) / (-p_k . g_k),  lambda_k = b2 lambda_{k-1} + (1 - b2) gamma_k
///               if k > 1 and |lambda_k / (1 - b2^k) - gamma_k| < switch_eps: switch to SGD with
///               Lambda = lambda_k / (1 - b2^k)
///   SGD phase:  v_k = b1 v_{k-1} + g_k (v = 0 at the switch),   theta_k = theta_{k-1} - (1 - b1) Lambda v_k
/// The paper uses one epsilon (1e-9) both in Adam's step and in the switch test; here they are
/// two options with that default. The projection is global over all parameters, as in the
/// algorithm. `switchStep` reads, from a state, the step at which it switched.
module Swats =

    let defaults : SwatsOptions =
        { Lr = Hyper.Fixed 1e-3
          Beta1 = Hyper.Fixed 0.9
          Beta2 = Hyper.Fixed 0.999
          Eps = 1e-9
          SwitchEps = 1e-9
          WeightDecay = Hyper.Fixed 0.0 }

    let validate (o: SwatsOptions) =
        Hyper.checkNonNegative "swats" "lr" o.Lr
        Hyper.checkDecay "swats" "beta1" o.Beta1
        Hyper.checkDecay "swats" "beta2" o.Beta2
        Hyper.checkFloat "swats" "eps" (fun v -> v > 0.0) "> 0" o.Eps
        Hyper.checkFloat "swats" "switch_eps" (fun v -> v >= 0.0) ">= 0 (0 never switches)" o.SwitchEps
        Hyper.checkNonNegative "swats" "weight_decay" o.WeightDecay

    /// SWATS as a transformation named "swats". Validates its options. The learning rate is
    /// inside the SWATS step (Adam's, then the estimated one), so the chain ends with the sign flip.
    let create (o: SwatsOptions) : Transformation =
        validate o
        Combine.named "swats" 1
            [ ScaleBy.l2WeightDecay o.WeightDecay
              Moments.swats o.Lr o.Beta1 o.Beta2 o.Eps o.SwitchEps
              ScaleBy.learningRate (Hyper.Fixed 1.0) ]

    let fields : Field<SwatsOptions> list =
        [ Field.hyper "lr" (fun o -> o.Lr) (fun o v -> { o with Lr = v }) "Adam's learning rate"
          Field.hyper "beta1" (fun o -> o.Beta1) (fun o v -> { o with Beta1 = v }) "decay of the first moment"
          Field.hyper "beta2" (fun o -> o.Beta2) (fun o v -> { o with Beta2 = v }) "decay of the second moment"
          Field.number "eps" (fun o -> o.Eps) (fun o v -> { o with Eps = v }) "added to sqrt(v) in Adam's step"
          Field.number "switch_eps" (fun o -> o.SwitchEps) (fun o v -> { o with SwitchEps = v }) "switch when the estimate moves less than this"
          Field.hyper "weight_decay" (fun o -> o.WeightDecay) (fun o v -> { o with WeightDecay = v }) "L2 penalty added to the gradient" ]

    let spec : Registration<SwatsOptions> =
        { Summary = "SWATS: Adam, then SGD with momentum at the learning rate Adam's steps imply"
          Source = "Keskar and Socher 2017 (Algorithm 1); lecture seed 003"
          Defaults = defaults
          Fields = fields
          Create = create }

    let rec private find (s: State) : State option =
        if s.Kind = "scale_by_swats" then Some s else List.tryPick find s.Children

    /// The step (from 1) at which SWATS switched to SGD, or None while still in the Adam phase.
    let switchStep (state: State) : int option =
        match find state with
        | None -> Tensors.invalidArg "state" $"the state of '{state.Kind}' holds no SWATS state"
        | Some s ->
            match int ((s.Scalar "switch_step").ToDouble()) with
            | 0 -> None
            | k -> Some k

    /// The SGD learning rate Lambda that SWATS estimated, once it has switched.
    let sgdLearningRate (state: State) : float option =
        match find state with
        | Some s when (s.Scalar "switch_step").ToDouble() > 0.0 -> Some((s.Scalar "sgd_lr").ToDouble())
        | _ -> None
