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

/// Setup shared by the benchmarks: fixed threads, fixed seed, no leftover tensors.
[<AbstractClass>]
type Bench() =
    let mutable loop : Loop option = None

    /// Start a benchmark case: threads (`Settings.threads`, else `threads`), seed, and the loop it times.
    member _.Start(threads: int, make: unit -> Loop) =
        torch.set_num_threads (defaultArg Settings.threads threads)
        torch.manual_seed 0L |> ignore
        loop <- Some(make ())

    /// One step of the loop.
    member _.Step() = loop.Value.Step()

    /// Free the loop's tensors (each benchmark's [<GlobalCleanup>] calls it).
    member _.Cleanup() =
        loop |> Option.iter (fun l -> l.Dispose())
        loop <- None

/// Adam on one float32 tensor of `Size` elements (lr 1e-3, PyTorch's defaults otherwise), fixed
/// gradients: one step in place (the fused kernel over the tensors' own storage), into new tensors
/// (Transform.step under no_grad: the same kernel with Target.Fresh) and op by op
/// (Transform.stepOps: TorchSharp ops, the differentiable form).
type AdamStep() =
    inherit Bench()
    let mutable start : Tensor = null
    let mutable grad : Tensor = null

    [<Params(4096, 262144, 4194304)>]
    member val Size = 0 with get, set

    member private b.Make(loop: Transformation -> Tree -> Tree -> Loop) =
        b.Start(2, fun () ->
            start <- Loop.random [| int64 b.Size |] 0.01
            grad <- Loop.random [| int64 b.Size |] 0.001
            loop (Registry.createOptimizer "adam" [ "lr", "0.001" ]) (Tree.single "w" start) (Tree.single "w" grad))

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
    member b.Free() =
        b.Cleanup()
        start.Dispose()
        grad.Dispose()

/// The fused loop's non-temporal stores: one Adam step into new tensors (Transform.step under
/// no_grad) of `Size` elements, with `Kernel.streamBytes` at 0 (always stream the new tensors)
/// or Int64.MaxValue (never). The default threshold is 32 MB written per step.
type Streaming() =
    inherit Bench()
    let mutable start : Tensor = null
    let mutable grad : Tensor = null
    let saved = Kernel.streamBytes

    [<Params(262144, 4194304, 16777216)>]
    member val Size = 0 with get, set

    [<Params(false, true)>]
    member val NonTemporal = false with get, set

    [<GlobalSetup>]
    member b.Setup() =
        Kernel.streamBytes <- (if b.NonTemporal then 0L else Int64.MaxValue)
        b.Start(2, fun () ->
            start <- Loop.random [| int64 b.Size |] 0.01
            grad <- Loop.random [| int64 b.Size |] 0.001
            Loop.fresh Transform.step (Registry.createOptimizer "adam" [ "lr", "0.001" ]) (Tree.single "w" start) (Tree.single "w" grad))

    [<Benchmark(Description = "adam, new tensors (step)")>]
    member b.Fresh() = b.Step()

    [<GlobalCleanup>]
    member b.Free() =
        b.Cleanup()
        Kernel.streamBytes <- saved
        start.Dispose()
        grad.Dispose()

/// The allocator guard's cost: one `Memory.trim()` (malloc_trim(0) on glibc < 2.38, else nothing)
/// on the heap as this process has it, which after the first call has little to give back.
type Trim() =
    [<GlobalSetup>]
    member _.Setup() = torch.set_num_threads (defaultArg Settings.threads 2)

    [<Benchmark(Description = "Memory.trim()")>]
    member _.Trim() = Memory.trim ()

/// One HyperAdam update (J = 20, hidden 20; fresh Theta from seed 0) on a tree of MlpMnist's shapes
/// (784-20-10: 15,910 coordinates), forward only: Transform.step under no_grad, which runs the
/// update op by op (a learned optimizer has no fused kernel), new tensors each step.
type HyperAdamStep() =
    inherit Bench()
    let mutable start : Tree option = None
    let mutable grads : Tree option = None
    let mutable theta : Tree option = None

    [<GlobalSetup>]
    member b.Setup() =
        b.Start(1, fun () ->
            let tree scale =
                Tree.ofSeq
                    [ for name, shape in [ "fc1.weight", [| 20L; 784L |]; "fc1.bias", [| 20L |]; "fc2.weight", [| 10L; 20L |]; "fc2.bias", [| 10L |] ] ->
                        name, Loop.random shape scale ]
            let p, g = tree 0.1, tree 0.01
            if Tree.numel p <> 15910L then failwith $"HyperAdamStep: {Tree.numel p} coordinates, expected 15910"
            start <- Some p
            grads <- Some g
            let kind = Registry.findLearnedKind "hyperadam"
            let options = LearnedOptimizer.values kind []
            let th = kind.InitTheta options 0
            theta <- Some th
            Loop.fresh Transform.step (kind.Create options th) p g)

    [<Benchmark(Description = "hyperadam update, 15,910 coordinates")>]
    member b.Update() = b.Step()

    [<GlobalCleanup>]
    member b.Free() =
        b.Cleanup()
        start |> Option.iter Tree.dispose
        grads |> Option.iter Tree.dispose
        theta |> Option.iter Tree.dispose
