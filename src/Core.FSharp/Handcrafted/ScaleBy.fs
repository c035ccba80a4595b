namespace Optimizers.Handcrafted

open TorchSharp
open Optimizers

/// The small transformations that named optimizers are chains of. Each returns new tensors and
/// a new state; none mutates its inputs. Tensor sums go through Tensors.add / addNum (the same
/// native ops as `+`, without TorchSharp's per-call implicit Scalars; see Tensors.withScalar).
module ScaleBy =

    /// A stateless-in-tensors transformation that still counts steps, so its hyperparameters
    /// may be schedules: `f step updates params` gives the new updates.
    let counted (name: string) (f: int -> Tree -> Tree -> Tree) : Transformation =
        Transform.create name (fun _ -> State.empty name) (fun u s p ->
            f s.Count u p, { s with Count = s.Count + 1 })

    /// The learning-rate step, the one place where the sign is applied:  u <- -lr * u.
    let learningRate (lr: Hyper) : Transformation =
        counted "scale_by_learning_rate" (fun t u _ ->
            let a = Hyper.at t lr
            Tree.map (fun x -> HValue.Num -1.0 * a * x) u)

    /// L2 regularisation in the gradient (PyTorch's `weight_decay` of SGD and Adam):
    /// u <- u + wd * theta. Left out exactly when wd is a plain 0.
    let l2WeightDecay (weightDecay: Hyper) : Transformation =
        counted "add_decayed_weights" (fun t u p ->
            if Hyper.isZero weightDecay then u
            else
                let wd = Hyper.at t weightDecay
                Tree.map2 (fun g w -> Tensors.add g (wd * w)) u p)

    /// Momentum as torch.optim.SGD keeps it:
    ///   b_1 = g_1,  b_t = mu * b_{t-1} + (1 - dampening) * g_t
    ///   out = g_t + mu * b_t  (Nesterov)   or   b_t  (classical)
    let momentum (mu: Hyper) (dampening: Hyper) (nesterov: bool) : Transformation =
        let name = "trace_momentum"
        let init p = State.withSlots name [ "momentum_buffer", Tree.zerosLike p ]
        let update (u: Tree) (s: State) (_: Tree) =
            let m = Hyper.at s.Count mu
            let buf' =
                if s.Count = 0 then Tree.map (fun g -> g.clone()) u
                else
                    let keep = 1.0 - Hyper.at s.Count dampening
                    Tree.map2 (fun b g -> Tensors.add (m * b) (keep * g)) (s.Slot "momentum_buffer") u
            let out = if nesterov then Tree.map2 (fun g b -> Tensors.add g (m * b)) u buf' else buf'
            out, { s with Count = s.Count + 1; Slots = Map.ofList [ "momentum_buffer", buf' ] }
        Transform.create name init update

    /// Adam's moment scaling (Kingma and Ba 2015, in torch.optim.Adam's operation order):
    ///   m_t = b1 m_{t-1} + (1 - b1) g_t,   v_t = b2 v_{t-1} + (1 - b2) g_t^2
    ///   out = (m_t / (1 - b1^t)) / (sqrt(v_t) / sqrt(1 - b2^t) + eps)
    /// With epsRoot > 0 the denominator is sqrt(v_t / (1 - b2^t) + epsRoot) + eps (optax's
    /// eps_root), whose derivative stays finite at v = 0 when meta-differentiating.
    let adamMoments (beta1: Hyper) (beta2: Hyper) (eps: float) (epsRoot: float) : Transformation =
        let name = "scale_by_adam"
        let init p = State.withSlots name [ "exp_avg", Tree.zerosLike p; "exp_avg_sq", Tree.zerosLike p ]
        let update (u: Tree) (s: State) (_: Tree) =
            let t = s.Count + 1
            let b1 = Hyper.at s.Count beta1
            let b2 = Hyper.at s.Count beta2
            let bc1 = 1.0 - HValue.pow t b1
            let bc2 = 1.0 - HValue.pow t b2
            let m' = Tree.map2 (fun m g -> Tensors.add (b1 * m) ((1.0 - b1) * g)) (s.Slot "exp_avg") u
            let v' = Tree.map2 (fun v g -> Tensors.add (b2 * v) ((1.0 - b2) * (g * g))) (s.Slot "exp_avg_sq") u
            let out =
                Tree.map2 (fun m v ->
                    let denom =
                        if epsRoot = 0.0 then Tensors.addNum (v.sqrt() / HValue.sqrt bc2) eps
                        else Tensors.addNum (Tensors.safeSqrt epsRoot (v / bc2)) eps
                    (m / denom) / bc1) m' v'
            out, { s with Count = t; Slots = Map.ofList [ "exp_avg", m'; "exp_avg_sq", v' ] }
        Transform.create name init update
