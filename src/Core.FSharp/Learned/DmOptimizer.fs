namespace Optimizers.Learned

open TorchSharp
open Optimizers

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

    let options : OptionSpec list =
        [ { Name = "hidden"; Type = Integer; Default = "20"; Doc = "units in each of the two LSTM layers" }
          { Name = "preprocess"; Type = Word; Default = "log-sign"; Doc = "gradient preprocessing: log-sign (appendix A of the paper) or none (the raw gradient)" }
          { Name = "k"; Type = Number; Default = "5"; Doc = "k of the log-and-sign preprocessing" }
          { Name = "scale"; Type = Number; Default = "0.1"; Doc = "output scale: the update is scale times the network's output" } ]

    /// The preprocessings, as the option names them.
    let preprocessings = [ "log-sign"; "none" ]

    /// Log-and-sign preprocessing of a flat gradient [n] into [n, 2] columns (log part, sign
    /// part), in the reference code's clamped form: (max(log(|g| + eps) / k, -1), clamp(e^k g, -1, 1)),
    /// eps the machine epsilon of g's dtype.
    let logAndSign (k: float) (g: Tensor) : Tensor =
        let eps = if g.dtype = torch.ScalarType.Float64 then 2.220446049250313e-16 else 1.1920928955078125e-07   // numpy's finfo(dtype).eps
        let logPart = (torch.log(g.abs() + eps) / k).clamp_min(Scalar.op_Implicit -1.0)
        let signPart = (g * exp k).clamp(Scalar.op_Implicit -1.0, Scalar.op_Implicit 1.0)
        torch.stack([| logPart; signPart |], 1L)

    let private settings (o: OptionValues) =
        let h = o.Int "hidden"
        if h < 1 then Tensors.invalidArg "hidden" $"dmoptimizer: hidden = {h} is invalid; it must be >= 1"
        let pre = o.Word("preprocess", preprocessings)
        let k = o.Float "k"
        Hyper.checkFloat "dmoptimizer" "k" (fun v -> v > 0.0) "> 0" k
        let inputs = if pre = "log-sign" then 2 else 1
        h, pre, k, inputs

    /// Fresh Theta, initialised as the reference code does (truncated normal, std 1 / sqrt(fan-in),
    /// for kernels and biases alike).
    let initTheta (o: OptionValues) (seed: int) : Tree =
        let h, _, _, inputs = settings o
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
    let create (o: OptionValues) (theta: Tree) : Transformation =
        let h, pre, k, inputs = settings o
        let scale = o.Float "scale"
        Hyper.checkFloat "dmoptimizer" "scale" (fun v -> v > 0.0) "> 0" scale
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
            let x = if pre = "log-sign" then logAndSign k gFlat else gFlat.unsqueeze(1L)
            let h1, c1 = Cells.lstm (th "lstm1.kernel") (th "lstm1.bias") 1.0 x (cells["h1"], cells["c1"])
            let h2, c2 = Cells.lstm (th "lstm2.kernel") (th "lstm2.bias") 1.0 h1 (cells["h2"], cells["c2"])
            let d = Cells.linear (th "out.w") (th "out.b") h2
            let u = LearnedOptimizer.toUpdates p (d.squeeze(1L) * scale)
            u,
            { s with
                Count = s.Count + 1
                Slots = Map.ofList [ "cells", Tree.ofSeq [ "h1", h1; "c1", c1; "h2", h2; "c2", c2 ] ] }
        Transform.create name init update

    let kind : LearnedKind =
        { Kind = "dmoptimizer"
          Summary = "DMoptimizer: a coordinate-wise two-layer LSTM on the log-and-sign preprocessed gradient"
          Source = "Andrychowicz et al., NeurIPS 2016 (a baseline of the HyperAdam paper)"
          Options = options
          InitTheta = initTheta
          Create = create }
