namespace Optimizers.Handcrafted

open Optimizers
open Optimizers.Transforms

/// SGDW and SGDWM: SGD (with momentum) and decoupled weight decay (Loshchilov and Hutter,
/// ICLR 2019, Algorithm 1; lecture seed 003). They take SGD's options (`SgdOptions`), with
/// `WeightDecay` decoupled from the momentum:
///   b_1 = grad_1,   b_t = mu b_{t-1} + (1 - dampening) grad_t        (torch.optim.SGD's buffer)
///   d_t = grad_t + mu b_t (nesterov)  |  b_t (mu > 0)  |  grad_t (mu = 0)
///   theta_t = theta_{t-1} - lr d_t - lr wd theta_{t-1}
/// The decay never enters the momentum buffer (against SGD's L2 weight_decay, which does). As for
/// AdamW in PyTorch, the decay is scaled by lr. The paper and the lecture keep the learning rate
/// in the buffer, m_t = mu m_{t-1} + lr g_t, theta_t = theta_{t-1} - m_t - lambda theta_{t-1}: the
/// same iterates for a constant lr, with lambda = lr * wd. With mu = 0 SGDW equals SGD with L2
/// decay: decoupling matters only when a momentum or an adaptive scaling sits between.
module Sgdw =

    /// SGDW's defaults: torch.optim.SGD's with AdamW's weight decay 1e-2.
    let defaults : SgdOptions = { Sgd.defaults with WeightDecay = Hyper.Fixed 1e-2 }

    /// SGDWM's defaults: SGDW with momentum 0.9.
    let momentumDefaults : SgdOptions = { defaults with Momentum = Hyper.Fixed 0.9 }

    let private nameOf (o: SgdOptions) = if Hyper.isZero o.Momentum then "sgdw" else "sgdwm"

    let validate (o: SgdOptions) =
        let name = nameOf o
        Hyper.checkNonNegative name "lr" o.Lr
        Hyper.checkNonNegative name "momentum" o.Momentum
        Hyper.checkUnitClosed name "dampening" o.Dampening
        Hyper.checkNonNegative name "weight_decay" o.WeightDecay
        if o.Nesterov then
            Hyper.check name "momentum" (fun v -> v > 0.0) "> 0 when nesterov = true" o.Momentum
            Hyper.check name "dampening" (fun v -> v = 0.0) "0 when nesterov = true" o.Dampening

    /// SGDW as a transformation named "sgdw" (momentum 0) or "sgdwm". Validates its options.
    let create (o: SgdOptions) : Transformation =
        validate o
        let moves =
            if Hyper.isZero o.Momentum then Transform.identity
            else ScaleBy.momentum o.Momentum o.Dampening o.Nesterov
        Combine.named (nameOf o) 1 [ moves; ScaleBy.l2WeightDecay o.WeightDecay; ScaleBy.learningRate o.Lr ]

    let spec : Registration<SgdOptions> =
        { Summary = "SGDW: SGD with decoupled weight decay"
          Source = "Loshchilov and Hutter 2019 (Algorithm 1); lecture seed 003"
          Defaults = defaults
          Fields = Sgd.fieldsWith "decoupled weight decay (scaled by lr)"
          Create = create }

    /// "sgdwm": SGDW with momentum 0.9.
    let momentumSpec = { spec with Summary = "SGDWM: SGD with momentum (mu = 0.9) and decoupled weight decay"; Defaults = momentumDefaults }
