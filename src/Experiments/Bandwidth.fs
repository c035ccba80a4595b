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
/// with non-temporal stores, TorchSharp's copy_, triads with both stores, and in-place updates
/// with the optimizer steps' own traffic), each timed as the best
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

    /// An optimizer step's own traffic with trivial arithmetic: x_j <- 0.5 x_j + g for each of the
    /// two to four streams x given (x3, x4 may be empty), in place, g read-only. With three x's it
    /// reads and writes what the in-place Adam step does (p, m, v; g read: 28 bytes per element),
    /// with two SGD with momentum's (20), with four AMSGrad's (36). Written back where they were
    /// read, its stores need no read for ownership, which a copy into another array pays; several
    /// streams at once also keep more of the hardware prefetcher busy than a copy or a triad does.
    let private update (g: Span<float32>) (x1: Span<float32>) (x2: Span<float32>) (x3: Span<float32>) (x4: Span<float32>) =
        let gv = MemoryMarshal.Cast<float32, Vector<float32>> g
        let v1 = MemoryMarshal.Cast<float32, Vector<float32>> x1
        let v2 = MemoryMarshal.Cast<float32, Vector<float32>> x2
        let v3 = MemoryMarshal.Cast<float32, Vector<float32>> x3
        let v4 = MemoryMarshal.Cast<float32, Vector<float32>> x4
        let has3, has4 = not x3.IsEmpty, not x4.IsEmpty
        let h = Vector<float32>(0.5f)
        for k in 0 .. gv.Length - 1 do
            let gk = gv[k]
            v1[k] <- h * v1[k] + gk
            v2[k] <- h * v2[k] + gk
            if has3 then v3[k] <- h * v3[k] + gk
            if has4 then v4[k] <- h * v4[k] + gk
        for i in gv.Length * Vector<float32>.Count .. g.Length - 1 do
            x1[i] <- 0.5f * x1[i] + g[i]
            x2[i] <- 0.5f * x2[i] + g[i]
            if has3 then x3[i] <- 0.5f * x3[i] + g[i]
            if has4 then x4[i] <- 0.5f * x4[i] + g[i]

    /// The best of `rounds` timed runs (after two untimed ones), in ms.
    let private best (rounds: int) (run: unit -> unit) : float =
        run ()
        run ()
        Array.init (max 1 rounds) (fun _ ->
            let t0 = Stopwatch.GetTimestamp()
            run ()
            Stopwatch.GetElapsedTime(t0).TotalMilliseconds)
        |> Array.min

    /// Every kernel over float32 tensors of the given sizes (the timed steps' layout: the same
    /// allocations, so the same pages and the same chunks; spread over `torch.get_num_threads()`
    /// workers), each the best of `rounds`; the fastest first.
    let measure (sizes: int[]) (rounds: int) : Measure list =
        let make (f: int64[] -> torch.Tensor) = sizes |> Array.map (fun n -> f [| int64 n |])
        // the kernels' arrays, one tensor per size (the in-place update's g is a, x1..x4 b, o, c, d)
        let randn (shape: int64[]) = torch.randn(shape)
        let a, b, o, c, d = make randn, make randn, make (fun shape -> torch.empty(shape)), make randn, make randn
        try
            let n = Array.sumBy int64 sizes
            let chunk = max 1 Kernel.chunkElements
            let offsets = Array.scan (fun k (m: int) -> k + (m + chunk - 1) / chunk) 0 sizes
            let partial = Array.zeroCreate<float32> (Array.last offsets)
            let over (body: int -> int -> int -> unit) (stream: bool) () =
                Kernel.forChunks (Array.indexed sizes) (fun i start len ->
                    body i start len
                    if stream then Sse.StoreFence())
            let aligned (t: torch.Tensor) = (let bytes = t.bytes in use p = fixed bytes in NativeInterop.NativePtr.toNativeInt p % 32n = 0n)
            let streams = Kernel.canStream && Array.forall aligned o
            let kernels =
                [ yield "read (sum)", 4.0, over (fun i s l -> partial[offsets[i] + s / chunk] <- sum (Kernel.span a[i] s l)) false
                  yield "copy", 8.0, over (fun i s l -> copy false (Kernel.span a[i] s l) (Kernel.span o[i] s l)) false
                  if streams then yield "copy, non-temporal stores", 8.0, over (fun i s l -> copy true (Kernel.span a[i] s l) (Kernel.span o[i] s l)) true
                  yield "copy (TorchSharp copy_)", 8.0, (fun () -> Array.iter2 (fun (x: torch.Tensor) (y: torch.Tensor) -> x.copy_(y) |> ignore) o a)
                  yield "triad", 12.0, over (fun i s l -> triad false 0.5f (Kernel.span a[i] s l) (Kernel.span b[i] s l) (Kernel.span o[i] s l)) false
                  if streams then yield "triad, non-temporal stores", 12.0, over (fun i s l -> triad true 0.5f (Kernel.span a[i] s l) (Kernel.span b[i] s l) (Kernel.span o[i] s l)) true
                  yield "in place: read g, update 2 (SGD with momentum's traffic)", 20.0,
                        over (fun i s l -> update (Kernel.span a[i] s l) (Kernel.span b[i] s l) (Kernel.span o[i] s l) Span.Empty Span.Empty) false
                  yield "in place: read g, update 3 (Adam's traffic)", 28.0,
                        over (fun i s l -> update (Kernel.span a[i] s l) (Kernel.span b[i] s l) (Kernel.span o[i] s l) (Kernel.span c[i] s l) Span.Empty) false
                  yield "in place: read g, update 4 (AMSGrad's traffic)", 36.0,
                        over (fun i s l -> update (Kernel.span a[i] s l) (Kernel.span b[i] s l) (Kernel.span o[i] s l) (Kernel.span c[i] s l) (Kernel.span d[i] s l)) false ]
            [ for name, bytes, run in kernels ->
                let ms = best rounds run
                { Name = name; BytesPerElement = bytes; BestMs = ms; Rate = bytes * float n / (ms / 1000.0) } ]
            |> List.sortByDescending (fun m -> m.Rate)
        finally
            for ts in [ a; b; o; c; d ] do
                for t in ts do t.Dispose()

    /// Each kernel's best over two sittings of `measure` (memory bandwidth on a shared machine
    /// drifts over minutes: the bench measures before its timed steps and after every round of them).
    let merge (a: Measure list) (b: Measure list) : Measure list =
        a @ b
        |> List.groupBy (fun m -> m.Name)
        |> List.map (fun (_, ms) -> ms |> List.minBy (fun m -> m.BestMs))
        |> List.sortByDescending (fun m -> m.Rate)
