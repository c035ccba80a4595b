namespace Optimizers

open System
open System.Collections.Generic
open TorchSharp
open Optimizers.Tasks

/// The loss became NaN or infinite: the run diverged at `Step` (0 = the start).
exception DivergedException of Step: int * Loss: float
    with override e.Message = $"the run diverged at step {e.Step}: loss = {e.Loss}"

/// Ordinary training loops over the pure core, with flat native memory: each step runs in its
/// own DisposeScope, only the new parameters and state leave it, tensors of the previous step
/// that nothing holds any more are freed at once, and the allocator guard runs after each step.
module Run =

    /// The loss at the parameters and its gradient with respect to them (no graph kept).
    let lossAndGrad (task: Task) (step: int) (parameters: Tree) : Tensor * Tree =
        let leaves = Tree.asLeaves parameters
        let loss = task.Loss step leaves
        let grads = torch.autograd.grad([| loss |], leaves.Values)
        loss.detach(), { Names = leaves.Names; Values = Array.ofSeq grads }

    /// Free the tensors of `old` that are not among `keep` (compared by identity).
    let disposeReplaced (old: seq<Tensor>) (keep: seq<Tensor>) =
        let kept = HashSet<Tensor>(keep, HashIdentity.Reference)
        for t in old do
            if not (kept.Contains t) then t.Dispose()

    /// Run up to `steps` optimizer steps of `opt` on `task` from `start` (the caller's tensors,
    /// left untouched). `observe step loss params state` sees the start (step 0) and the
    /// parameters after every step, with the loss there and the state that produced them; the
    /// run stops early when it returns false. Raises DivergedException on a NaN or infinite
    /// loss. Returns the final parameters and state (the caller owns and disposes them).
    let optimizeWhile (task: Task) (opt: Transformation) (start: Tree) (steps: int) (observe: int -> float -> Tree -> State -> bool) : Tree * State =
        if steps < 0 then Tensors.invalidArg "steps" $"steps = {steps} is invalid; it must be >= 0"
        let mutable p = Tree.clone start |> Tree.moveToOuterScope
        let mutable s = opt.Init p |> State.moveToOuterScope
        let mutable k = 0
        let mutable go = true
        try
            while go && k <= steps do
                use scope = torch.NewDisposeScope()
                let loss, grads = lossAndGrad task k p
                let l = loss.ToDouble()
                if Double.IsNaN l || Double.IsInfinity l then raise (DivergedException(k, l))
                go <- observe k l p s
                if go && k < steps then
                    let p', s' = using (torch.no_grad()) (fun _ -> Transform.step opt grads s p)
                    let p' = Tree.moveToOuterScope p'
                    let s' = State.moveToOuterScope s'
                    disposeReplaced (Seq.append p.Values (State.tensors s)) (Seq.append p'.Values (State.tensors s'))
                    p <- p'
                    s <- s'
                k <- k + 1
                Memory.afterStep ()
            p, s
        with _ ->
            Tree.dispose p
            State.dispose s
            reraise ()

    /// `optimizeWhile` to the end.
    let optimizeObserved (task: Task) (opt: Transformation) (start: Tree) (steps: int) (observe: int -> float -> Tree -> State -> unit) : Tree * State =
        optimizeWhile task opt start steps (fun k l p s -> observe k l p s; true)

    /// `optimizeObserved` for observers that need no state.
    let optimize (task: Task) (opt: Transformation) (start: Tree) (steps: int) (observe: int -> float -> Tree -> unit) : Tree * State =
        optimizeObserved task opt start steps (fun k l p _ -> observe k l p)
