namespace Optimizers.Learned

open System
open System.Collections.Generic
open System.Numerics
open System.Runtime.CompilerServices
open TorchSharp
open Optimizers
open Optimizers.Fused
open Optimizers.Learned.Rows

/// The elementwise part of an LSTM step (TensorFlow's BasicLSTMCell, see Cells.lstm) from the
/// gates' pre-activations z [n, 4H] (columns i, j, f, o; j's doubled, the forget bias added)
/// and the cell c [n, H]:
///   c' = sigmoid(f) c + sigmoid(i) tanh(j),   h' = sigmoid(o) tanh(c')
/// with tanh j = 2 sigmoid(2j) - 1 (j's columns come doubled) and tanh c' = 2 sigmoid(2c') - 1.
/// `apply` computes it as one autograd function with a hand-written backward for float32
/// contiguous CPU tensors (op by op it is a dozen LibTorch calls forward and more backward, each
/// a pass over [n, H] that the graph keeps); `ops` is the same op by op, for every other tensor,
/// and the tests' reference. The hand-written backward pass gives first derivatives (all that
/// meta-training uses); it is not itself differentiable (create_graph warns).
module LstmCell =

    /// tanh from a sigmoid already taken at 2x: tanh x = 2 sigmoid(2x) - 1.
    let private tanhOfSigmoid2 (s: Tensor) : Tensor =
        use minusOne = torch.tensor(-1.0, dtype = s.dtype)
        Tensors.withScalar (fun t two -> minusOne.add(t, two)) s 2.0

    /// tanh x as 2 sigmoid(2x) - 1. LibTorch's CPU tanh (MKL) is about 5x slower than its
    /// sigmoid on [n, H] tensors; the identity differs from tanh by float rounding (an absolute
    /// 1e-7 in float32).
    let private tanh (x: Tensor) : Tensor = tanhOfSigmoid2 (torch.sigmoid (Tensors.withScalar (fun t two -> t.mul two) x 2.0))

    /// (h', c') op by op (differentiable by LibTorch's autograd, any dtype and device).
    let ops (z: Tensor) (c: Tensor) : Tensor * Tensor =
        // Contiguous copies of the gates: the backward pass's products over column slices run
        // without vectorisation, and copies are cheaper than that (measured: about 8% of a step).
        let gates = torch.sigmoid(z).chunk(4L, 1L) |> Array.map (fun g -> g.contiguous())
        let i, j2, f, o = gates[0], gates[1], gates[2], gates[3]
        // a + b * c with addcmul: one [n, H] tensor fewer in the graph than the sum
        let c' = Tensors.withScalar (fun a one -> torch.addcmul(a, i, tanhOfSigmoid2 j2, one)) (f * c) 1.0
        let h' = o * tanh c'
        h', c'

    // The per-element arithmetic, once for a float32 and a Vector<float32> (`one`, `two` of the
    // same type, `exp` the type's own). si, sj, sf, so: the gates' sigmoids.

    /// sigmoid(2x), from which tanh x = 2 sigmoid(2x) - 1 and its derivative 4 s (1 - s).
    let inline private sigmoid2 one two exp x = one / (one + exp (-(two * x)))

    /// Forward at one element: h', c'.
    let inline private forwardAt one two exp si sj sf so c =
        let c' = sf * c + si * (two * sj - one)
        struct (so * (two * sigmoid2 one two exp c' - one), c')

    /// Backward at one element from dh', dc': dz for the four gates, dc.
    let inline private backwardAt one two four exp si sj sf so c dh dc =
        let tj = two * sj - one
        let s2 = sigmoid2 one two exp (sf * c + si * tj)
        let tc = two * s2 - one
        let dcT = dc + dh * so * four * s2 * (one - s2)
        let dSo = dh * tc
        let dSi = dcT * tj
        let dSj = dcT * si * two
        let dSf = dcT * c
        struct (dSi * si * (one - si), dSj * sj * (one - sj), dSf * sf * (one - sf), dSo * so * (one - so), dcT * sf)

    /// Rows [r0, r1) of the forward pass: s = sigmoid(z) [n, 4H], c, h', c' [n, H].
    [<MethodImpl(MethodImplOptions.AggressiveOptimization)>]
    let private forwardRows (hidden: int) (r0: int) (r1: int) (s: Span<float32>) (c: Span<float32>) (h': Span<float32>) (c': Span<float32>) =
        let offs = offsets hidden
        let oneV, twoV = Vector<float32>.One, Vector<float32>(2.0f)
        for i in r0 .. r1 - 1 do
            let row, rr = i * hidden, i * 4 * hidden
            if offs.Length > 0 then
                for k in offs do
                    let e = row + k
                    let struct (hk, ck) =
                        forwardAt oneV twoV vexp (at s (rr + k)) (at s (rr + hidden + k)) (at s (rr + 2 * hidden + k)) (at s (rr + 3 * hidden + k)) (at c e)
                    put h' e hk
                    put c' e ck
            else
                for k in 0 .. hidden - 1 do
                    let e = row + k
                    let struct (hk, ck) =
                        forwardAt 1.0f 2.0f MathF.Exp s[rr + k] s[rr + hidden + k] s[rr + 2 * hidden + k] s[rr + 3 * hidden + k] c[e]
                    h'[e] <- hk
                    c'[e] <- ck

    /// Rows [r0, r1) of the backward pass: from dh', dc' [n, H] the gradients dz [n, 4H], dc [n, H].
    [<MethodImpl(MethodImplOptions.AggressiveOptimization)>]
    let private backwardRows (hidden: int) (r0: int) (r1: int) (s: Span<float32>) (c: Span<float32>)
                             (dh: Span<float32>) (dc: Span<float32>) (dz: Span<float32>) (dcIn: Span<float32>) =
        let offs = offsets hidden
        let oneV, twoV, fourV = Vector<float32>.One, Vector<float32>(2.0f), Vector<float32>(4.0f)
        for i in r0 .. r1 - 1 do
            let row, rr = i * hidden, i * 4 * hidden
            if offs.Length > 0 then
                for k in offs do
                    let e = row + k
                    let struct (zi, zj, zf, zo, dck) =
                        backwardAt oneV twoV fourV vexp (at s (rr + k)) (at s (rr + hidden + k)) (at s (rr + 2 * hidden + k)) (at s (rr + 3 * hidden + k))
                            (at c e) (at dh e) (at dc e)
                    put dz (rr + k) zi
                    put dz (rr + hidden + k) zj
                    put dz (rr + 2 * hidden + k) zf
                    put dz (rr + 3 * hidden + k) zo
                    put dcIn e dck
            else
                for k in 0 .. hidden - 1 do
                    let e = row + k
                    let struct (zi, zj, zf, zo, dck) =
                        backwardAt 1.0f 2.0f 4.0f MathF.Exp s[rr + k] s[rr + hidden + k] s[rr + 2 * hidden + k] s[rr + 3 * hidden + k] c[e] dh[e] dc[e]
                    dz[rr + k] <- zi
                    dz[rr + hidden + k] <- zj
                    dz[rr + 2 * hidden + k] <- zf
                    dz[rr + 3 * hidden + k] <- zo
                    dcIn[e] <- dck

    /// The autograd function. Inputs z, c; it keeps the gates' sigmoids (the size of z, which it
    /// does not keep) and c for the backward pass.
    type private Fused() =
        inherit torch.autograd.MultiTensorFunction<Fused>()

        override _.Name = "lstm_cell_pointwise"

        override _.forward(ctx: torch.autograd.AutogradContext, vars: obj[]) : List<Tensor> =
            let z, c = vars[0] :?> Tensor, vars[1] :?> Tensor
            let n, hidden = int c.shape[0], int c.shape[1]
            // not disposed here: the context takes its reference after forward returns
            let s = torch.sigmoid z
            ctx.save_for_backward(List [ s; c ])
            let h', c' = torch.empty_like c, torch.empty_like c
            forRows n hidden (fun r0 r1 -> forwardRows hidden r0 r1 (span s) (span c) (span h') (span c'))
            List [ h'; c' ]

        override _.backward(ctx: torch.autograd.AutogradContext, grads: List<Tensor>) : List<Tensor> =
            warnIfDifferentiated "lstm_cell_pointwise"
            let saved = ctx.get_saved_variables ()
            let s, c = saved[0], saved[1]
            let n, hidden = int c.shape[0], int c.shape[1]
            use _ = torch.no_grad ()
            // contiguous float32 (LibTorch may hand over expanded zeros)
            let dh, dc = grads[0].contiguous (), grads[1].contiguous ()
            let dz, dcIn = torch.empty_like s, torch.empty_like c
            forRows n hidden (fun r0 r1 -> backwardRows hidden r0 r1 (span s) (span c) (span dh) (span dc) (span dz) (span dcIn))
            List [ dz; dcIn ]

    /// Whether `apply` takes the fused function for these inputs.
    let fusable (z: Tensor) (c: Tensor) = Kernel.useSimd && Kernel.isDirect z && Kernel.isDirect c

    /// (h', c'): fused (one autograd node) for float32 contiguous CPU tensors, else `ops`.
    let apply (z: Tensor) (c: Tensor) : Tensor * Tensor =
        if fusable z c then
            let out = Fused.apply(z, c)
            out[0], out[1]
        else ops z c
