namespace Optimizers.Fused

#nowarn "9" // native pointers: the non-temporal store takes one

open System
open System.Collections.Generic
open System.Numerics
open System.Runtime.CompilerServices
open System.Runtime.InteropServices
open System.Runtime.Intrinsics
open System.Runtime.Intrinsics.X86
open System.Threading.Tasks
open Microsoft.FSharp.NativeInterop
open TorchSharp
open Optimizers

/// The machinery shared by the fused kernels (see `Transformation.Fast`): the fast path's in-place
/// step and the pure path's step into new tensors.
///
/// A kernel family (one file: SgdKernel, AdamKernel, ...) is three small pieces:
///   1. a single-pass loop over float32 spans, `System.Numerics.Vector<float32>` wide with a scalar
///      tail, that reads each element of the parameter, the gradient and the state slots once
///      and writes the parameter and the slots once;
///   2. the same update with TorchSharp in-place ops (mul_, add_, addcmul_, addcdiv_ with Scalars
///      made once per step), for tensors the loop cannot take: float64, non-contiguous, non-CPU;
///   3. a function from the optimizer's options, the target and the state to the two, which reads
///      hyperparameters at the step (schedules) or their value (tensors), checks the state's
///      layout, and returns the parameters and the state `Transform.stepOps` would return (counts
///      advanced, the tensors those `Outputs` gave it).
/// `run` does the dispatch: the parameters whose tensors are all direct go to the loop, in
/// cache-sized chunks spread over `torch.get_num_threads()` workers (one knob for TorchSharp and
/// us); the others go to the fallback, one DisposeScope each for its temporaries.
/// The same kernel serves both targets (Transform's `Target`): an `Outputs` hands it the tensors
/// to write, the old ones (in place) or new ones (the pure path). The loop reads the old spans and
/// writes the new ones (the same spans in place: each element is read before it is written), so
/// the pure path costs one pass too; the fallback updates in place, so `run` first copies the
/// old values into the new tensors of a parameter that goes to it.
/// A Span cannot cross threads or live in a closure, so workers get (tensor, start, length) and
/// take their own spans with `span`.
module Kernel =

    /// Elements per work item of a fused loop: 64 Ki float32 = 256 KB of each tensor, so the
    /// three to five streams of a chunk fit in a core's L2 cache (2 MB on our machines).
    let mutable chunkElements = 65536

    let private chunkSize () = max 1024 chunkElements

    /// When false, every tensor goes to the TorchSharp fallback (for benchmarks and tests).
    let mutable useSimd = true

    /// A step that writes at least this many bytes into new tensors stores them non-temporally
    /// (`store`). Below it the new values are better left in the cache for the next step to read.
    /// 32 MB: the L3 cache of our machines.
    let mutable streamBytes = 32L * 1024L * 1024L

    /// Whether `store` can stream here: AVX, and Vector<float32> of its 256 bits.
    let canStream = Avx.IsSupported && Vector<float32>.Count = 8

    /// The address of a direct tensor's first element (its storage is native: nothing moves it).
    let private address (x: Tensor) : nativeint =
        let bytes = x.bytes
        use p = fixed bytes
        NativePtr.toNativeInt p

    /// o[k] <- x; with `stream`, a non-temporal store, which does not read the line into the cache
    /// first: writing new tensors then costs about what writing in place does (a copy of 80 MB on
    /// our machines: 4.5-4.9 ms instead of 7.2-7.5). `stream` needs `canStream` and o 32-byte aligned.
    [<MethodImpl(MethodImplOptions.AggressiveInlining)>]
    let store (stream: bool) (o: Span<Vector<float32>>) (k: int) (x: Vector<float32>) =
        if stream then
            let at : nativeptr<float32> = NativePtr.ofVoidPtr (Unsafe.AsPointer(&o[k]))
            Avx.StoreAlignedNonTemporal(at, x.AsVector256())
        else o[k] <- x

    /// Whether loops writing `bytes` into new tensors (`aligned`: each starts on 32 bytes) should
    /// `store` non-temporally: at least `streamBytes` of them, and chunks of whole vectors.
    let private streamRule (bytes: int64) (aligned: bool) = canStream && aligned && chunkSize () % 8 = 0 && bytes >= streamBytes

    /// `streamRule` for new float32 tensors that a loop is about to write (the differentiable
    /// steps' outputs); false for any other dtype.
    let streams (outputs: Tensor seq) : bool =
        let outputs = Array.ofSeq outputs
        outputs |> Array.forall (fun x -> x.dtype = torch.ScalarType.Float32 && address x % 32n = 0n)
        && streamRule (outputs |> Array.sumBy (fun x -> 4L * x.numel ())) true

    /// True when the fused loop can take the tensor: float32, on the CPU, contiguous, and small
    /// enough for a Span (TorchSharp's `bytes`).
    let isDirect (t: Tensor) : bool =
        t.dtype = torch.ScalarType.Float32
        && t.device_type = DeviceType.CPU
        && t.is_contiguous ()
        && t.numel () <= int64 (Int32.MaxValue / 4)

    /// True when the tensors of one parameter (the parameter, its gradient, its slots) can all go
    /// to the fused loop together: every one direct, with the same number of elements.
    let allDirect (ts: Tensor[]) : bool =
        useSimd
        && ts |> Array.forall isDirect
        && (let n = ts[0].numel () in ts |> Array.forall (fun t -> t.numel () = n))

    /// Elements [start, start + length) of a direct tensor, as a writable span over its storage
    /// (a view, not a copy; it respects the storage offset of a narrowed tensor).
    let span (t: Tensor) (start: int) (length: int) : Span<float32> =
        MemoryMarshal.Cast<byte, float32>(t.bytes).Slice(start, length)

    /// `span` of parameter i's tensor in a slot tree that only some configurations keep
    /// (AMSGrad's maximum, a momentum buffer): empty when there is none.
    let spanAt (t: Tree option) (i: int) (start: int) (length: int) : Span<float32> =
        match t with
        | Some t -> span t.Values[i] start length
        | None -> Span<float32>.Empty

    /// Call `body index start length` over chunks of at most `chunkElements` of every (index,
    /// numel) item, in parallel on `torch.get_num_threads()` workers when there is more than one
    /// chunk's worth of work. Each element is visited exactly once, so the result does not depend
    /// on the number of workers.
    let forChunks (items: (int * int)[]) (body: int -> int -> int -> unit) =
        let chunk = chunkSize ()
        let work = List<struct (int * int * int)>()
        for i, n in items do
            let mutable s = 0
            while s < n do
                let len = min chunk (n - s)
                work.Add(struct (i, s, len))
                s <- s + len
        let total = items |> Array.sumBy (fun (_, n) -> int64 n)
        let threads = max 1 (torch.get_num_threads ())
        if threads = 1 || work.Count < 2 || total <= int64 chunk then
            for struct (i, s, l) in work do body i s l
        else
            Parallel.For(0, work.Count, ParallelOptions(MaxDegreeOfParallelism = threads), fun k ->
                let struct (i, s, l) = work[k]
                body i s l)
            |> ignore

    /// `forChunks` for loops that `store` with `stream`: each chunk ends with a store fence, since
    /// non-temporal stores are weakly ordered and another thread may read the chunk next.
    let forChunksStoring (stream: bool) (items: (int * int)[]) (body: int -> int -> int -> unit) =
        forChunks items (fun i start len ->
            body i start len
            if stream then Sse.StoreFence())

    /// `forChunksStoring` for loops that also add something up (the differentiable steps'
    /// hyperparameter gradients): `body i start length` returns the chunk's partial sum. The result
    /// is each item's sum, in the order of `items`, its chunks added in order: the same on any
    /// number of threads.
    let sumChunks (stream: bool) (items: (int * int)[]) (zero: 'S) (add: 'S -> 'S -> 'S) (body: int -> int -> int -> 'S) : 'S[] =
        let chunk = chunkSize ()
        let parts = items |> Array.map (fun (_, n) -> Array.create ((n + chunk - 1) / chunk) zero)
        let position = Dictionary<int, int>()
        items |> Array.iteri (fun k (i, _) -> position[i] <- k)
        forChunksStoring stream items (fun i start len -> parts[position[i]].[start / chunk] <- body i start len)
        parts |> Array.map (Array.fold add zero)

    /// Where a kernel writes (see Transform's `Target`): `Of tree` gives the tree to write the new
    /// values of `tree` into, the tree itself in place or new tensors of its shapes; `State` puts
    /// the new trees in place of the old in the state the kernel returns.
    type Outputs(target: Target) =
        let pairs = List<Tree * Tree>()
        let mutable bytes = 0L
        let mutable aligned = true

        /// The tree to write the new values of `t` into.
        member _.Of(t: Tree) : Tree =
            match target with
            | Target.InPlace -> t
            | Target.Fresh ->
                let t' = Tree.map (fun x -> torch.empty_like x) t
                for x in t'.Values do
                    if isDirect x then
                        bytes <- bytes + 4L * x.numel ()
                        aligned <- aligned && address x % 32n = 0n
                pairs.Add((t, t'))
                t'

        /// Whether the loops should `store` non-temporally: new tensors, aligned (chunks too), and
        /// at least `streamBytes` of them.
        member _.Stream : bool = streamRule bytes aligned

        /// (old, new) tensors of parameter i.
        member _.Copies(i: int) : (Tensor * Tensor)[] = pairs |> Seq.map (fun (a, b) -> a.Values[i], b.Values[i]) |> Array.ofSeq

        /// The state with each slot tree given to `Of` replaced by its new tree.
        member _.State(s: State) : State =
            let swap (t: Tree) =
                match pairs |> Seq.tryFind (fun (a, _) -> obj.ReferenceEquals(a, t)) with
                | Some(_, t') -> t'
                | None -> t
            let rec go (s: State) = { s with Slots = s.Slots |> Map.map (fun _ t -> swap t); Children = List.map go s.Children }
            go s

    /// The dispatch of one step: parameter i goes to `fused i start length` (in chunks, in
    /// parallel) when `allDirect (tensorsOf i)`, else to `fallback i` under no_grad in its own
    /// DisposeScope (its temporaries are freed at once; the tensors it updates in place are
    /// not in that scope and live on). `tensorsOf i` lists the tensors the kernel writes (from
    /// `out`) and the gradient; the fallback of a Fresh `out` updates copies of the old values.
    let run (out: Outputs) (count: int) (tensorsOf: int -> Tensor[]) (fused: int -> int -> int -> unit) (fallback: int -> unit) =
        let copies = Array.init count out.Copies
        let direct = Array.init count (fun i -> allDirect (Array.append (tensorsOf i) (Array.map fst copies[i])))
        let stream = out.Stream
        forChunksStoring stream [| for i in 0 .. count - 1 do if direct[i] then yield i, int ((tensorsOf i).[0].numel ()) |] fused
        if direct |> Array.exists not then
            use _ = torch.no_grad ()
            for i in 0 .. count - 1 do
                if not direct[i] then
                    for src, dst in copies[i] do dst.copy_(src) |> ignore
                    use _ = torch.NewDisposeScope()
                    fallback i

    /// Scalars for the fallback's in-place ops, made once per step and freed together.
    type Scalars() =
        let made = List<Scalar>()
        /// A Scalar holding `v` (freed with this object).
        member _.Of(v: float) : Scalar =
            let s = Tensors.scalar v
            made.Add s
            s
        interface IDisposable with
            member _.Dispose() = for s in made do s.Dispose()

    /// A hyperparameter's value at a 0-based step as a float: a schedule's value there, a tensor's
    /// current value (the fast path does not differentiate).
    let value (step: int) (h: Hyper) : float = HValue.toFloat (Hyper.at step h)

    /// The same state one step later: the count advanced, its tensors (updated in place) kept.
    let counted (s: State) : State = { s with Count = s.Count + 1 }

    /// A named optimizer built as a chain of small transformations, as its fused kernels see it:
    /// `Transformation` is the chain (`Combine.named`), and a kernel reads the state of a part by
    /// the part itself (`Of`), so the layout a kernel expects is the chain it was built with, never
    /// a list of part names or positions written a second time. A state of another optimizer or
    /// configuration fails with a message, not garbage.
    type Chain(name: string, version: int, parts: Transformation list) =
        let partArray = Array.ofList parts
        let kinds = parts |> List.map (fun t -> t.Name)

        member _.Name = name

        /// The chain as a transformation (the pure path; a kernel is added with Transform.withFast).
        member val Transformation = Combine.named name version parts

        member private _.Index(part: Transformation, s: State) : int =
            let got = s.Children |> List.map (fun c -> c.Kind)
            if got <> kinds then
                Tensors.invalidArg "state"
                    $"'{name}' (fast path) expects a state with parts [{Tensors.commas kinds}], got [{Tensors.commas got}]; pass the state made by this optimizer's init or update"
            match Array.tryFindIndex (fun t -> obj.ReferenceEquals(t, part)) partArray with
            | Some i -> i
            | None -> invalidArg "part" $"'{part.Name}' is not a part of the chain '{name}'"

        /// The state of `part` (one of the chain's parts, the same object) in a state of the chain.
        member c.Of(part: Transformation, s: State) : State = s.Children[c.Index(part, s)]

        /// A state of the chain with the state of `part` replaced by `partState`.
        member c.With(part: Transformation, partState: State, s: State) : State =
            let i = c.Index(part, s)
            { s with Children = s.Children |> List.mapi (fun j x -> if j = i then partState else x) }

        /// The chain's state one step later as its pure update leaves it: the chain and every part
        /// counted, except `Transform.identity` (stateless, it keeps its count); the tensors kept.
        member _.Stepped(s: State) : State =
            { counted s with
                Children = List.map2 (fun (t: Transformation) c -> if obj.ReferenceEquals(t, Transform.identity) then c else counted c) parts s.Children }

    /// Check that trees have the names of the parameters (as the pure path's Tree.map2 does).
    let checkNames (name: string) (parameters: Tree) (others: (string * Tree) list) =
        for what, t in others do
            if not (obj.ReferenceEquals(t.Names, parameters.Names) || t.Names = parameters.Names) then
                Tensors.invalidArg "tree"
                    $"'{name}' (fast path): the {what} have the names [{Tensors.commas t.Names}], the parameters [{Tensors.commas parameters.Names}]; gradients and state must have the names of the parameters"

    /// The gradients this thread's last hand-written backward pass returned (see `handBack`).
    let private handedBack = new Threading.ThreadLocal<List<Tensor>>(fun () -> List<Tensor>())

    /// A hand-written backward pass's result, its wrappers `finished` (saved tensors, output
    /// gradients, temporaries) disposed, and so the wrappers of the gradients this thread's
    /// previous such pass returned, which LibTorch copied as that pass returned. In the caller's
    /// DisposeScope (an unroll's) they would hold their memory to the scope's end, where LibTorch's
    /// own backward frees its tensors as it goes: every step's gradients took new memory (a T = 20
    /// unroll of a fused SGD-HD step on 1M parameters: 105,000 page faults, 2,000 with this).
    let handBack (finished: Tensor seq) (result: Tensor[]) : List<Tensor> =
        let last = handedBack.Value
        for t in last do t.Dispose()
        last.Clear()
        for t in finished do
            if not (isNull t) then t.Dispose()
        for t in result do
            if not (isNull t) then last.Add t
        List(result)

    let private warned = System.Collections.Concurrent.ConcurrentDictionary<string, bool>()

    /// Say once per message that a hand-written backward pass is being differentiated: LibTorch
    /// runs a backward pass under grad mode only for create_graph (second derivatives), which such
    /// a pass does not give.
    let warnIfDifferentiated (message: string) =
        if torch.is_grad_enabled () && warned.TryAdd(message, true) then eprintfn "warning: %s" message
