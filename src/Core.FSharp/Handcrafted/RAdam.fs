namespace Optimizers.Handcrafted

open Optimizers
open Optimizers.Transforms

/// Options of RAdam (torch.optim.RAdam's names and defaults, plus the rectification threshold).
type RAdamOptions =
    { Lr: Hyper
      Beta1: Hyper
      Beta2: Hyper
      Eps: float
      /// L2 regularisation added to the gradient.
      WeightDecay: Hyper
      /// Rectify (adaptive step) when rho_t > threshold; otherwise take the un-rectified step.
      Threshold: float }

/// RAdam, rectified Adam (Liu et al., ICLR 2020; lecture seed 003), exactly as torch.optim.RAdam:
///   g_t = grad_t + wd * theta_{t-1}
///   m_t = b1 m_{t-1} + (1 - b1) g_t,   v_t = b2 v_{t-1} + (1 - b2) g_t^2,   mhat_t = m_t / (1 - b1^t)
///   rho_inf = 2 / (1 - b2) - 1,   rho_t = rho_inf - 2 t b2^t / (1 - b2^t)
///   rho_t > threshold: r_t = sqrt((rho_t - 4)(rho_t - 2) rho_inf / ((rho_inf - 4)(rho_inf - 2) rho_t))
///                      theta_t = theta_{t-1} - lr mhat_t r_t sqrt(1 - b2^t) / (sqrt(v_t) + eps)
///   otherwise:         theta_t = theta_{t-1} - lr mhat_t
/// The threshold is PyTorch's (and the authors' code's) 5 by default; the paper's Algorithm 2 and
/// the lecture use 4 (rho_t > 4 is where r_t is defined).
module RAdam =

    let defaults : RAdamOptions =
        { Lr = Hyper.Fixed 1e-3
          Beta1 = Hyper.Fixed 0.9
          Beta2 = Hyper.Fixed 0.999
          Eps = 1e-8
          WeightDecay = Hyper.Fixed 0.0
          Threshold = 5.0 }

    /// rho_t of RAdam at step t >= 1 for a constant b2.
    let rho (beta2: float) (t: int) : float = Moments.radamRho (HValue.Num beta2) t |> snd |> HValue.toFloat

    let validate (o: RAdamOptions) =
        Hyper.checkNonNegative "radam" "lr" o.Lr
        Hyper.checkDecay "radam" "beta1" o.Beta1
        Hyper.checkDecay "radam" "beta2" o.Beta2
        Hyper.checkFloat "radam" "eps" (fun v -> v > 0.0) "> 0" o.Eps
        Hyper.checkNonNegative "radam" "weight_decay" o.WeightDecay
        Hyper.checkFloat "radam" "threshold" (fun v -> v >= 4.0) ">= 4 (the rectification term needs rho_t > 4)" o.Threshold

    /// RAdam as a transformation named "radam". Validates its options.
    let create (o: RAdamOptions) : Transformation =
        validate o
        Combine.named "radam" 1
            [ ScaleBy.l2WeightDecay o.WeightDecay
              Moments.radam o.Beta1 o.Beta2 o.Eps o.Threshold
              ScaleBy.learningRate o.Lr ]

    let fields : Field<RAdamOptions> list =
        [ Field.hyper "lr" (fun o -> o.Lr) (fun o v -> { o with Lr = v }) "learning rate"
          Field.hyper "beta1" (fun o -> o.Beta1) (fun o v -> { o with Beta1 = v }) "decay of the first moment"
          Field.hyper "beta2" (fun o -> o.Beta2) (fun o v -> { o with Beta2 = v }) "decay of the second moment"
          Field.number "eps" (fun o -> o.Eps) (fun o v -> { o with Eps = v }) "added to sqrt(v)"
          Field.hyper "weight_decay" (fun o -> o.WeightDecay) (fun o v -> { o with WeightDecay = v }) "L2 penalty added to the gradient"
          Field.number "threshold" (fun o -> o.Threshold) (fun o v -> { o with Threshold = v }) "rectify when rho_t > threshold (PyTorch: 5; the paper: 4)" ]

    let spec : Registration<RAdamOptions> =
        { Summary = "RAdam: Adam with the variance of the adaptive learning rate rectified"
          Source = "Liu et al. 2020; torch.optim.RAdam; lecture seed 003"
          Defaults = defaults
          Fields = fields
          Create = create }
