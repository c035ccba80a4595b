namespace Optimizers.Tasks

open System
open TorchSharp
open Optimizers
open Optimizers.Data

/// Options of the sine sequence-prediction task.
type SineOptions =
    { /// Stacked LSTM layers (HyperAdam's "2-layer" row uses 2).
      Layers: int
      /// Hidden units per layer.
      Hidden: int
      /// Observed points f(0) .. f(Length - 1); the target is f(Length).
      Length: int
      /// Standard deviation of the Gaussian noise on the observations (0.1; "small noise" 0.01).
      Noise: float
      BatchSize: int
      DataSeed: int
      Init: InitScheme }

    /// HyperAdam Table 2's base setting.
    static member Default = { Layers = 1; Hidden = 20; Length = 10; Noise = 0.1; BatchSize = 128; DataSeed = 0; Init = Normal 0.1 }

/// The LSTM sequence-prediction tasks of the HyperAdam paper (Table 2; its reference code's
/// SinLSTMModel): an LSTM reads f(0), ..., f(9) of f(x) = A sin(w x + phi), A ~ U(0, 10),
/// w ~ U(0, pi/2), phi ~ U(0, 2 pi), each observation with N(0, noise^2) added, and a linear
/// layer on the last hidden state predicts the noise-free f(10); the loss is the mean squared
/// error. Sequences are generated from the data seed and the step, so they are reproducible.
module Sequence =

    /// Parameters: for each layer j, "lstm{j}.wx" [in, 4H], "lstm{j}.wh" [H, 4H], "lstm{j}.b"
    /// [4H] (gates i, f, o, g), then "out.w" [H, 1], "out.b" [1], as in the reference code.
    let specs (layers: int) (hidden: int) : ParamSpec list =
        let h = int64 hidden
        [ for j in 0 .. layers - 1 do
              let inputs = if j = 0 then 1L else h
              yield { Name = $"lstm{j}.wx"; Shape = [| inputs; 4L * h |]; FanIn = h }
              yield { Name = $"lstm{j}.wh"; Shape = [| h; 4L * h |]; FanIn = h }
              yield { Name = $"lstm{j}.b"; Shape = [| 4L * h |]; FanIn = h }
          yield { Name = "out.w"; Shape = [| h; 1L |]; FanIn = h }
          yield { Name = "out.b"; Shape = [| 1L |]; FanIn = h } ]

    /// `count` sequences from `rng`: inputs [count * length] (row-major [count, length]) and the
    /// noise-free targets [count].
    let sines (rng: Rng) (count: int) (length: int) (noise: float) : float[] * float[] =
        let xs = Array.zeroCreate<float> (count * length)
        let ys = Array.zeroCreate<float> count
        for b in 0 .. count - 1 do
            let phi = rng.Uniform(0.0, 2.0 * Math.PI)
            let omega = rng.Uniform(0.0, Math.PI / 2.0)
            let a = rng.Uniform(0.0, 10.0)
            for k in 0 .. length - 1 do
                xs[b * length + k] <- a * sin (float k * omega + phi) + noise * rng.Normal()
            ys[b] <- a * sin (float length * omega + phi)
        xs, ys

    /// The prediction of the LSTM for inputs [B, length].
    let predict (layers: int) (p: Tree) (x: Tensor) : Tensor =
        let b = x.shape[0]
        let hidden = p["lstm0.wh"].shape[0]
        let zeros () = torch.zeros([| b; hidden |], dtype = x.dtype, device = x.device)
        let h = Array.init layers (fun _ -> zeros ())
        let c = Array.init layers (fun _ -> zeros ())
        for k in 0 .. int x.shape[1] - 1 do
            let mutable last = x.narrow(1, int64 k, 1L) // [B, 1]
            for j in 0 .. layers - 1 do
                let a = last.matmul(p[$"lstm{j}.wx"]) + h[j].matmul(p[$"lstm{j}.wh"]) + p[$"lstm{j}.b"]
                let gates = a.chunk(4L, 1)
                let i, f, o, g = gates[0].sigmoid(), gates[1].sigmoid(), gates[2].sigmoid(), gates[3].tanh()
                c[j] <- f * c[j] + i * g
                h[j] <- o * c[j].tanh()
                last <- h[j]
        (h[layers - 1].matmul(p["out.w"]) + p["out.b"]).squeeze(1)

    /// Examples in each evaluation split (fixed sequences drawn from the data seed).
    let evaluationCount = 1000

    /// The task; Evaluate gives the mean squared error on `evaluationCount` fixed sequences per
    /// split (no accuracies).
    let lstmSine (o: SineOptions) : Task =
        if o.Layers < 1 then Tensors.invalidArg "layers" $"lstm-sine: layers = {o.Layers} is invalid; it must be >= 1"
        if o.Hidden < 1 then Tensors.invalidArg "hidden" $"lstm-sine: hidden = {o.Hidden} is invalid; it must be >= 1"
        if o.Length < 1 then Tensors.invalidArg "length" $"lstm-sine: length = {o.Length} is invalid; it must be >= 1"
        if o.BatchSize < 1 then Tensors.invalidArg "batch_size" $"lstm-sine: batch_size = {o.BatchSize} is invalid; it must be >= 1"
        if not (o.Noise >= 0.0) then Tensors.invalidArg "noise" $"lstm-sine: noise = {o.Noise} is invalid; it must be >= 0"
        let mse (p: Tree) (xs: float[]) (ys: float[]) =
            let like = p.Values[0]
            let x = Task.tensorOf xs [| int64 ys.Length; int64 o.Length |] like.dtype like.device
            let y = torch.tensor(ys, dtype = like.dtype, device = like.device)
            (predict o.Layers p x - y).square().mean()
        let loss (step: int) (p: Tree) =
            let xs, ys = sines (Rng.Of [ int64 o.DataSeed; int64 step; 0x5135L ]) o.BatchSize o.Length o.Noise
            mse p xs ys
        let evaluate (split: Split) (p: Tree) =
            let tag = match split with Train -> 1L | Validation -> 2L | Test -> 3L
            let xs, ys = sines (Rng.Of [ int64 o.DataSeed; -tag; 0x5135L ]) evaluationCount o.Length o.Noise
            use _ = torch.no_grad()
            use _scope = torch.NewDisposeScope()
            { Loss = (mse p xs ys).ToDouble(); Top1 = None; Top2 = None; Count = evaluationCount }
        let name = if o.Layers = 1 then "lstm-sine" else $"lstm-sine ({o.Layers} layers)"
        { Name = name
          Init = Layers.init o.Init (specs o.Layers o.Hidden)
          Loss = loss
          Evaluate = Some evaluate }
