namespace Optimizers.Experiments

#nowarn "9" // native pointers: the non-temporal stores take one

open System
open System.Diagnostics
open System.Numerics
open System.Runtime.InteropServices
open System.Runtime.Intrinsics.X86
open TorchSharp
open Optimizers.Fused

/// The memory-bandwidth bound of the bench, measured honestly: the fastest of several kernels
/// that stream float32 arrays through memory (a read-only reduction, copies with ordinary and
/// with non-temporal stores, TorchSharp's copy_, triads with both stores), each timed as the best
/// of several rounds, in the same process and on the same threads as the optimizer steps. An
/// optimizer step that moves B bytes cannot take less than B / (the fastest kernel's bytes per
/// second), so a step reported below 1.0x this bound means the bound is wrong, not the step fast.
module Bandwidth =

    /// One kernel's best round: bytes it moves per element and its bandwidth.
    type Measure =
        { Name: string
          BytesPerElement: float
          BestMs: float
          /// Bytes per second of the best round.
          Rate: float }

    /// a[i] summed, Vector<float32> wide with four accumulators (one would wait on the adder's
    /// latency, not on memory): reads 4 bytes per element.
    let private sum (a: Span<float32>) : float32 =
        let av = MemoryMarshal.Cast<float32, Vector<float32>> a
        let mutable a0, a1, a2, a3 = Vector<float32>.Zero, Vector<float32>.Zero, Vector<float32>.Zero, Vector<float32>.Zero
        let quads = av.Length / 4
        for q in 0 .. quads - 1 do
            let k = 4 * q
            a0 <- a0 + av[k]
            a1 <- a1 + av[k + 1]
            a2 <- a2 + av[k + 2]
            a3 <- a3 + av[k + 3]
        for k in 4 * quads .. av.Length - 1 do a0 <- a0 + av[k]
        let mutable total = Vector.Sum((a0 + a1) + (a2 + a3))
        for i in av.Length * Vector<float32>.Count .. a.Length - 1 do total <- total + a[i]
        total

    /// o <- a (stream: non-temporal stores): 8 bytes per element.
    let private copy (stream: bool) (a: Span<float32>) (o: Span<float32>) =
        let av = MemoryMarshal.Cast<float32, Vector<float32>> a
        let ov = MemoryMarshal.Cast<float32, Vector<float32>> o
        for k in 0 .. av.Length - 1 do Kernel.store stream ov k av[k]
        for i in av.Length * Vector<float32>.Count .. a.Length - 1 do o[i] <- a[i]

    /// o <- a + s b (stream: non-temporal stores): 12 bytes per element.
    let private triad (stream: bool) (s: float32) (a: Span<float32>) (b: Span<float32>) (o: Span<float32>) =
        let av = MemoryMarshal.Cast<float32, Vector<float32>> a
        let bv = MemoryMarshal.Cast<float32, Vector<float32>> b
        let ov = MemoryMarshal.Cast<float32, Vector<float32>> o
        let sv = Vector<float32>(s)
        for k in 0 .. av.Length - 1 do Kernel.store stream ov k (av[k] + sv * bv[k])
        for i in av.Length * Vector<float32>.Count .. a.Length - 1 do o[i] <- a[i] + s * b[i]

    /// The best of `rounds` timed runs (after two untimed ones), in ms.
    let private best (rounds: int) (run: unit -> unit) : float =
        run ()
        run ()
        Array.init (max 1 rounds) (fun _ ->
            let t0 = Stopwatch.GetTimestamp()
            run ()
            Stopwatch.GetElapsedTime(t0).TotalMilliseconds)
        |> Array.min

    /// Every kernel over n float32 elements (spread over `torch.get_num_threads()` workers, in the
    /// fused kernels' chunks), each the best of `rounds`; the fastest first.
    let measure (n: int) (rounds: int) : Measure list =
        use a = torch.randn([| int64 n |])
        use b = torch.randn([| int64 n |])
        use o = torch.empty([| int64 n |])
        let partial = Array.zeroCreate<float32> (n / max 1 Kernel.chunkElements + 2)
        let over (body: int -> int -> unit) (stream: bool) () =
            Kernel.forChunks [| 0, n |] (fun _ start len ->
                body start len
                if stream then Sse.StoreFence())
        let streams = Kernel.canStream && (let bytes = o.bytes in use p = fixed bytes in NativeInterop.NativePtr.toNativeInt p % 32n = 0n)
        let kernels =
            [ yield "read (sum)", 4.0, over (fun s l -> partial[s / max 1 Kernel.chunkElements] <- sum (Kernel.span a s l)) false
              yield "copy", 8.0, over (fun s l -> copy false (Kernel.span a s l) (Kernel.span o s l)) false
              if streams then yield "copy, non-temporal stores", 8.0, over (fun s l -> copy true (Kernel.span a s l) (Kernel.span o s l)) true
              yield "copy (TorchSharp copy_)", 8.0, (fun () -> o.copy_(a) |> ignore)
              yield "triad", 12.0, over (fun s l -> triad false 0.5f (Kernel.span a s l) (Kernel.span b s l) (Kernel.span o s l)) false
              if streams then yield "triad, non-temporal stores", 12.0, over (fun s l -> triad true 0.5f (Kernel.span a s l) (Kernel.span b s l) (Kernel.span o s l)) true ]
        [ for name, bytes, run in kernels ->
            let ms = best rounds run
            { Name = name; BytesPerElement = bytes; BestMs = ms; Rate = bytes * float n / (ms / 1000.0) } ]
        |> List.sortByDescending (fun m -> m.Rate)
