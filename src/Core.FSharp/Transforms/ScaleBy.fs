namespace Optimizers.Transforms

open System
open TorchSharp
open Optimizers

/// The small transformations that named optimizers are chains of (optax's transform.py in our
/// words), in three modules: ScaleBy (the learning rate and its sign, weight decay, momentum,
/// schedules' decay), Moments (the Adam family's moment scalings) and Accumulators (Adagrad and
/// RMSProp). Each returns new tensors and a new state; none mutates its inputs. Hyperparameters are
/// `Hyper` used through `HValue` arithmetic, so the same code serves numbers, schedules and tensors
/// that carry gradients; where PyTorch has the optimizer the operation order follows torch.optim.
/// Tensor sums go through Tensors.add / addNum (the same native ops as `+`, without TorchSharp's
/// per-call implicit Scalars; see Tensors.withScalar).
module ScaleBy =

    /// A hyperparameter value as a 0-d tensor of the dtype and device of `like`.
    let asTensor (like: Tensor) (h: HValue) : Tensor =
        match h with
        | HValue.Num v -> torch.tensor(v, dtype = like.dtype, device = like.device)
        | HValue.Ten t -> t

    /// b ** e for a constant base and a hyperparameter exponent.
    let powBase (b: float) (e: HValue) : HValue =
        match e with
        | HValue.Num v -> HValue.Num(Math.Pow(b, v))
        | HValue.Ten t -> HValue.Ten(torch.tensor(b, dtype = t.dtype, device = t.device).pow(t))

    /// h / x element-wise (a number over a tensor), as torch.full_like(x, h).div(x).
    let divInto (h: HValue) (x: Tensor) : Tensor =
        match h with
        | HValue.Num v -> torch.full_like(x, Scalar.op_Implicit v).div(x)
        | HValue.Ten t -> t / x

    /// Clamp element-wise into [lo, hi]; differentiable in the bounds when they are tensors.
    let clampH (lo: HValue) (hi: HValue) (x: Tensor) : Tensor =
        match lo, hi with
        | HValue.Num a, HValue.Num b -> x.clamp(Scalar.op_Implicit a, Scalar.op_Implicit b)
        | _ -> x.clamp(asTensor x lo, asTensor x hi)

    /// A 0-d float64 tensor on the device of the first parameter (state scalars).
    let scalarLike (p: Tree) (v: float) : Tensor =
        let device = if p.Count > 0 then p.Values[0].device else torch.CPU
        torch.tensor(v, dtype = torch.ScalarType.Float64, device = device)



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

    /// torch.optim.Adagrad's learning-rate decay: u / (1 + k * decay) at the k-th update
    /// (k = 0, 1, ...), i.e. lr / (1 + (t - 1) * lr_decay) with t counted from 1.
    let inverseTimeDecay (decay: Hyper) : Transformation =
        counted "scale_by_inverse_time_decay" (fun k u _ ->
            let f = HValue.Num 1.0 + HValue.Num(float k) * Hyper.at k decay
            Tree.map (fun x -> x / f) u)
