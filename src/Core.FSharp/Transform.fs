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
/// `Fast` is the optional fused kernel of a named optimizer (Fused/): one pass over each
/// parameter's tensors that gives the same parameters and state as `Update` + `applyUpdates`
/// (layout, counts and values), so the paths interchange and saved states load into either.
/// `Transform.stepInPlace` runs it over the parameters' and state's own tensors (the fast path of
/// ordinary training); `Transform.step` runs it into new tensors whenever no gradient has to flow
/// through the step, and otherwise its differentiable fused step where it has one (Fused/AdamGrad,
/// AdamVariantsGrad for AdamW and AMSGrad, SgdGrad, RmsPropGrad, AdagradGrad; SGD-HD's, SGDN-HD's
/// and Adam-HD's in Hypergradient/Hd; off with `Transform.fuseGradients <- false`), else `Update`
/// op by op (a differentiable expression).
/// `Transform.create` and the combinators leave it None; the kernels in Fused/ set it.
type Transformation =
    { /// The name, stored in the state's Kind and in saved files.
      Name: string
      /// The version of the state layout, stored in saved files and checked on load.
      Version: int
      Init: Tree -> State
      Update: Tree -> State -> Tree -> Tree * State
      /// The fused kernel, if the transformation has one.
      Fast: FusedKernel option
      /// The parameters a model is measured at, from the state and the parameters, where they are
      /// not the parameters themselves: Lookahead's slow weights (its authors evaluate there, and
      /// between synchronisations the fast weights are mid-excursion). None: the parameters.
      Evaluate: (State -> Tree -> Tree) option }

/// Where a fused kernel writes the new parameters and state.
and [<RequireQualifiedAccess>] Target =
    /// Over the parameters' and the state's own tensors (the fast path).
    | InPlace
    /// Into new tensors, the inputs left untouched (the pure path when nothing needs a gradient).
    | Fresh

/// A fused kernel: grads -> state -> params -> (params, state) written where the Target says,
/// and the hyperparameters it reads as plain numbers (a tensor one that requires grad makes
/// `Transform.step` differentiate op by op instead).
and FusedKernel =
    { Apply: Target -> Tree -> State -> Tree -> Tree * State
      Hypers: Hyper list
      /// The step as fused autograd functions, for when a gradient must flow through it (None
      /// where the tensors or options are ones it does not take: then `stepOps`).
      Differentiable: (Tree -> State -> Tree -> (Tree * State) option) option }

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
          Fast = None
          Evaluate = None }

    /// The parameters to measure a model at after a step (`Transformation.Evaluate`): Lookahead's
    /// slow weights, for every other optimizer the parameters themselves.
    let evaluationParams (t: Transformation) (s: State) (p: Tree) : Tree =
        match t.Evaluate with
        | Some f -> f s p
        | None -> p

    /// A transformation without state: `f updates params` gives the new updates.
    let stateless (name: string) (f: Tree -> Tree -> Tree) : Transformation =
        create name (fun _ -> State.empty name) (fun u s p -> f u p, s)

    /// Leaves updates unchanged.
    let identity : Transformation = stateless "identity" (fun u _ -> u)

    /// params + updates (no_grad is the caller's choice: keep the graph when differentiating).
    let applyUpdates (parameters: Tree) (updates: Tree) : Tree = Tree.map2 Tensors.add parameters updates

    /// One optimizer step op by op: transform the gradients, then apply them. A differentiable
    /// expression in the parameters, gradients, state and tensor hyperparameters.
    let stepOps (t: Transformation) (grads: Tree) (state: State) (parameters: Tree) : Tree * State =
        let updates, state' = t.Update grads state parameters
        applyUpdates parameters updates, state'

    /// True when autograd would record a step over these tensors and hyperparameters.
    let private needsGraph (k: FusedKernel) (grads: Tree) (state: State) (parameters: Tree) =
        let requires (x: Tensor) = x.requires_grad
        torch.is_grad_enabled ()
        && (Array.exists requires parameters.Values
            || Array.exists requires grads.Values
            || List.exists requires (State.tensors state)
            || k.Hypers |> List.exists (function Hyper.Learnable x -> x.requires_grad | _ -> false))

    /// Whether `step` takes an optimizer's differentiable fused step when a gradient flows through
    /// the step: SGD with momentum (Fused/SgdGrad), Adam (AdamGrad, with or without eps_root), AdamW
    /// with or without amsgrad and AMSGrad with or without bias correction (AdamVariantsGrad; not
    /// with eps_root), RMSProp not centered (RmsPropGrad), Adagrad (AdagradGrad) and SGD-HD (its
    /// hypergradient; its two-op model step op by op), SGDN-HD, Adam-HD with one global rate
    /// (Hd); non-contiguous tensors go op by op. On by default: their values and gradients equal
    /// stepOps' (tests, float64), each is one autograd call per step, and the bench's unroll rows
    /// time them against op by op (docs/benchmarks.md). Off: every step op by op, e.g. for second
    /// derivatives, which the hand-written backward passes do not give.
    let mutable fuseGradients = true

    /// One optimizer step: new params and state, the inputs untouched. With a fused kernel and
    /// nothing to differentiate, one pass into new tensors; otherwise `stepOps` (or, with
    /// `fuseGradients`, the optimizer's differentiable fused step where it has one).
    let step (t: Transformation) (grads: Tree) (state: State) (parameters: Tree) : Tree * State =
        match t.Fast with
        | Some k when not (needsGraph k grads state parameters) -> k.Apply Target.Fresh grads state parameters
        | Some { Differentiable = Some d } when fuseGradients ->
            match d grads state parameters with
            | Some result -> result
            | None -> stepOps t grads state parameters
        | _ -> stepOps t grads state parameters

    /// The same transformation with a fused kernel (see `Transformation`) reading `hypers`. The
    /// kernel must give the numbers and the state of `stepOps`; FastPathTests check it.
    let withFast (hypers: Hyper list) (kernel: Target -> Tree -> State -> Tree -> Tree * State) (t: Transformation) : Transformation =
        { t with Fast = Some { Apply = (fun target g s p -> checkKind t.Name s; kernel target g s p); Hypers = hypers; Differentiable = None } }

    /// The same transformation (which has a fused kernel) with a differentiable fused step, which
    /// `step` runs when a gradient must flow through the step. It must give the values and the
    /// gradients of `stepOps` (tests compare them in float64), or None for inputs it does not take.
    let withDifferentiable (d: Tree -> State -> Tree -> (Tree * State) option) (t: Transformation) : Transformation =
        match t.Fast with
        | Some k -> { t with Fast = Some { k with Differentiable = Some(fun g s p -> checkKind t.Name s; d g s p) } }
        | None -> invalidArg "t" $"'{t.Name}' has no fused kernel to add a differentiable step to"

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
        | Some k -> k.Apply Target.InPlace grads state parameters |> snd
        | None ->
            // Temporaries (the updates, intermediate results) are freed here; the new state's own
            // tensors move to the caller's scope.
            use scope = torch.NewDisposeScope()
            let updates, state' = t.Update grads state parameters
            Array.iter2 (fun (p: Tensor) (u: Tensor) -> p.add_(u) |> ignore) parameters.Values updates.Values
            let keep = HashSet<Tensor>(State.tensors state', HashIdentity.Reference)
            scope.MoveToOuter(keep |> Seq.map (fun x -> x :> System.IDisposable))
            state'
