namespace Optimizers.Handcrafted

open Optimizers
open Optimizers.Transforms

/// Options of AdaBound and AMSBound (the reference implementation's names and defaults).
type AdaBoundOptions =
    { /// Adam's learning rate (inside the clip).
      Lr: Hyper
      Beta1: Hyper
      Beta2: Hyper
      /// The SGD learning rate both bounds converge to.
      FinalLr: Hyper
      /// How fast the bounds close in on final_lr.
      Gamma: Hyper
      /// Added to sqrt(v) before the bias correction (the reference implementation's placement).
      Eps: float
      /// L2 regularisation added to the gradient.
      WeightDecay: Hyper
      /// Use the running maximum of v (AMSBound).
      AmsBound: bool }

/// AdaBound and AMSBound (Luo, Xiong, Liu and Sun, ICLR 2019; lecture seed 003), transcribing
/// the authors' reference implementation (github.com/Luolc/AdaBound, adabound.py):
///   g_t = grad_t + wd * theta_{t-1}
///   m_t = b1 m_{t-1} + (1 - b1) g_t,   v_t = b2 v_{t-1} + (1 - b2) g_t^2   (AMSBound: v_t <- max(v_{t-1}, v_t))
///   eta_t = lr sqrt(1 - b2^t) / (1 - b1^t) / (sqrt(v_t) + eps)
///   f_t = final_lr * lr_t / lr_0                       (final_lr follows a scheduled lr, as in the reference)
///   eta_t <- clip(eta_t, f_t (1 - 1 / (gamma t + 1)), f_t (1 + 1 / (gamma t)))
///   theta_t = theta_{t-1} - eta_t m_t
/// The lecture writes Clip(eta / sqrt(vhat_t + eps)) mhat_t with 1 - b2 in place of gamma; the
/// reference code differs in three details that we follow: eps is added outside the root of the
/// uncorrected v, the first-moment bias correction 1 / (1 - b1^t) sits inside the clip, and gamma
/// is its own option (1e-3, which is 1 - b2 for b2 = 0.999). The learning rate is inside the
/// clip, so the chain ends with the sign flip alone (ScaleBy.learningRate 1).
module AdaBound =

    let defaults : AdaBoundOptions =
        { Lr = Hyper.Fixed 1e-3
          Beta1 = Hyper.Fixed 0.9
          Beta2 = Hyper.Fixed 0.999
          FinalLr = Hyper.Fixed 0.1
          Gamma = Hyper.Fixed 1e-3
          Eps = 1e-8
          WeightDecay = Hyper.Fixed 0.0
          AmsBound = false }

    /// AMSBound's defaults: AdaBound's with the running maximum of v.
    let amsboundDefaults = { defaults with AmsBound = true }

    /// The bounds (lower, upper) on the effective learning rate at step t >= 1, with final_lr f.
    let bounds (finalLr: float) (gamma: float) (t: int) : float * float =
        let lo, hi = Moments.adaboundBounds (HValue.Num finalLr) (HValue.Num gamma) t
        HValue.toFloat lo, HValue.toFloat hi

    let validate (o: AdaBoundOptions) =
        let name = if o.AmsBound then "amsbound" else "adabound"
        Hyper.checkPositive name "lr" o.Lr
        Hyper.checkDecay name "beta1" o.Beta1
        Hyper.checkDecay name "beta2" o.Beta2
        Hyper.checkNonNegative name "final_lr" o.FinalLr
        Hyper.checkDecay name "gamma" o.Gamma
        Hyper.checkFloat name "eps" (fun v -> v > 0.0) "> 0" o.Eps
        Hyper.checkNonNegative name "weight_decay" o.WeightDecay

    /// AdaBound as a transformation named "adabound" ("amsbound" when AmsBound). Validates its options.
    let create (o: AdaBoundOptions) : Transformation =
        validate o
        Combine.named (if o.AmsBound then "amsbound" else "adabound") 1
            [ ScaleBy.l2WeightDecay o.WeightDecay
              Moments.adabound o.Lr o.Beta1 o.Beta2 o.FinalLr o.Gamma o.Eps o.AmsBound
              ScaleBy.learningRate (Hyper.Fixed 1.0) ]

    let fields : Field<AdaBoundOptions> list =
        [ Field.hyper "lr" (fun o -> o.Lr) (fun o v -> { o with Lr = v }) "Adam's learning rate"
          Field.hyper "beta1" (fun o -> o.Beta1) (fun o v -> { o with Beta1 = v }) "decay of the first moment"
          Field.hyper "beta2" (fun o -> o.Beta2) (fun o v -> { o with Beta2 = v }) "decay of the second moment"
          Field.hyper "final_lr" (fun o -> o.FinalLr) (fun o v -> { o with FinalLr = v }) "the SGD learning rate the bounds converge to"
          Field.hyper "gamma" (fun o -> o.Gamma) (fun o v -> { o with Gamma = v }) "convergence speed of the bounds"
          Field.number "eps" (fun o -> o.Eps) (fun o v -> { o with Eps = v }) "added to sqrt(v)"
          Field.hyper "weight_decay" (fun o -> o.WeightDecay) (fun o v -> { o with WeightDecay = v }) "L2 penalty added to the gradient" ]

    let spec : Registration<AdaBoundOptions> =
        { Summary = "AdaBound: Adam's per-coordinate learning rate clipped into bounds that close in on final_lr"
          Source = "Luo et al. 2019; reference implementation github.com/Luolc/AdaBound; lecture seed 003"
          Defaults = defaults
          Fields = fields
          Create = create }

    /// "amsbound": AdaBound with AMSGrad's running maximum.
    let amsboundSpec = { spec with Summary = "AMSBound: AdaBound with AMSGrad's running maximum"; Defaults = amsboundDefaults }
