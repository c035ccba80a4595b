namespace Optimizers.Tasks

open System
open TorchSharp
open Optimizers
open Optimizers.Data

/// How a network task draws its initial parameters.
type InitScheme =
    /// Every parameter, biases included, from N(0, std^2): the HyperAdam paper's learners use
    /// std = 0.1 (its reference code draws all weights with initial_param_scale = 0.1); the
    /// thesis (seed 004) initialises model weights from N(0, 0.01), read here as std = 0.01.
    | Normal of std: float
    /// PyTorch's defaults for nn.Linear / nn.Conv2d / nn.LSTM: weights and biases from
    /// U(-1/sqrt(fan_in), 1/sqrt(fan_in)) (what the hypergradient paper's models got).
    | TorchDefault

    static member Parse(name: string, std: float) : InitScheme =
        match name.Trim().ToLowerInvariant() with
        | "normal" ->
            if not (std > 0.0) then Tensors.invalidArg "init_std" $"init_std = {std} is invalid; it must be > 0"
            Normal std
        | "torch" -> TorchDefault
        | other -> Tensors.invalidArg "init" $"init = '{other}' is invalid; valid: normal, torch"

/// One parameter of a network: its name, shape and fan-in (inputs feeding each output unit).
type ParamSpec =
    { Name: string
      Shape: int64[]
      FanIn: int64 }

    member s.Numel = s.Shape |> Array.fold (*) 1L

/// A network written functionally over a parameter tree (no nn.Module state), so that its loss
/// can be differentiated through unrolled optimizer steps: `Forward params input` gives the
/// outputs (logits for classifiers).
type Network =
    { Name: string
      Params: ParamSpec list
      Forward: Tree -> Tensor -> Tensor }

    member n.ParameterCount = n.Params |> List.sumBy (fun p -> p.Numel)

/// Functional layers and parameter initialisation for the network tasks. Weight layouts follow
/// PyTorch (linear [out, in], convolution [out, in, k, k]), so a tree matches the named
/// parameters of the equivalent TorchSharp module.
module Layers =

    type private F = torch.nn.functional

    /// Parameters of a fully connected layer: "<name>.weight" [out, in], "<name>.bias" [out].
    let linearSpec (name: string) (inputs: int) (outputs: int) : ParamSpec list =
        [ { Name = name + ".weight"; Shape = [| int64 outputs; int64 inputs |]; FanIn = int64 inputs }
          { Name = name + ".bias"; Shape = [| int64 outputs |]; FanIn = int64 inputs } ]

    /// Parameters of a k x k convolution: "<name>.weight" [out, in, k, k], "<name>.bias" [out].
    let convSpec (name: string) (inputs: int) (outputs: int) (k: int) : ParamSpec list =
        let fanIn = int64 (inputs * k * k)
        [ { Name = name + ".weight"; Shape = [| int64 outputs; int64 inputs; int64 k; int64 k |]; FanIn = fanIn }
          { Name = name + ".bias"; Shape = [| int64 outputs |]; FanIn = fanIn } ]

    /// Initial parameters, drawn in float64 from one stream of `Rng.Of [seed; ...]` in the order of
    /// the specs (so the values do not depend on dtype or device), then converted.
    let init (scheme: InitScheme) (specs: ParamSpec list) (ti: TaskInit) : Tree =
        let rng = Rng.Of [ int64 ti.Seed; 0x1417L ]
        specs
        |> List.map (fun s ->
            let n = int s.Numel
            let values =
                match scheme with
                | Normal std -> Array.init n (fun _ -> std * rng.Normal())
                | TorchDefault ->
                    let bound = 1.0 / sqrt (float s.FanIn)
                    Array.init n (fun _ -> rng.Uniform(-bound, bound))
            s.Name, Task.tensorOf values s.Shape ti.Dtype ti.Device)
        |> Tree.ofSeq

    /// x W^T + b with the layer's parameters from the tree.
    let linear (p: Tree) (name: string) (x: Tensor) : Tensor = F.linear(x, p[name + ".weight"], p[name + ".bias"])

    /// A stride-1 convolution with 'SAME' padding (odd kernel sizes).
    let convSame (p: Tree) (name: string) (x: Tensor) : Tensor =
        let w = p[name + ".weight"]
        let pad = w.shape[2] / 2L
        F.conv2d(x, w, p[name + ".bias"], padding = [| pad; pad |])

    /// Max pooling with TensorFlow's 'SAME' padding: output size ceil(n / stride); the padding
    /// (-infinity, so it never wins) goes to the bottom and right when it is odd, as in TF.
    let maxPoolSame (k: int) (stride: int) (x: Tensor) : Tensor =
        let padFor (n: int64) =
            let out = (n + int64 stride - 1L) / int64 stride
            let total = max 0L ((out - 1L) * int64 stride + int64 k - n)
            total / 2L, total - total / 2L
        let top, bottom = padFor x.shape[2]
        let left, right = padFor x.shape[3]
        let x = if top + bottom + left + right = 0L then x else F.pad(x, [| left; right; top; bottom |], value = Double.NegativeInfinity)
        F.max_pool2d(x, [| int64 k; int64 k |], strides = [| int64 stride; int64 stride |])

    /// Local response normalisation as TensorFlow's tf.nn.lrn with the CIFAR-10 tutorial's
    /// settings (depth_radius 4, bias 1, alpha 0.001 / 9, beta 0.75):
    /// x_c / (1 + 0.001/9 * sum_{|c'-c| <= 4} x_c'^2)^0.75. PyTorch's form divides alpha by the
    /// window size (9), hence alpha = 0.001 here.
    let lrn (x: Tensor) : Tensor = F.local_response_norm(x, 9L, alpha = 0.001, beta = 0.75, k = 1.0)

    /// The activations of the MLP tasks, by name.
    let activationNames = [ "sigmoid"; "relu"; "elu"; "tanh" ]

    let activation (name: string) : Tensor -> Tensor =
        match name.Trim().ToLowerInvariant() with
        | "sigmoid" -> fun x -> x.sigmoid()
        | "relu" -> fun x -> x.relu()
        | "elu" -> fun x -> Tensors.elu x 1.0
        | "tanh" -> fun x -> x.tanh()
        | other -> Tensors.invalidArg "activation" $"activation '{other}' is invalid; valid: {Tensors.commas activationNames}"
