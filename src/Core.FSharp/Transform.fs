namespace Optimizers

open TorchSharp

/// A gradient transformation: a pair of pure functions in the manner of optax.
///   Init params                 -> the initial state
///   Update updates state params -> (new updates, new state)
/// `updates` are the incoming gradients (or the output of the previous transformation of a
/// chain); neither function mutates its inputs, so a run is a differentiable expression.
/// A named optimizer is a chain of small transformations ending in the learning-rate step;
/// `applyUpdates` adds the final updates to the parameters.
type Transformation =
    { /// The name, stored in the state's Kind and in saved files.
      Name: string
      /// The version of the state layout, stored in saved files and checked on load.
      Version: int
      Init: Tree -> State
      Update: Tree -> State -> Tree -> Tree * State }

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
          Update = fun u s p -> checkKind name s; update u s p }

    /// A transformation without state: `f updates params` gives the new updates.
    let stateless (name: string) (f: Tree -> Tree -> Tree) : Transformation =
        create name (fun _ -> State.empty name) (fun u s p -> f u p, s)

    /// Leaves updates unchanged.
    let identity : Transformation = stateless "identity" (fun u _ -> u)

    /// params + updates (no_grad is the caller's choice: keep the graph when differentiating).
    let applyUpdates (parameters: Tree) (updates: Tree) : Tree = Tree.map2 (fun p u -> p + u) parameters updates

    /// One optimizer step: transform the gradients, then apply them. Returns new params and state.
    let step (t: Transformation) (grads: Tree) (state: State) (parameters: Tree) : Tree * State =
        let updates, state' = t.Update grads state parameters
        applyUpdates parameters updates, state'
