namespace Optimizers.Handcrafted

open Optimizers
open Optimizers.Transforms

/// Options of Nadam (torch.optim.NAdam's names and defaults).
type NAdamOptions =
    { Lr: Hyper
      Beta1: Hyper
      Beta2: Hyper
      Eps: float
      /// L2 regularisation added to the gradient.
      WeightDecay: Hyper
      /// psi in the momentum schedule mu_t = b1 (1 - 0.5 * 0.96^(t psi)).
      MomentumDecay: float }

/// Nadam, Adam with Nesterov momentum (Dozat, ICLR workshop 2016; lecture seed 003), as
/// torch.optim.NAdam computes it by default in PyTorch 1.13 (the single-tensor code, which
/// multiplies mu_t into the momentum term's product twice; PyTorch 2.0 dropped the second
/// mu_t, pytorch/pytorch#92699; see Moments.nadam):
///   g_t = grad_t + wd * theta_{t-1}
///   mu_t = b1 (1 - 0.5 * 0.96^(t psi)),   P_t = mu_1 ... mu_t
///   m_t = b1 m_{t-1} + (1 - b1) g_t,   v_t = b2 v_{t-1} + (1 - b2) g_t^2,   d_t = sqrt(v_t / (1 - b2^t)) + eps
///   theta_t = theta_{t-1} - lr (1 - mu_t) / (1 - P_t) g_t / d_t - lr mu_{t+1} / (1 - P_t mu_t mu_{t+1}) m_t / d_t
/// With psi = 0 the schedule is constant (mu = b1/2); the lecture's form (constant b1) has the
/// same structure: a gradient term and a look-ahead momentum term.
module NAdam =

    let defaults : NAdamOptions =
        { Lr = Hyper.Fixed 2e-3
          Beta1 = Hyper.Fixed 0.9
          Beta2 = Hyper.Fixed 0.999
          Eps = 1e-8
          WeightDecay = Hyper.Fixed 0.0
          MomentumDecay = 4e-3 }

    let validate (o: NAdamOptions) =
        Hyper.checkNonNegative "nadam" "lr" o.Lr
        Hyper.checkDecay "nadam" "beta1" o.Beta1
        Hyper.checkDecay "nadam" "beta2" o.Beta2
        Hyper.checkFloat "nadam" "eps" (fun v -> v > 0.0) "> 0" o.Eps
        Hyper.checkNonNegative "nadam" "weight_decay" o.WeightDecay
        Hyper.checkFloat "nadam" "momentum_decay" (fun v -> v >= 0.0 && not (System.Double.IsInfinity v)) "a finite number >= 0" o.MomentumDecay

    /// Nadam as a transformation named "nadam". Validates its options.
    let create (o: NAdamOptions) : Transformation =
        validate o
        Combine.named "nadam" 1
            [ ScaleBy.l2WeightDecay o.WeightDecay
              Moments.nadam o.Beta1 o.Beta2 o.Eps o.MomentumDecay
              ScaleBy.learningRate o.Lr ]

    let fields : Field<NAdamOptions> list =
        [ Field.hyper "lr" (fun o -> o.Lr) (fun o v -> { o with Lr = v }) "learning rate"
          Field.hyper "beta1" (fun o -> o.Beta1) (fun o v -> { o with Beta1 = v }) "decay of the first moment"
          Field.hyper "beta2" (fun o -> o.Beta2) (fun o v -> { o with Beta2 = v }) "decay of the second moment"
          Field.number "eps" (fun o -> o.Eps) (fun o v -> { o with Eps = v }) "added to the bias-corrected root of v"
          Field.hyper "weight_decay" (fun o -> o.WeightDecay) (fun o v -> { o with WeightDecay = v }) "L2 penalty added to the gradient"
          Field.number "momentum_decay" (fun o -> o.MomentumDecay) (fun o v -> { o with MomentumDecay = v }) "psi of the momentum schedule" ]

    let spec : Registration<NAdamOptions> =
        { Summary = "Nadam: Adam with Nesterov momentum"
          Source = "Dozat 2016; torch.optim.NAdam; lecture seed 003"
          Defaults = defaults
          Fields = fields
          Create = create }
