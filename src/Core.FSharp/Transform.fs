namespace Optimizers

open System.Collections.Generic
open TorchSharp

/// A gradient transformation: a pair of pure functions in the manner of optax.
///   Init params                 -> the initial state
///   Update updates state params -> (new updates, new state)
/// `updates` are the incoming gradients (or the output of the previous transformation of a
/// chain); neither function mutates its inputs, so a run is a differentiable expression.
/// A named optimizer is a chain of small transformations ending in the learning-rate step;
/// `applyUpdates` adds the final updates to the parameters.
///
/// `Fast` is the optional fast path for ordinary training (no meta-gradient): an in-place kernel
///   grads -> state -> params -> new state
/// that updates the parameters and the state's tensors in place under no_grad and returns a state
/// with the same layout and values as `Update`'s (counts included), so the two paths interchange
/// and saved states load into either. It gives up purity, never the numbers. `Transform.create`
/// and the combinators leave it None; the named optimizers with a kernel in Fused/ set it.
/// Use it through `Transform.stepInPlace`, which falls back to `Update` when it is None.
type Transformation =
    { /// The name, stored in the state's Kind and in saved files.
      Name: string
      /// The version of the state layout, stored in saved files and checked on load.
      Version: int
      Init: Tree -> State
      Update: Tree -> State -> Tree -> Tree * State
      /// The in-place kernel of the fast path, if the transformation has one.
      Fast: (Tree -> State -> Tree -> State) option }

module Transform =

    /// Check that a state belongs to a transformation before updating with it.
    let checkKind (name: string) (s: State) =
        if s.Kind <> name then
            Tensors.invalidArg "state"
                $"'{name}' was given the state of '{s.Kind}'; pass the state returned by this optimizer's init or update"

    /// A transformation from its name and pure functions (state layout version 1). Its update
    /// refuses a state that another transformation made.
    let create (name: string) (init: Tree -> State) (update: Tree -> State -> Tree -> Tree * State) : Transformation =
        { Name = name
          Version = 1
          Init = init
          Update = fun u s p -> checkKind name s; update u s p
          Fast = None }

    /// A transformation without state: `f updates params` gives the new updates.
    let stateless (name: string) (f: Tree -> Tree -> Tree) : Transformation =
        create name (fun _ -> State.empty name) (fun u s p -> f u p, s)

    /// Leaves updates unchanged.
    let identity : Transformation = stateless "identity" (fun u _ -> u)

    /// params + updates (no_grad is the caller's choice: keep the graph when differentiating).
    let applyUpdates (parameters: Tree) (updates: Tree) : Tree = Tree.map2 Tensors.add parameters updates

    /// One optimizer step: transform the gradients, then apply them. Returns new params and state.
    let step (t: Transformation) (grads: Tree) (state: State) (parameters: Tree) : Tree * State =
        let updates, state' = t.Update grads state parameters
        applyUpdates parameters updates, state'

    /// The same transformation with an in-place kernel for the fast path (see `Transformation`).
    /// The kernel must give the numbers and the state of `Update`; FastPathTests check it.
    let withFast (kernel: Tree -> State -> Tree -> State) (t: Transformation) : Transformation =
        { t with Fast = Some(fun g s p -> checkKind t.Name s; kernel g s p) }

    /// One optimizer step in place, for ordinary training: the parameters' tensors are updated
    /// in place under no_grad, and the new state is returned. With a kernel (`Fast`) the state's
    /// tensors are updated in place too and the returned state holds the same tensors; without
    /// one, the pure update runs and its result is added into the parameters, and the returned
    /// state holds new tensors (registered in the caller's DisposeScope, if any; the old state's
    /// tensors that it does not hold are the caller's to dispose, e.g. with Run.disposeReplaced).
    /// Either way the returned state equals the pure path's, so the paths can be mixed. The
    /// gradients are never changed. Not differentiable: use `step` to differentiate through it.
    let stepInPlace (t: Transformation) (grads: Tree) (state: State) (parameters: Tree) : State =
        use _ = torch.no_grad()
        match t.Fast with
        | Some kernel -> kernel grads state parameters
        | None ->
            // Temporaries (the updates, intermediate results) are freed here; the new state's own
            // tensors move to the caller's scope.
            use scope = torch.NewDisposeScope()
            let updates, state' = t.Update grads state parameters
            Array.iter2 (fun (p: Tensor) (u: Tensor) -> p.add_(u) |> ignore) parameters.Values updates.Values
            let keep = HashSet<Tensor>(State.tensors state', HashIdentity.Reference)
            scope.MoveToOuter(keep |> Seq.map (fun x -> x :> System.IDisposable))
            state'
