namespace Optimizers.Handcrafted

open Optimizers
open Optimizers.Transforms
open Optimizers.Fused

/// Options of AdamW (torch.optim.AdamW's names and defaults, plus optax's eps_root).
type AdamWOptions =
    { Lr: Hyper
      Beta1: Hyper
      Beta2: Hyper
      /// Added to the denominator outside the square root (PyTorch's eps).
      Eps: float
      /// Added inside the square root; > 0 keeps meta-gradients finite.
      EpsRoot: float
      /// Decoupled weight decay: theta is shrunk by lr * weight_decay * theta each step.
      WeightDecay: Hyper
      /// Use AMSGrad's running maximum of v (torch.optim.AdamW's amsgrad).
      Amsgrad: bool }

/// AdamW, Adam with decoupled weight decay (Loshchilov and Hutter, ICLR 2019; lecture seed 003),
/// exactly as torch.optim.AdamW:
///   m_t = b1 m_{t-1} + (1 - b1) grad_t,   v_t = b2 v_{t-1} + (1 - b2) grad_t^2   (amsgrad: vmax_t)
///   theta_t = theta_{t-1} - lr (m_t / (1 - b1^t)) / (sqrt(v_t) / sqrt(1 - b2^t) + eps) - lr wd theta_{t-1}
/// The decay never enters the moments (against Adam's L2 weight_decay, which does). As in PyTorch
/// the decay is scaled by lr; the paper's lambda (scaled by the schedule multiplier only) is
/// lr * weight_decay here. A chain in optax's order: moments, add wd * theta, scale by -lr.
module AdamW =

    let defaults : AdamWOptions =
        { Lr = Hyper.Fixed 1e-3
          Beta1 = Hyper.Fixed 0.9
          Beta2 = Hyper.Fixed 0.999
          Eps = 1e-8
          EpsRoot = 0.0
          WeightDecay = Hyper.Fixed 1e-2
          Amsgrad = false }

    let validate (o: AdamWOptions) = Adam.validateMoments "adamw" o.Lr o.Beta1 o.Beta2 o.Eps o.EpsRoot o.WeightDecay

    /// AdamW as a transformation named "adamw", with the Adam family's fused kernel in its decoupled
    /// form and its differentiable fused step (AdamVariantsGrad, decoupled, with or without amsgrad,
    /// when a gradient flows through the step). Validates its options.
    let create (o: AdamWOptions) : Transformation =
        validate o
        let moments = if o.Amsgrad then Moments.amsgrad o.Beta1 o.Beta2 o.Eps o.EpsRoot true else Moments.adam o.Beta1 o.Beta2 o.Eps o.EpsRoot
        let wd, lr = ScaleBy.l2WeightDecay o.WeightDecay, ScaleBy.learningRate o.Lr
        let chain = Kernel.Chain("adamw", 1, [ moments; wd; lr ])
        chain.Transformation
        |> Transform.withFast [ o.Lr; o.Beta1; o.Beta2; o.WeightDecay ]
            (AdamKernel.kernelWith chain AdamDecay.Decoupled wd moments lr
                { Lr = o.Lr; Beta1 = o.Beta1; Beta2 = o.Beta2; Eps = o.Eps; EpsRoot = o.EpsRoot; WeightDecay = o.WeightDecay; Amsgrad = o.Amsgrad; Debias = true })
        |> Transform.withDifferentiable
            (AdamVariantsGrad.treeStep chain { Decoupled = true; Amsgrad = o.Amsgrad; Debias = true } wd moments lr
                o.Lr o.Beta1 o.Beta2 o.Eps o.EpsRoot o.WeightDecay)

    let fields : Field<AdamWOptions> list =
        [ Field.hyper "lr" (fun o -> o.Lr) (fun o v -> { o with Lr = v }) "learning rate"
          Field.hyper "beta1" (fun o -> o.Beta1) (fun o v -> { o with Beta1 = v }) "decay of the first moment"
          Field.hyper "beta2" (fun o -> o.Beta2) (fun o v -> { o with Beta2 = v }) "decay of the second moment"
          Field.number "eps" (fun o -> o.Eps) (fun o v -> { o with Eps = v }) "added to the denominator, outside the square root"
          Field.number "eps_root" (fun o -> o.EpsRoot) (fun o v -> { o with EpsRoot = v }) "added inside the square root (meta-gradients)"
          Field.hyper "weight_decay" (fun o -> o.WeightDecay) (fun o v -> { o with WeightDecay = v }) "decoupled weight decay (scaled by lr)"
          Field.flag "amsgrad" (fun o -> o.Amsgrad) (fun o v -> { o with Amsgrad = v }) "use the running maximum of v" ]

    let spec : Registration<AdamWOptions> =
        { Summary = "AdamW: Adam with decoupled weight decay"
          Source = "Loshchilov and Hutter 2019; torch.optim.AdamW; lecture seed 003"
          Defaults = defaults
          Fields = fields
          Create = create }
