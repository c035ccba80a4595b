namespace Optimizers.Handcrafted

open Optimizers
open Optimizers.Transforms

/// Options of Adamax (torch.optim.Adamax's names and defaults).
type AdamaxOptions =
    { Lr: Hyper
      Beta1: Hyper
      Beta2: Hyper
      /// Added to |g| inside the maximum (PyTorch's placement).
      Eps: float
      /// L2 regularisation added to the gradient.
      WeightDecay: Hyper }

/// Adamax, Adam with the infinity norm (Kingma and Ba, ICLR 2015, sec. 7.1), exactly as
/// torch.optim.Adamax:
///   g_t = grad_t + wd * theta_{t-1}
///   m_t = b1 m_{t-1} + (1 - b1) g_t,   u_t = max(b2 u_{t-1}, |g_t| + eps)
///   theta_t = theta_{t-1} - lr / (1 - b1^t) * m_t / u_t
module Adamax =

    let defaults : AdamaxOptions =
        { Lr = Hyper.Fixed 2e-3
          Beta1 = Hyper.Fixed 0.9
          Beta2 = Hyper.Fixed 0.999
          Eps = 1e-8
          WeightDecay = Hyper.Fixed 0.0 }

    let validate (o: AdamaxOptions) =
        Hyper.checkNonNegative "adamax" "lr" o.Lr
        Hyper.checkDecay "adamax" "beta1" o.Beta1
        Hyper.checkDecay "adamax" "beta2" o.Beta2
        Hyper.checkFloat "adamax" "eps" (fun v -> v > 0.0) "> 0" o.Eps
        Hyper.checkNonNegative "adamax" "weight_decay" o.WeightDecay

    /// Adamax as a transformation named "adamax". Validates its options.
    let create (o: AdamaxOptions) : Transformation =
        validate o
        Combine.named "adamax" 1
            [ ScaleBy.l2WeightDecay o.WeightDecay
              Moments.adamax o.Beta1 o.Beta2 o.Eps
              ScaleBy.learningRate o.Lr ]

    let fields : Field<AdamaxOptions> list =
        [ Field.hyper "lr" (fun o -> o.Lr) (fun o v -> { o with Lr = v }) "learning rate"
          Field.hyper "beta1" (fun o -> o.Beta1) (fun o v -> { o with Beta1 = v }) "decay of the first moment"
          Field.hyper "beta2" (fun o -> o.Beta2) (fun o v -> { o with Beta2 = v }) "decay of the second moment"
          Field.number "eps" (fun o -> o.Eps) (fun o v -> { o with Eps = v }) "added to |g| inside the maximum"
          Field.hyper "weight_decay" (fun o -> o.WeightDecay) (fun o v -> { o with WeightDecay = v }) "L2 penalty added to the gradient" ]

    let spec : Registration<AdamaxOptions> =
        { Summary = "Adamax: Adam with the infinity norm"
          Source = "Kingma and Ba 2015, sec. 7.1; torch.optim.Adamax"
          Defaults = defaults
          Fields = fields
          Create = create }
