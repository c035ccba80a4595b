namespace Optimizers.Handcrafted

open Optimizers
open Optimizers.Transforms
open Optimizers.Fused

/// Options of Adagrad (torch.optim.Adagrad's names and defaults).
type AdagradOptions =
    { Lr: Hyper
      /// The learning rate at step t is lr / (1 + (t - 1) * lr_decay).
      LrDecay: Hyper
      /// L2 regularisation added to the gradient.
      WeightDecay: Hyper
      /// The starting value of the sum of squared gradients.
      InitialAccumulatorValue: float
      /// Added to the square root of the sum (outside the root, as in PyTorch).
      Eps: float }

/// Adagrad (Duchi, Hazan and Singer, JMLR 2011; lecture seed 003), exactly as torch.optim.Adagrad:
///   g_t = grad_t + wd * theta_{t-1}
///   s_t = s_{t-1} + g_t^2,   s_0 = initial_accumulator_value
///   theta_t = theta_{t-1} - lr / (1 + (t - 1) * lr_decay) * g_t / (sqrt(s_t) + eps)
/// The lecture's form eta / sqrt(sum_i g_i^2) is this with lr_decay = 0 and eps -> 0.
module Adagrad =

    let defaults : AdagradOptions =
        { Lr = Hyper.Fixed 1e-2
          LrDecay = Hyper.Fixed 0.0
          WeightDecay = Hyper.Fixed 0.0
          InitialAccumulatorValue = 0.0
          Eps = 1e-10 }

    let validate (o: AdagradOptions) =
        Hyper.checkNonNegative "adagrad" "lr" o.Lr
        Hyper.checkNonNegative "adagrad" "lr_decay" o.LrDecay
        Hyper.checkNonNegative "adagrad" "weight_decay" o.WeightDecay
        Hyper.checkFloat "adagrad" "initial_accumulator_value" (fun v -> v >= 0.0 && not (System.Double.IsInfinity v)) "a finite number >= 0" o.InitialAccumulatorValue
        Hyper.checkFloat "adagrad" "eps" (fun v -> v > 0.0) "> 0" o.Eps

    /// Adagrad as a transformation named "adagrad", with its fused kernel (AdagradKernel) and its
    /// differentiable fused step (AdagradGrad). Validates its options.
    let create (o: AdagradOptions) : Transformation =
        validate o
        let wd, sums = ScaleBy.l2WeightDecay o.WeightDecay, Accumulators.adagrad o.InitialAccumulatorValue o.Eps
        let decay = if Hyper.isZero o.LrDecay then Transform.identity else ScaleBy.inverseTimeDecay o.LrDecay
        let lr = ScaleBy.learningRate o.Lr
        let chain = Kernel.Chain("adagrad", 1, [ wd; sums; decay; lr ])
        chain.Transformation
        |> Transform.withFast [ o.Lr; o.LrDecay; o.WeightDecay ] (AdagradKernel.kernel chain wd sums decay lr o.Lr o.LrDecay o.WeightDecay o.Eps)
        |> Transform.withDifferentiable (AdagradGrad.treeStep chain wd sums decay lr o.Lr o.LrDecay o.WeightDecay o.Eps)

    let fields : Field<AdagradOptions> list =
        [ Field.hyper "lr" (fun o -> o.Lr) (fun o v -> { o with Lr = v }) "learning rate"
          Field.hyper "lr_decay" (fun o -> o.LrDecay) (fun o v -> { o with LrDecay = v }) "learning rate decay: lr / (1 + (t - 1) lr_decay)"
          Field.hyper "weight_decay" (fun o -> o.WeightDecay) (fun o v -> { o with WeightDecay = v }) "L2 penalty added to the gradient"
          Field.number "initial_accumulator_value" (fun o -> o.InitialAccumulatorValue) (fun o v -> { o with InitialAccumulatorValue = v }) "start of the sum of squares"
          Field.number "eps" (fun o -> o.Eps) (fun o v -> { o with Eps = v }) "added to the root of the sum" ]

    let spec : Registration<AdagradOptions> =
        { Summary = "Adagrad: per-coordinate steps scaled by the root of the summed squared gradients"
          Source = "Duchi et al. 2011; torch.optim.Adagrad; lecture seed 003"
          Defaults = defaults
          Fields = fields
          Create = create }
