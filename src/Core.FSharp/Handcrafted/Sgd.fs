namespace Optimizers.Handcrafted

open Optimizers
open Optimizers.Transforms
open Optimizers.Fused

/// Options of stochastic gradient descent (torch.optim.SGD's names and defaults).
type SgdOptions =
    { Lr: Hyper
      Momentum: Hyper
      Dampening: Hyper
      WeightDecay: Hyper
      Nesterov: bool }

/// Stochastic gradient descent with optional momentum, Nesterov momentum and L2 weight decay,
/// exactly as torch.optim.SGD (Sutskever et al. 2013 for the momentum form; the lecture seed 003,
/// "SGD with momentum" and "NAG", gives the same updates up to how lr enters the buffer):
///   g_t = grad_t + wd * theta_{t-1}
///   b_1 = g_1,   b_t = mu * b_{t-1} + (1 - dampening) * g_t
///   d_t = g_t + mu * b_t (nesterov)  |  b_t (mu > 0)  |  g_t (mu = 0)
///   theta_t = theta_{t-1} - lr * d_t
module Sgd =

    let defaults : SgdOptions =
        { Lr = Hyper.Fixed 1e-3
          Momentum = Hyper.Fixed 0.0
          Dampening = Hyper.Fixed 0.0
          WeightDecay = Hyper.Fixed 0.0
          Nesterov = false }

    /// Classical momentum: SGD with mu = 0.9.
    let momentumDefaults = { defaults with Momentum = Hyper.Fixed 0.9 }

    /// Nesterov momentum: SGD with mu = 0.9 and the Nesterov look-ahead.
    let nesterovDefaults = { momentumDefaults with Nesterov = true }

    let validate (o: SgdOptions) =
        Hyper.checkNonNegative "sgd" "lr" o.Lr
        Hyper.checkNonNegative "sgd" "momentum" o.Momentum
        Hyper.checkUnitClosed "sgd" "dampening" o.Dampening
        Hyper.checkNonNegative "sgd" "weight_decay" o.WeightDecay
        if o.Nesterov then
            Hyper.check "sgd" "momentum" (fun v -> v > 0.0) "> 0 when nesterov = true" o.Momentum
            Hyper.check "sgd" "dampening" (fun v -> v = 0.0) "0 when nesterov = true" o.Dampening

    /// SGD as a transformation named "sgd", with its fused kernel (SgdKernel) and, with momentum,
    /// its differentiable fused step (SgdGrad). Validates its options.
    let create (o: SgdOptions) : Transformation =
        validate o
        let moves =
            if Hyper.isZero o.Momentum then Transform.identity
            else ScaleBy.momentum o.Momentum o.Dampening o.Nesterov
        let wd, lr = ScaleBy.l2WeightDecay o.WeightDecay, ScaleBy.learningRate o.Lr
        let chain = Kernel.Chain("sgd", 1, [ wd; moves; lr ])
        chain.Transformation
        |> Transform.withFast [ o.Lr; o.Momentum; o.Dampening; o.WeightDecay ]
            (SgdKernel.kernel chain wd moves lr o.Lr o.Momentum o.Dampening o.WeightDecay o.Nesterov)
        |> Transform.withDifferentiable (SgdGrad.treeStep chain wd moves lr o.Lr o.Momentum o.Dampening o.WeightDecay o.Nesterov)

    /// SGD's options as the registry, the CLI, the configs and the C# facade name them; `decay`
    /// says what weight_decay does (L2 in the gradient here, decoupled for SGDW).
    let fieldsWith (decay: string) : Field<SgdOptions> list =
        [ Field.hyper "lr" (fun o -> o.Lr) (fun o v -> { o with Lr = v }) "learning rate"
          Field.hyper "momentum" (fun o -> o.Momentum) (fun o v -> { o with Momentum = v }) "momentum factor mu"
          Field.hyper "dampening" (fun o -> o.Dampening) (fun o v -> { o with Dampening = v }) "dampening of the momentum buffer"
          Field.hyper "weight_decay" (fun o -> o.WeightDecay) (fun o v -> { o with WeightDecay = v }) decay
          Field.flag "nesterov" (fun o -> o.Nesterov) (fun o v -> { o with Nesterov = v }) "Nesterov momentum" ]

    let fields = fieldsWith "L2 penalty added to the gradient"

    let spec : Registration<SgdOptions> =
        { Summary = "stochastic gradient descent"
          Source = "torch.optim.SGD; lecture seed 003"
          Defaults = defaults
          Fields = fields
          Create = create }

    /// "momentum": SGD with classical momentum 0.9.
    let momentumSpec = { spec with Summary = "SGD with classical momentum (mu = 0.9)"; Defaults = momentumDefaults }

    /// "nesterov": SGD with Nesterov momentum 0.9.
    let nesterovSpec = { spec with Summary = "SGD with Nesterov momentum (mu = 0.9)"; Defaults = nesterovDefaults }
