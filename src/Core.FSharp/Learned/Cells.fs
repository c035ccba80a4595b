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
    /// Computed with one sigmoid over all four gates of the contiguous pre-activation (a sigmoid
    /// or tanh of a column slice is several times slower than of a whole tensor): the forget bias
    /// is folded into the bias and the j columns of kernel and bias are doubled (exact in binary
    /// floating point), so that tanh j = 2 sigmoid(2j) - 1. The elementwise rest is LstmCell's
    /// (one autograd function for float32 CPU tensors).
    let lstm (kernel: Tensor) (bias: Tensor) (forgetBias: float) (x: Tensor) (h: Tensor, c: Tensor) : Tensor * Tensor =
        let hidden = int (c.shape[1])
        let columns (i: float) (j: float) (f: float) (o: float) =
            torch.tensor([| for v in [ i; j; f; o ] do for _ in 1 .. hidden -> v |], dtype = kernel.dtype)
        use scale = columns 1.0 2.0 1.0 1.0
        use shift = columns 0.0 0.0 forgetBias 0.0
        let b = Tensors.withScalar (fun b one -> torch.addcmul(shift, b, scale, one)) bias 1.0
        let z = linear (kernel * scale) b (torch.cat([| x; h |], 1L))
        LstmCell.apply z c

    /// n(x) W + b for n(x) = x with each column divided by its Euclidean norm over the
    /// coordinates (HyperAdam's reference code calls it batch normalisation),
    /// x / sqrt(||x_col||^2 + eps): computed as x (r W) + b with r the columns' inverse norms, so
    /// the normalised [n, k] tensor is formed neither in the forward nor in the backward pass.
    let normalizedLinear (eps: float) (w: Tensor) (b: Tensor) (x: Tensor) : Tensor =
        let r = torch.rsqrt(Tensors.addNum (x.square().sum([| 0L |])) eps)
        linear (r.unsqueeze(1L) * w) b x

    /// All tensors of a tree as one flat vector, in tree order.
    let flatten (t: Tree) : Tensor = torch.cat(t.Values |> Array.map (fun x -> x.reshape(-1L)), 0L)

    /// A flat vector cut back into the shapes of `like`.
    let unflatten (like: Tree) (flat: Tensor) : Tree =
        let sizes = like.Values |> Array.map (fun x -> x.numel())
        let parts = flat.split(sizes, 0L)
        { Names = like.Names; Values = Array.map2 (fun (p: Tensor) (x: Tensor) -> p.reshape(x.shape)) parts like.Values }
