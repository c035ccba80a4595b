namespace Optimizers.Learned

open System
open System.Numerics
open System.Runtime.InteropServices
open System.Threading.Tasks
open TorchSharp
open Optimizers.Fused

/// Pieces of the fused cells' loops (MomentField, LstmCell): coordinate-wise [n, K] tensors,
/// row-major, walked a row at a time with Vector<float32>s.
module Rows =

    /// The vector at element k of a span (no bounds check: the loops keep k + W within the row).
    let inline at (s: Span<float32>) (k: int) = Vector.LoadUnsafe(&MemoryMarshal.GetReference s, unativeint k)

    /// Store a vector at element k of a span (as `at`).
    let inline put (s: Span<float32>) (k: int) (x: Vector<float32>) = Vector.StoreUnsafe(x, &MemoryMarshal.GetReference s, unativeint k)

    let vsqrt (x: Vector<float32>) = Vector.SquareRoot x
    let vexp (x: Vector<float32>) = Vector.Exp x

    /// `a` where q > 0, else `b`: for vectors lane by lane, for floats.
    let vpositive (q: Vector<float32>) (a: Vector<float32>) (b: Vector<float32>) = Vector.ConditionalSelect(Vector.GreaterThan(q, Vector<float32>.Zero), a, b)
    let fpositive (q: float32) (a: float32) (b: float32) = if q > 0.0f then a else b

    /// The column offsets of a row's vectors: 0, W, 2W, ... and, when W does not divide K, a last
    /// one at K - W overlapping the one before (its values are written twice, the same; in a
    /// row's sums the lanes already counted are masked). Empty when K < W: the loops go element
    /// by element then.
    let offsets (k: int) =
        let w = Vector<float32>.Count
        if k < w then [||]
        else
            [| for o in 0 .. w .. k - w do yield o
               if k % w <> 0 then yield k - w |]

    /// Lanes of the last offset that the one before it covered: 0 there, 1 elsewhere.
    let overlapMask (k: int) =
        let w = Vector<float32>.Count
        let seen = if k < w || k % w = 0 then 0 else w - k % w
        Vector<float32>(Array.init w (fun l -> if l < seen then 0.0f else 1.0f))

    /// `body r0 r1` over blocks of the n rows of an [n, K] problem, on torch.get_num_threads()
    /// workers when it is large enough to be worth it. Every row is one worker's, so the result
    /// does not depend on the number of workers.
    let forRows (n: int) (k: int) (body: int -> int -> unit) =
        let threads = max 1 (torch.get_num_threads ())
        if threads = 1 || n * k < 65536 then body 0 n
        else
            let blocks = 4 * threads
            let size = (n + blocks - 1) / blocks
            Parallel.For(0, blocks, ParallelOptions(MaxDegreeOfParallelism = threads), fun b ->
                let r0 = b * size
                let r1 = min n (r0 + size)
                if r0 < r1 then body r0 r1)
            |> ignore
    /// Called by a fused cell's backward pass. LibTorch runs a backward pass with gradients on only
    /// for create_graph (second derivatives); the fused cells' backward passes are not themselves
    /// differentiable, so say so once rather than let a second derivative through them be zero
    /// without a word.
    let warnIfDifferentiated (cell: string) =
        Kernel.warnIfDifferentiated $"{cell}: second derivatives (create_graph) through this fused cell are not computed (its backward pass is hand-written); use float64 tensors or set Optimizers.Fused.Kernel.useSimd <- false for the op-by-op form"

    /// All elements of a direct tensor (Kernel.isDirect) as a span over its storage.
    let span (t: torch.Tensor) = Kernel.span t 0 (int (t.numel ()))
