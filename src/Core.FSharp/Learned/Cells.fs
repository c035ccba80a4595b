namespace Optimizers.Learned

open TorchSharp
open Optimizers

/// Building blocks of learned optimizers, written as functions of explicit weight tensors so
/// that a whole unrolled optimization is differentiable with respect to them. Inputs are
/// coordinate-wise: rows are the optimizee's coordinates, columns the features.
module Cells =

    /// Glorot (Xavier) uniform initialisation, TensorFlow's default for kernels.
    let glorot (gen: torch.Generator) (fanIn: int) (fanOut: int) : Tensor =
        let limit = sqrt (6.0 / float (fanIn + fanOut))
        (torch.rand([| int64 fanIn; int64 fanOut |], dtype = torch.ScalarType.Float32, generator = gen) * (2.0 * limit) - limit)

    /// TensorFlow's truncated normal initialisation: N(0, std^2) with every draw beyond two
    /// standard deviations drawn again (Sonnet's and the RNNprop code's default for weights).
    let truncatedNormal (gen: torch.Generator) (std: float) (shape: int list) : Tensor =
        let shape = shape |> List.map int64 |> Array.ofList
        let draw () = torch.randn(shape, dtype = torch.ScalarType.Float32, generator = gen)
        let mutable x = draw ()
        let mutable outside = x.abs().gt(Scalar.op_Implicit 2.0)
        while outside.any().item<bool>() do
            x <- torch.where(outside, draw (), x)
            outside <- x.abs().gt(Scalar.op_Implicit 2.0)
        x * std

    let zeros (n: int) : Tensor = torch.zeros([| int64 n |], dtype = torch.ScalarType.Float32)

    /// x W + b.
    let linear (w: Tensor) (b: Tensor) (x: Tensor) : Tensor = torch.addmm(b, x, w, 1.0f, 1.0f)

    /// x W (no bias).
    let linearNoBias (w: Tensor) (x: Tensor) : Tensor = x.matmul w

    /// One LSTM step in TensorFlow's BasicLSTMCell form (gates i, j, f, o in that order from one
    /// kernel over [x, h], forget bias added to f):
    ///   c' = sigmoid(f + forgetBias) c + sigmoid(i) tanh(j),   h' = sigmoid(o) tanh(c')
    let lstm (kernel: Tensor) (bias: Tensor) (forgetBias: float) (x: Tensor) (h: Tensor, c: Tensor) : Tensor * Tensor =
        let z = linear kernel bias (torch.cat([| x; h |], 1L))
        let gates = z.chunk(4L, 1L)
        let i, j, f, o = gates[0], gates[1], gates[2], gates[3]
        // a + b * c with addcmul: one [n, H] tensor fewer in the graph than the sum
        let c' = Tensors.withScalar (fun a one -> torch.addcmul(a, torch.sigmoid i, torch.tanh j, one)) (torch.sigmoid(f + forgetBias) * c) 1.0
        let h' = torch.sigmoid o * torch.tanh c'
        h', c'

    /// Each column divided by its Euclidean norm over the coordinates (HyperAdam's reference
    /// code calls it batch normalisation): x / sqrt(||x_col||^2 + eps).
    let normalizeColumns (eps: float) (x: Tensor) : Tensor =
        x * torch.rsqrt(x.square().sum([| 0L |], keepdim = true) + eps)

    /// All tensors of a tree as one flat vector, in tree order.
    let flatten (t: Tree) : Tensor = torch.cat(t.Values |> Array.map (fun x -> x.reshape(-1L)), 0L)

    /// A flat vector cut back into the shapes of `like`.
    let unflatten (like: Tree) (flat: Tensor) : Tree =
        let sizes = like.Values |> Array.map (fun x -> x.numel())
        let parts = flat.split(sizes, 0L)
        { Names = like.Names; Values = Array.map2 (fun (p: Tensor) (x: Tensor) -> p.reshape(x.shape)) parts like.Values }
