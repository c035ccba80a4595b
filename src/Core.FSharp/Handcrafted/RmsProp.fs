namespace Optimizers.Handcrafted

open Optimizers
open Optimizers.Transforms
open Optimizers.Fused

/// Options of RMSProp (torch.optim.RMSprop's names and defaults).
type RmsPropOptions =
    { Lr: Hyper
      /// The decay rate of the mean square (the lecture's alpha).
      Alpha: Hyper
      /// Added to the root mean square, outside the square root (PyTorch's eps).
      Eps: float
      /// L2 regularisation added to the gradient.
      WeightDecay: Hyper
      /// Momentum on the scaled gradient (0: none).
      Momentum: Hyper
      /// Divide by an estimate of the variance (mean square minus squared mean) instead.
      Centered: bool }

/// RMSProp (Hinton, Srivastava and Swersky, lecture 6e, 2012; lecture seed 003), exactly as
/// torch.optim.RMSprop:
///   g_t = grad_t + wd * theta_{t-1}
///   v_t = alpha v_{t-1} + (1 - alpha) g_t^2                          (v_0 = 0)
///   centered: gbar_t = alpha gbar_{t-1} + (1 - alpha) g_t,  d_t = sqrt(v_t - gbar_t^2) + eps
///   otherwise d_t = sqrt(v_t) + eps
///   momentum > 0: b_t = momentum b_{t-1} + g_t / d_t (b_0 = 0),  theta_t = theta_{t-1} - lr b_t
///   otherwise theta_t = theta_{t-1} - lr g_t / d_t
/// The lecture starts v_1 = g_0^2; PyTorch starts from v_0 = 0, which we follow.
module RmsProp =

    let defaults : RmsPropOptions =
        { Lr = Hyper.Fixed 1e-2
          Alpha = Hyper.Fixed 0.99
          Eps = 1e-8
          WeightDecay = Hyper.Fixed 0.0
          Momentum = Hyper.Fixed 0.0
          Centered = false }

    let validate (o: RmsPropOptions) =
        Hyper.checkNonNegative "rmsprop" "lr" o.Lr
        Hyper.checkDecay "rmsprop" "alpha" o.Alpha
        Hyper.checkFloat "rmsprop" "eps" (fun v -> v > 0.0) "> 0" o.Eps
        Hyper.checkNonNegative "rmsprop" "weight_decay" o.WeightDecay
        Hyper.checkNonNegative "rmsprop" "momentum" o.Momentum

    /// RMSProp as a transformation named "rmsprop", with its fused kernel (RmsPropKernel) and, not
    /// centered, its differentiable fused step (RmsPropGrad). Validates its options.
    let create (o: RmsPropOptions) : Transformation =
        validate o
        let wd, rms = ScaleBy.l2WeightDecay o.WeightDecay, Accumulators.rmsprop o.Alpha o.Eps o.Centered
        let moves = if Hyper.isZero o.Momentum then Transform.identity else ScaleBy.momentum o.Momentum (Hyper.Fixed 0.0) false
        let lr = ScaleBy.learningRate o.Lr
        let chain = Kernel.Chain("rmsprop", 1, [ wd; rms; moves; lr ])
        chain.Transformation
        |> Transform.withFast [ o.Lr; o.Alpha; o.Momentum; o.WeightDecay ]
            (RmsPropKernel.kernel chain wd rms moves lr o.Lr o.Alpha o.Eps o.WeightDecay o.Momentum o.Centered)
        |> Transform.withDifferentiable (RmsPropGrad.treeStep chain wd rms moves lr o.Lr o.Alpha o.Eps o.WeightDecay o.Momentum o.Centered)

    let fields : Field<RmsPropOptions> list =
        [ Field.hyper "lr" (fun o -> o.Lr) (fun o v -> { o with Lr = v }) "learning rate"
          Field.hyper "alpha" (fun o -> o.Alpha) (fun o v -> { o with Alpha = v }) "decay of the mean square"
          Field.number "eps" (fun o -> o.Eps) (fun o v -> { o with Eps = v }) "added to the root mean square"
          Field.hyper "weight_decay" (fun o -> o.WeightDecay) (fun o v -> { o with WeightDecay = v }) "L2 penalty added to the gradient"
          Field.hyper "momentum" (fun o -> o.Momentum) (fun o v -> { o with Momentum = v }) "momentum on the scaled gradient"
          Field.flag "centered" (fun o -> o.Centered) (fun o v -> { o with Centered = v }) "divide by the estimated standard deviation" ]

    let spec : Registration<RmsPropOptions> =
        { Summary = "RMSProp: steps scaled by a running root mean square of the gradients"
          Source = "Hinton et al. 2012; torch.optim.RMSprop; lecture seed 003"
          Defaults = defaults
          Fields = fields
          Create = create }
