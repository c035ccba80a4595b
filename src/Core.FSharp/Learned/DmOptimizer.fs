namespace Optimizers.Learned

open TorchSharp
open Optimizers

/// What DMoptimizer does to the gradient before its LSTM.
[<RequireQualifiedAccess>]
type Preprocess =
    /// Appendix A of the paper: two columns, a clamped log magnitude and a clamped scaled sign.
    | LogSign
    /// The raw gradient, one column.
    | Raw

/// Options of DMoptimizer.
type DmOptimizerOptions =
    { /// Units in each of the two LSTM layers.
      Hidden: int
      Preprocess: Preprocess
      /// k of the log-and-sign preprocessing.
      K: float
      /// Output scale: the update is Scale times the network's output.
      Scale: float }

/// DMoptimizer (Andrychowicz, Denil, Gomez, Hoffman, Pfau, Schaul, Shillingford and de Freitas,
/// "Learning to learn by gradient descent by gradient descent", NeurIPS 2016), one of the two
/// baselines of the HyperAdam paper: a coordinate-wise two-layer LSTM, shared across all
/// coordinates of all parameters, reads each coordinate's gradient and writes its step:
///   x_t        = preprocess(g_t)                         (per coordinate)
///   (h1, c1)_t = LSTM_1(x_t, (h1, c1)_{t-1})              (hidden H = 20)
///   (h2, c2)_t = LSTM_2(h1_t, (h2, c2)_{t-1})
///   w_t        = w_{t-1} + scale * (h2_t W + b)           (a linear output layer, then the scale)
/// Preprocessing "log-sign" (the paper's appendix A, k = 5) gives two inputs,
///   (log|g| / k, sign g)  when |g| >= e^-k,   (-1, e^k g)  otherwise,
/// written as the reference code writes it: (max(log(|g| + eps_dtype) / k, -1),
/// clamp(e^k g, -1, 1)), with eps_dtype the machine epsilon of the dtype; "none" feeds the raw
/// gradient (the reference code's "identity", used there for its quadratic problem).
///
/// Taken from the reference code google-deepmind/learning-to-learn:
///   networks.py (CoordinateWiseDeepLSTM, StandardDeepLSTM): the coordinate-wise layout, two
///     LSTM layers (20, 20) without skip connections, a linear layer to one output, the output
///     multiplied by the scale and added to the parameters;
///   preprocess.py (LogAndSign): the clamped form of the preprocessing above, with k = 5;
///   nn/gated_rnn.py (LSTM): gates i, j, f, o from one kernel over [x, h], forget bias 1;
///   nn/basic.py (create_linear_initializer): kernels *and* biases of the LSTMs and of the linear
///     layer drawn from a truncated normal with std 1 / sqrt(fan-in) (fan-in = input + hidden for
///     an LSTM, hidden for the output layer);
///   meta.py: the optimizee's gradient is an input, not differentiated through (as MetaTrain does).
/// The output scale: the reference code multiplies by 0.01 in its MNIST / CIFAR configurations
/// (util.py, meta.py's default); the HyperAdam paper's DMoptimizer baseline, run with the RNNprop
/// authors' re-implementation (vfleaking/rnnprop and ShipengWang/HyperAdam, nn_opt/deepmind.py:
/// lr = 0.1), multiplies by 0.1, the value this kind uses by default (option "scale"). That
/// re-implementation also uses k = 10 where the paper and DeepMind's code use 5 (option "k").
module DmOptimizer =

    let defaults : DmOptimizerOptions = { Hidden = 20; Preprocess = Preprocess.LogSign; K = 5.0; Scale = 0.1 }

    let validate (o: DmOptimizerOptions) =
        if o.Hidden < 1 then Tensors.invalidArg "hidden" $"dmoptimizer: hidden = {o.Hidden} is invalid; it must be >= 1"
        Hyper.checkFloat "dmoptimizer" "k" (fun v -> v > 0.0) "> 0" o.K
        Hyper.checkFloat "dmoptimizer" "scale" (fun v -> v > 0.0) "> 0" o.Scale

    let fields : Field<DmOptimizerOptions> list =
        [ Field.integer "hidden" (fun o -> o.Hidden) (fun o v -> { o with Hidden = v }) "units in each of the two LSTM layers"
          Field.word "preprocess" [ "log-sign", Preprocess.LogSign; "none", Preprocess.Raw ] (fun o -> o.Preprocess) (fun o v -> { o with Preprocess = v })
            "gradient preprocessing: log-sign (appendix A of the paper) or none (the raw gradient)"
          Field.number "k" (fun o -> o.K) (fun o v -> { o with K = v }) "k of the log-and-sign preprocessing"
          Field.number "scale" (fun o -> o.Scale) (fun o v -> { o with Scale = v }) "output scale: the update is scale times the network's output" ]

    /// The columns of the LSTM's input.
    let private inputs (o: DmOptimizerOptions) = match o.Preprocess with Preprocess.LogSign -> 2 | Preprocess.Raw -> 1

    /// Log-and-sign preprocessing of a flat gradient [n] into [n, 2] columns (log part, sign
    /// part), in the reference code's clamped form: (max(log(|g| + eps) / k, -1), clamp(e^k g, -1, 1)),
    /// eps the machine epsilon of g's dtype.
    let logAndSign (k: float) (g: Tensor) : Tensor =
        let eps = if g.dtype = torch.ScalarType.Float64 then 2.220446049250313e-16 else 1.1920928955078125e-07   // numpy's finfo(dtype).eps
        // owned Scalars (Tensors.withScalar): an implicit one can be finalized during the native call
        let logPart = Tensors.withScalar (fun x lo -> x.clamp_min lo) (torch.log(g.abs() + eps) / k) -1.0
        let signPart = Tensors.withScalar (fun x lo -> Tensors.withScalar (fun x hi -> x.clamp(lo, hi)) x 1.0) (g * exp k) -1.0
        torch.stack([| logPart; signPart |], 1L)

    /// Fresh Theta, initialised as the reference code does (truncated normal, std 1 / sqrt(fan-in),
    /// for kernels and biases alike).
    let initTheta (o: DmOptimizerOptions) (seed: int) : Tree =
        validate o
        let h, inputs = o.Hidden, inputs o
        let gen = LearnedOptimizer.generator seed
        let tn (fanIn: int) (shape: int list) = Cells.truncatedNormal gen (1.0 / sqrt (float fanIn)) shape
        Tree.ofSeq
            [ "lstm1.kernel", tn (inputs + h) [ inputs + h; 4 * h ]
              "lstm1.bias", tn (inputs + h) [ 4 * h ]
              "lstm2.kernel", tn (2 * h) [ 2 * h; 4 * h ]
              "lstm2.bias", tn (2 * h) [ 4 * h ]
              "out.w", tn h [ h; 1 ]
              "out.b", tn h [ 1 ] ]

    /// The DMoptimizer that Theta defines.
    let create (o: DmOptimizerOptions) (theta: Tree) : Transformation =
        validate o
        let h, inputs, k, scale = o.Hidden, inputs o, o.K, o.Scale
        let pre = match o.Preprocess with Preprocess.LogSign -> "log-sign" | Preprocess.Raw -> "none"
        let expect name (shape: int list) =
            let t = theta[name]
            if t.shape <> (shape |> List.map int64 |> Array.ofList) then
                Tensors.invalidArg "theta" $"dmoptimizer: meta-parameter '{name}' has shape {t.shape}, expected {shape} for hidden = {h}, preprocess = {pre}"
        expect "lstm1.kernel" [ inputs + h; 4 * h ]
        expect "lstm2.kernel" [ 2 * h; 4 * h ]
        expect "out.w" [ h; 1 ]
        let name = "dmoptimizer"
        let init (p: Tree) =
            let n = Tree.numel p
            let dtype = p.Values[0].dtype
            let z () = torch.zeros([| n; int64 h |], dtype = dtype)
            State.withSlots name [ "cells", Tree.ofSeq [ "h1", z (); "c1", z (); "h2", z (); "c2", z () ] ]
        let update (g: Tree) (s: State) (p: Tree) =
            let cells = s.Slot "cells"
            let dtype = p.Values[0].dtype
            let th (name: string) = theta[name].``to``(dtype)
            let gFlat = (Cells.flatten g).``to``(dtype)
            let x = match o.Preprocess with Preprocess.LogSign -> logAndSign k gFlat | Preprocess.Raw -> gFlat.unsqueeze(1L)
            let h1, c1 = Cells.lstm (th "lstm1.kernel") (th "lstm1.bias") 1.0 x (cells["h1"], cells["c1"])
            let h2, c2 = Cells.lstm (th "lstm2.kernel") (th "lstm2.bias") 1.0 h1 (cells["h2"], cells["c2"])
            let d = Cells.linear (th "out.w") (th "out.b") h2
            let u = LearnedOptimizer.toUpdates p (d.squeeze(1L) * scale)
            u,
            { s with
                Count = s.Count + 1
                Slots = Map.ofList [ "cells", Tree.ofSeq [ "h1", h1; "c1", c1; "h2", h2; "c2", c2 ] ] }
        Transform.create name init update

    let registration : LearnedRegistration<DmOptimizerOptions> =
        { Kind = "dmoptimizer"
          Summary = "DMoptimizer: a coordinate-wise two-layer LSTM on the log-and-sign preprocessed gradient"
          Source = "Andrychowicz et al., NeurIPS 2016 (a baseline of the HyperAdam paper)"
          Defaults = defaults
          Fields = fields
          Validate = validate
          InitTheta = initTheta
          Create = create }

    let kind : LearnedKind = LearnedRegistration.kind registration
