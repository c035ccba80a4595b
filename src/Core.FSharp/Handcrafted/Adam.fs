namespace Optimizers.Handcrafted

open Optimizers
open Optimizers.Transforms
open Optimizers.Fused

/// Options of Adam (torch.optim.Adam's names and defaults, plus optax's eps_root).
type AdamOptions =
    { Lr: Hyper
      Beta1: Hyper
      Beta2: Hyper
      /// Added to the denominator outside the square root (PyTorch's eps).
      Eps: float
      /// Added inside the square root; > 0 (about 1e-8) keeps meta-gradients finite.
      EpsRoot: float
      /// L2 regularisation added to the gradient (not decoupled: that is AdamW).
      WeightDecay: Hyper }

/// Adam (Kingma and Ba, ICLR 2015; lecture seed 003), exactly as torch.optim.Adam:
///   g_t = grad_t + wd * theta_{t-1}
///   m_t = b1 m_{t-1} + (1 - b1) g_t,      v_t = b2 v_{t-1} + (1 - b2) g_t^2
///   theta_t = theta_{t-1} - lr * (m_t / (1 - b1^t)) / (sqrt(v_t) / sqrt(1 - b2^t) + eps)
/// eps sits outside the square root as in PyTorch; epsRoot (optax) inside it when set.
module Adam =

    let defaults : AdamOptions =
        { Lr = Hyper.Fixed 1e-3
          Beta1 = Hyper.Fixed 0.9
          Beta2 = Hyper.Fixed 0.999
          Eps = 1e-8
          EpsRoot = 0.0
          WeightDecay = Hyper.Fixed 0.0 }

    /// The checks every optimizer with Adam's moments shares (Adam, AdamW, AMSGrad), under its name.
    let validateMoments (owner: string) lr beta1 beta2 (eps: float) (epsRoot: float) weightDecay =
        Hyper.checkNonNegative owner "lr" lr
        Hyper.checkDecay owner "beta1" beta1
        Hyper.checkDecay owner "beta2" beta2
        Hyper.checkFloat owner "eps" (fun v -> v > 0.0) "> 0" eps
        Hyper.checkFloat owner "eps_root" (fun v -> v >= 0.0) ">= 0" epsRoot
        Hyper.checkNonNegative owner "weight_decay" weightDecay

    let validate (o: AdamOptions) = validateMoments "adam" o.Lr o.Beta1 o.Beta2 o.Eps o.EpsRoot o.WeightDecay

    /// Adam as a transformation named "adam", with the Adam family's fused kernel and its
    /// differentiable fused step (AdamGrad, when a gradient flows through the step). Validates its options.
    let create (o: AdamOptions) : Transformation =
        validate o
        let wd, moments, lr = ScaleBy.l2WeightDecay o.WeightDecay, Moments.adam o.Beta1 o.Beta2 o.Eps o.EpsRoot, ScaleBy.learningRate o.Lr
        let chain = Kernel.Chain("adam", 1, [ wd; moments; lr ])
        chain.Transformation
        |> Transform.withFast [ o.Lr; o.Beta1; o.Beta2; o.WeightDecay ]
            (AdamKernel.kernelWith chain AdamDecay.L2 wd moments lr
                { Lr = o.Lr; Beta1 = o.Beta1; Beta2 = o.Beta2; Eps = o.Eps; EpsRoot = o.EpsRoot; WeightDecay = o.WeightDecay; Amsgrad = false; Debias = true })
        |> Transform.withDifferentiable (AdamGrad.treeStep chain wd moments lr o.Lr o.Beta1 o.Beta2 o.Eps o.EpsRoot o.WeightDecay)

    let fields : Field<AdamOptions> list =
        [ Field.hyper "lr" (fun o -> o.Lr) (fun o v -> { o with Lr = v }) "learning rate"
          Field.hyper "beta1" (fun o -> o.Beta1) (fun o v -> { o with Beta1 = v }) "decay of the first moment"
          Field.hyper "beta2" (fun o -> o.Beta2) (fun o v -> { o with Beta2 = v }) "decay of the second moment"
          Field.number "eps" (fun o -> o.Eps) (fun o v -> { o with Eps = v }) "added to the denominator, outside the square root"
          Field.number "eps_root" (fun o -> o.EpsRoot) (fun o v -> { o with EpsRoot = v }) "added inside the square root (meta-gradients)"
          Field.hyper "weight_decay" (fun o -> o.WeightDecay) (fun o v -> { o with WeightDecay = v }) "L2 penalty added to the gradient" ]

    let spec : Registration<AdamOptions> =
        { Summary = "Adam: bias-corrected first and second moments"
          Source = "Kingma and Ba 2015; torch.optim.Adam; lecture seed 003"
          Defaults = defaults
          Fields = fields
          Create = create }
