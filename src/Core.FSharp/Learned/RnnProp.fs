namespace Optimizers.Learned

open TorchSharp
open Optimizers

/// Options of RNNprop.
type RnnPropOptions =
    { /// Units of the input FC layer and of each of the two LSTM layers.
      Hidden: int
      /// Step size: the update is -Lr tanh(output).
      Lr: float
      /// Decay rates of the inputs' first and second moments.
      Beta1: float
      Beta2: float
      /// Added to sqrt(v-hat) before dividing.
      Eps: float }

/// RNNprop (Lv, Jiang and Li, "Learning Gradient Descent: Better Generalization and Longer
/// Horizons", ICML 2017), one of the two baselines of the HyperAdam paper: a coordinate-wise
/// RNN, shared across all coordinates of all parameters, whose inputs are Adam-normalised so
/// that it never sees the gradient's scale:
///   m_t = beta1 m_{t-1} + (1 - beta1) g_t,   v_t = beta2 v_{t-1} + (1 - beta2) g_t^2   (from 0)
///   s_t = sqrt(v_t / (1 - beta2^t)) + eps
///   x_t = [g_t / s_t,  (m_t / (1 - beta1^t)) / s_t]                 (two inputs per coordinate)
///   a_t = ELU(x_t W_in + b_in)                                       (FC to H = 20, ELU alpha 1)
///   (h1, c1)_t = LSTM_1(a_t, (h1, c1)_{t-1}),  (h2, c2)_t = LSTM_2(h1_t, (h2, c2)_{t-1})
///   w_t = w_{t-1} - lr * tanh(h2_t W_out + b_out)                    (|step| < lr per coordinate)
/// Scaling every gradient by c > 0 scales m by c and s_t - eps by c, so the inputs, the state and
/// the update are unchanged up to eps.
///
/// Taken from the reference code vfleaking/rnnprop (nn_opt/rnn.py, RNNpropModel), also the base
/// of the HyperAdam authors' code (ShipengWang/HyperAdam, adamLSTM/nn_opt/rnn.py, the same model):
///   beta1 = beta2 = 0.95, eps = 1e-8 added outside the square root, lr = 0.1; the input order
///   [g / s, m-hat / s]; one FC layer of 20 units with ELU before a MultiRNNCell of two
///   LSTMCell(20); an FC to one output, tanh, times lr, subtracted from the parameters;
///   nn_opt/__init__.py (BasicNNOptModel): FC weights from a truncated normal with std 0.1 and
///   zero biases.
/// The LSTM layers are TensorFlow's LSTMCell without peepholes (gates i, j, f, o from one kernel
/// over [x, h], forget bias 1); their kernels take TensorFlow 1.x's default initialiser,
/// Glorot uniform, and zero biases, as in the HyperAdam authors' TensorFlow 1.x code (RNNprop's
/// own code predates TensorFlow 1.0, whose default was a uniform unit-scaling initialiser).
/// The meta-training tricks of the paper (random scaling, a convex term) are Meta.Tricks.
module RnnProp =

    let defaults : RnnPropOptions = { Hidden = 20; Lr = 0.1; Beta1 = 0.95; Beta2 = 0.95; Eps = 1e-8 }

    let validate (o: RnnPropOptions) =
        if o.Hidden < 1 then Tensors.invalidArg "hidden" $"rnnprop: hidden = {o.Hidden} is invalid; it must be >= 1"
        Hyper.checkFloat "rnnprop" "lr" (fun v -> v > 0.0) "> 0" o.Lr
        Hyper.checkFloat "rnnprop" "beta1" (fun v -> v >= 0.0 && v < 1.0) "in [0, 1)" o.Beta1
        Hyper.checkFloat "rnnprop" "beta2" (fun v -> v >= 0.0 && v < 1.0) "in [0, 1)" o.Beta2
        Hyper.checkFloat "rnnprop" "eps" (fun v -> v > 0.0) "> 0" o.Eps

    let fields : Field<RnnPropOptions> list =
        [ Field.integer "hidden" (fun o -> o.Hidden) (fun o v -> { o with Hidden = v }) "units of the input FC layer and of each of the two LSTM layers"
          Field.number "lr" (fun o -> o.Lr) (fun o v -> { o with Lr = v }) "step size: the update is -lr * tanh(output)"
          Field.number "beta1" (fun o -> o.Beta1) (fun o v -> { o with Beta1 = v }) "decay rate of the first moment of the inputs"
          Field.number "beta2" (fun o -> o.Beta2) (fun o v -> { o with Beta2 = v }) "decay rate of the second moment of the inputs"
          Field.number "eps" (fun o -> o.Eps) (fun o v -> { o with Eps = v }) "added to sqrt(v-hat) before dividing" ]

    /// Fresh Theta: FC layers from a truncated normal with std 0.1 and zero biases (the reference
    /// code's BasicNNOptModel), LSTM kernels Glorot uniform with zero biases (TensorFlow 1.x's).
    let initTheta (o: RnnPropOptions) (seed: int) : Tree =
        validate o
        let h = o.Hidden
        let gen = LearnedOptimizer.generator seed
        Tree.ofSeq
            [ "in.w", Cells.truncatedNormal gen 0.1 [ 2; h ]
              "in.b", Cells.zeros h
              "lstm1.kernel", Cells.glorot gen (2 * h) (4 * h)
              "lstm1.bias", Cells.zeros (4 * h)
              "lstm2.kernel", Cells.glorot gen (2 * h) (4 * h)
              "lstm2.bias", Cells.zeros (4 * h)
              "out.w", Cells.truncatedNormal gen 0.1 [ h; 1 ]
              "out.b", Cells.zeros 1 ]

    /// The Adam-normalised inputs [g / s, m-hat / s] ([n, 2]) and the new moments, for a flat
    /// gradient column g [n, 1] at step t (from 1).
    let inputs (beta1: float) (beta2: float) (eps: float) (t: int) (g: Tensor) (m: Tensor) (v: Tensor) =
        let m' = beta1 * m + (1.0 - beta1) * g
        let v' = beta2 * v + (1.0 - beta2) * g.square()
        let s = (v' / (1.0 - beta2 ** float t)).sqrt() + eps
        torch.cat([| g / s; (m' / (1.0 - beta1 ** float t)) / s |], 1L), m', v'

    /// The RNNprop optimizer that Theta defines.
    let create (o: RnnPropOptions) (theta: Tree) : Transformation =
        validate o
        let h, lr, beta1, beta2, eps = o.Hidden, o.Lr, o.Beta1, o.Beta2, o.Eps
        let expect name (shape: int list) =
            let t = theta[name]
            if t.shape <> (shape |> List.map int64 |> Array.ofList) then
                Tensors.invalidArg "theta" $"rnnprop: meta-parameter '{name}' has shape {t.shape}, expected {shape} for hidden = {h}"
        expect "in.w" [ 2; h ]
        expect "lstm1.kernel" [ 2 * h; 4 * h ]
        expect "lstm2.kernel" [ 2 * h; 4 * h ]
        expect "out.w" [ h; 1 ]
        let name = "rnnprop"
        let init (p: Tree) =
            let n = Tree.numel p
            let dtype = p.Values[0].dtype
            let z (cols: int) = torch.zeros([| n; int64 cols |], dtype = dtype)
            State.withSlots name [ "cells", Tree.ofSeq [ "m", z 1; "v", z 1; "h1", z h; "c1", z h; "h2", z h; "c2", z h ] ]
        let update (g: Tree) (s: State) (p: Tree) =
            let cells = s.Slot "cells"
            let dtype = p.Values[0].dtype
            let th (name: string) = theta[name].``to``(dtype)
            let gFlat = (Cells.flatten g).``to``(dtype).unsqueeze(1L)
            let x, m, v = inputs beta1 beta2 eps (s.Count + 1) gFlat cells["m"] cells["v"]
            let a = Tensors.elu (Cells.linear (th "in.w") (th "in.b") x) 1.0
            let h1, c1 = Cells.lstm (th "lstm1.kernel") (th "lstm1.bias") 1.0 a (cells["h1"], cells["c1"])
            let h2, c2 = Cells.lstm (th "lstm2.kernel") (th "lstm2.bias") 1.0 h1 (cells["h2"], cells["c2"])
            let d = torch.tanh(Cells.linear (th "out.w") (th "out.b") h2)
            let u = LearnedOptimizer.toUpdates p (d.squeeze(1L) * -lr)
            u,
            { s with
                Count = s.Count + 1
                Slots = Map.ofList [ "cells", Tree.ofSeq [ "m", m; "v", v; "h1", h1; "c1", c1; "h2", h2; "c2", c2 ] ] }
        Transform.create name init update

    let registration : LearnedRegistration<RnnPropOptions> =
        { Kind = "rnnprop"
          Summary = "RNNprop: a coordinate-wise two-layer LSTM on Adam-normalised gradients, step lr * tanh"
          Source = "Lv, Jiang and Li, ICML 2017 (a baseline of the HyperAdam paper)"
          Defaults = defaults
          Fields = fields
          Validate = validate
          InitTheta = initTheta
          Create = create }

    let kind : LearnedKind = LearnedRegistration.kind registration
