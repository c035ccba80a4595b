namespace Optimizers.Handcrafted

open Optimizers

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

    /// AMSGrad as a transformation named "amsgrad". Validates its options.
    let create (o: AmsGradOptions) : Transformation =
        validate o
        Combine.named "amsgrad" 1
            [ ScaleBy.l2WeightDecay o.WeightDecay
              Adaptive.amsgrad o.Beta1 o.Beta2 o.Eps o.EpsRoot o.Debias
              ScaleBy.learningRate o.Lr ]
