namespace Optimizers.Micro

open System
open BenchmarkDotNet.Attributes
open TorchSharp
open Optimizers
open Optimizers.Fused
open Optimizers.Learned

/// Settings of the whole run (Program sets them from the command line before any benchmark).
module Settings =
    /// LibTorch threads, which the fused kernels use too (Kernel.forChunks), for every benchmark;
    /// None: each benchmark's own default, as `optimizers bench` has them (2 for optimizer steps,
    /// --threads; 1 for HyperAdam, --meta-threads and meta-train's default).
    let mutable threads : int option = None

/// Setup shared by the benchmarks: fixed threads, fixed seed, and every tensor freed at the end
/// of a benchmark case (BenchmarkDotNet runs GlobalSetup and GlobalCleanup once per case).
[<AbstractClass>]
type Bench() =
    let mutable loop : Loop option = None
    let owned = ResizeArray<Tensor>()
    let atCleanup = ResizeArray<unit -> unit>()

    /// Start a benchmark case: threads (`Settings.threads`, else `threads`), seed, and the loop it times.
    member _.Start(threads: int, make: unit -> Loop) =
        torch.set_num_threads (defaultArg Settings.threads threads)
        torch.manual_seed 0L |> ignore
        loop <- Some(make ())

    /// A tensor of the case (the start parameters, the gradients...), freed by `Cleanup`.
    member _.Own(t: Tensor) : Tensor =
        owned.Add t
        t

    /// Random float32 parameters and gradients of `size` elements (scales 0.01 and 0.001), owned.
    member b.Pair(size: int) : Tree * Tree =
        Tree.single "w" (b.Own(Loop.random [| int64 size |] 0.01)), Tree.single "w" (b.Own(Loop.random [| int64 size |] 0.001))

    /// Run `f` at the end of the case (to put back a global setting).
    member _.AtCleanup(f: unit -> unit) = atCleanup.Add f

    /// One step of the loop.
    member _.Step() = loop.Value.Step()

    /// Free the case's tensors and put back global settings (each class's [<GlobalCleanup>]: the
    /// attribute on this base method would count twice in BenchmarkDotNet's validation).
    member _.Cleanup() =
        loop |> Option.iter (fun l -> l.Dispose())
        loop <- None
        for t in owned do t.Dispose()
        owned.Clear()
        for f in atCleanup do f ()
        atCleanup.Clear()

/// Adam on one float32 tensor of `Size` elements (lr 1e-3, PyTorch's defaults otherwise), fixed
/// gradients: one step in place (the fused kernel over the tensors' own storage), into new tensors
/// (Transform.step under no_grad: the same kernel with Target.Fresh) and op by op
/// (Transform.stepOps: TorchSharp ops, the differentiable form).
type AdamStep() =
    inherit Bench()

    [<Params(4096, 262144, 4194304)>]
    member val Size = 0 with get, set

    member private b.Make(loop: Transformation -> Tree -> Tree -> Loop) =
        b.Start(2, fun () ->
            let p, g = b.Pair b.Size
            loop (Registry.createOptimizer "adam" [ "lr", "0.001" ]) p g)

    [<GlobalSetup(Target = "InPlace")>]
    member b.SetupInPlace() = b.Make Loop.inPlace

    [<GlobalSetup(Target = "Fresh")>]
    member b.SetupFresh() = b.Make(Loop.fresh Transform.step)

    [<GlobalSetup(Target = "Ops")>]
    member b.SetupOps() = b.Make(Loop.fresh Transform.stepOps)

    [<Benchmark(Baseline = true, Description = "in place (stepInPlace)")>]
    member b.InPlace() = b.Step()

    [<Benchmark(Description = "new tensors, fused (step)")>]
    member b.Fresh() = b.Step()

    [<Benchmark(Description = "new tensors, op by op (stepOps)")>]
    member b.Ops() = b.Step()

    [<GlobalCleanup>]
    member b.Free() = b.Cleanup()

/// The fused loop's non-temporal stores: one Adam step into new tensors (Transform.step under
/// no_grad) of `Size` elements, with `Kernel.streamBytes` at 0 (always stream the new tensors)
/// or Int64.MaxValue (never). The default threshold is 32 MB written per step.
type Streaming() =
    inherit Bench()

    [<Params(262144, 4194304, 16777216)>]
    member val Size = 0 with get, set

    [<Params(false, true)>]
    member val NonTemporal = false with get, set

    [<GlobalSetup>]
    member b.Setup() =
        let saved = Kernel.streamBytes
        Kernel.streamBytes <- (if b.NonTemporal then 0L else Int64.MaxValue)
        b.AtCleanup(fun () -> Kernel.streamBytes <- saved)
        b.Start(2, fun () ->
            let p, g = b.Pair b.Size
            Loop.fresh Transform.step (Registry.createOptimizer "adam" [ "lr", "0.001" ]) p g)

    [<Benchmark(Description = "adam, new tensors (step)")>]
    member b.Fresh() = b.Step()

    [<GlobalCleanup>]
    member b.Free() = b.Cleanup()

/// The allocator guard's cost: one `Memory.trim()` (malloc_trim(0) on glibc < 2.38, else nothing)
/// on the heap as this process has it, which after the first call has little to give back.
type Trim() =
    [<GlobalSetup>]
    member _.Setup() = torch.set_num_threads (defaultArg Settings.threads 2)

    [<Benchmark(Description = "Memory.trim()")>]
    member _.Trim() = Memory.trim ()

/// Random float32 parameters (scale 0.1) and gradients (0.01) in MlpMnist's shapes (784-20-10:
/// 15,910 coordinates in four tensors), owned by the benchmark `b`.
module MlpMnistShapes =
    let pair (b: Bench) : Tree * Tree =
        let tree scale =
            Tree.ofSeq
                [ for name, shape in [ "fc1.weight", [| 20L; 784L |]; "fc1.bias", [| 20L |]; "fc2.weight", [| 10L; 20L |]; "fc2.bias", [| 10L |] ] ->
                    name, b.Own(Loop.random shape scale) ]
        let p, g = tree 0.1, tree 0.01
        if Tree.numel p <> 15910L then failwith $"MlpMnist's shapes: {Tree.numel p} coordinates, expected 15910"
        p, g

/// One Adam and one Adam-HD step (the registry's defaults) on MlpMnist's shapes, into new tensors
/// (Transform.step under no_grad: both fused kernels), 2 threads: what the hypergradient costs
/// per step beyond Adam's update, without the training step's forward and backward passes
/// (`optimizers bench` times whole MlpMnist training steps for issue 10's target 5).
type HdStep() =
    inherit Bench()

    [<Params("adam", "adam-hd")>]
    member val Optimizer = "" with get, set

    [<GlobalSetup>]
    member b.Setup() =
        b.Start(2, fun () ->
            let p, g = MlpMnistShapes.pair b
            Loop.fresh Transform.step (Registry.createOptimizer b.Optimizer []) p g)

    [<Benchmark(Description = "one step into new tensors, 15,910 coordinates")>]
    member b.Step15910() = b.Step()

    [<GlobalCleanup>]
    member b.Free() = b.Cleanup()

/// One HyperAdam update (J = 20, hidden 20; fresh Theta from seed 0) on a tree of MlpMnist's shapes
/// (784-20-10: 15,910 coordinates), forward only: Transform.step under no_grad (a learned optimizer
/// has no fused kernel of its own; its LSTM cell and moment field are fused functions), new
/// tensors each step.
type HyperAdamStep() =
    inherit Bench()

    [<GlobalSetup>]
    member b.Setup() =
        b.Start(1, fun () ->
            let p, g = MlpMnistShapes.pair b
            let kind = Registry.findLearnedKind "hyperadam"
            let options = LearnedOptimizer.values kind []
            let theta = kind.InitTheta options 0
            for t in theta.Values do b.Own t |> ignore
            Loop.fresh Transform.step (kind.Create options theta) p g)

    [<Benchmark(Description = "hyperadam update, 15,910 coordinates")>]
    member b.Update() = b.Step()

    [<GlobalCleanup>]
    member b.Free() = b.Cleanup()
