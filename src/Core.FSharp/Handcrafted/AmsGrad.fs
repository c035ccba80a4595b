namespace Optimizers.Handcrafted

open Optimizers
open Optimizers.Transforms
open Optimizers.Fused

/// Options of AMSGrad (torch.optim.Adam's names with amsgrad=True, plus `Debias`).
type AmsGradOptions =
    { Lr: Hyper
      Beta1: Hyper
      Beta2: Hyper
      /// Added to the denominator outside the square root (PyTorch's eps).
      Eps: float
      /// Added inside the square root; > 0 keeps meta-gradients finite.
      EpsRoot: float
      /// L2 regularisation added to the gradient.
      WeightDecay: Hyper
      /// true: PyTorch's bias-corrected form; false: Reddi et al.'s and the lecture's form
      /// without bias correction.
      Debias: bool }

/// AMSGrad (Reddi, Kale and Kumar, ICLR 2018; lecture seed 003): Adam whose second moment is
/// the running maximum, so the effective learning rate never increases.
///   g_t = grad_t + wd * theta_{t-1}
///   m_t = b1 m_{t-1} + (1 - b1) g_t,   v_t = b2 v_{t-1} + (1 - b2) g_t^2,   vmax_t = max(vmax_{t-1}, v_t)
///   debias = true (default; torch.optim.Adam with amsgrad=True):
///       theta_t = theta_{t-1} - lr (m_t / (1 - b1^t)) / (sqrt(vmax_t) / sqrt(1 - b2^t) + eps)
///   debias = false (Reddi et al.'s Algorithm 2; the lecture: "remove de-biasing due to the max"):
///       theta_t = theta_{t-1} - lr m_t / (sqrt(vmax_t) + eps)
module AmsGrad =

    let defaults : AmsGradOptions =
        { Lr = Hyper.Fixed 1e-3
          Beta1 = Hyper.Fixed 0.9
          Beta2 = Hyper.Fixed 0.999
          Eps = 1e-8
          EpsRoot = 0.0
          WeightDecay = Hyper.Fixed 0.0
          Debias = true }

    let validate (o: AmsGradOptions) = Adam.validateMoments "amsgrad" o.Lr o.Beta1 o.Beta2 o.Eps o.EpsRoot o.WeightDecay

    /// AMSGrad as a transformation named "amsgrad", with the Adam family's fused kernel and its
    /// differentiable fused step (AdamVariantsGrad, L2, when a gradient flows through the step).
    /// Validates its options.
    let create (o: AmsGradOptions) : Transformation =
        validate o
        let wd, moments, lr = ScaleBy.l2WeightDecay o.WeightDecay, Moments.amsgrad o.Beta1 o.Beta2 o.Eps o.EpsRoot o.Debias, ScaleBy.learningRate o.Lr
        let chain = Kernel.Chain("amsgrad", 1, [ wd; moments; lr ])
        chain.Transformation
        |> Transform.withFast [ o.Lr; o.Beta1; o.Beta2; o.WeightDecay ]
            (AdamKernel.kernelWith chain AdamDecay.L2 wd moments lr
                { Lr = o.Lr; Beta1 = o.Beta1; Beta2 = o.Beta2; Eps = o.Eps; EpsRoot = o.EpsRoot; WeightDecay = o.WeightDecay; Amsgrad = true; Debias = o.Debias })
        |> Transform.withDifferentiable
            (AdamVariantsGrad.treeStep chain { Decoupled = false; Amsgrad = true; Debias = o.Debias } wd moments lr
                o.Lr o.Beta1 o.Beta2 o.Eps o.EpsRoot o.WeightDecay)

    let fields : Field<AmsGradOptions> list =
        [ Field.hyper "lr" (fun o -> o.Lr) (fun o v -> { o with Lr = v }) "learning rate"
          Field.hyper "beta1" (fun o -> o.Beta1) (fun o v -> { o with Beta1 = v }) "decay of the first moment"
          Field.hyper "beta2" (fun o -> o.Beta2) (fun o v -> { o with Beta2 = v }) "decay of the second moment"
          Field.number "eps" (fun o -> o.Eps) (fun o v -> { o with Eps = v }) "added to the denominator, outside the square root"
          Field.number "eps_root" (fun o -> o.EpsRoot) (fun o v -> { o with EpsRoot = v }) "added inside the square root (meta-gradients)"
          Field.hyper "weight_decay" (fun o -> o.WeightDecay) (fun o v -> { o with WeightDecay = v }) "L2 penalty added to the gradient"
          Field.flag "debias" (fun o -> o.Debias) (fun o v -> { o with Debias = v }) "bias correction (PyTorch); false: the paper's and the lecture's form" ]

    let spec : Registration<AmsGradOptions> =
        { Summary = "AMSGrad: Adam with the running maximum of the second moment"
          Source = "Reddi et al. 2018; torch.optim.Adam(amsgrad=True); lecture seed 003 (debias=false)"
          Defaults = defaults
          Fields = fields
          Create = create }
