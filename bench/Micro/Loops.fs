namespace Optimizers.Micro

open TorchSharp
open Optimizers

/// One optimizer set up on its own tensors: a step, and freeing everything.
type Loop = { Step: unit -> unit; Dispose: unit -> unit }

/// The step loops the benchmarks time, memory-flat as the core's loops are: each step in its own
/// DisposeScope, the tensors a step replaces freed, then the allocator guard (Memory.afterStep).
/// They mirror fastRunner and pureRunner of src/Experiments/Bench.fs (an executable this project
/// does not reference), so a benchmark's number is the cost of one step of such a loop.
module Loop =

    let private detach (t: Tree) : Tree =
        for x in t.Values do x.DetachFromDisposeScope() |> ignore
        t

    /// A float32 tensor of this shape from N(0, scale^2), outside every DisposeScope (the caller frees it).
    let random (shape: int64[]) (scale: float) : Tensor =
        use _ = torch.NewDisposeScope()
        (Tensors.withScalar (fun t s -> t.mul s) (torch.randn shape) scale).DetachFromDisposeScope()

    /// The fast path (`Transform.stepInPlace`, as the C# facade and Run's training loop run it):
    /// the parameters' and state's own tensors are updated; a kernel-less optimizer's new state
    /// replaces the old one, which is freed.
    let inPlace (opt: Transformation) (start: Tree) (grads: Tree) : Loop =
        let p = Tree.clone start |> detach
        let mutable s = opt.Init p |> State.detachFromScopes
        { Step = fun () ->
            do
                use _ = torch.NewDisposeScope()
                let s' = Transform.stepInPlace opt grads s p |> State.detachFromScopes
                Run.disposeReplaced (State.tensors s) (State.tensors s')
                s <- s'
            Memory.afterStep ()
          Dispose = fun () -> Tree.dispose p; State.dispose s }

    /// The pure path (new parameters and state every step, as Run.optimizeWhile runs it) under
    /// no_grad: `step` is `Transform.step` (the fused kernel into new tensors when the optimizer has
    /// one; op by op otherwise) or `Transform.stepOps` (op by op, the form meta-gradients use).
    let fresh (step: Transformation -> Tree -> State -> Tree -> Tree * State) (opt: Transformation) (start: Tree) (grads: Tree) : Loop =
        let mutable p = Tree.clone start |> detach
        let mutable s = opt.Init p |> State.detachFromScopes
        { Step = fun () ->
            do
                use _ = torch.NewDisposeScope()
                use _ = torch.no_grad ()
                let p', s' = step opt grads s p
                let p' = detach p'
                let s' = State.detachFromScopes s'
                Run.disposeReplaced (Seq.append p.Values (State.tensors s)) (Seq.append p'.Values (State.tensors s'))
                p <- p'
                s <- s'
            Memory.afterStep ()
          Dispose = fun () -> Tree.dispose p; State.dispose s }
