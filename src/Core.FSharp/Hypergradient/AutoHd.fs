namespace Optimizers.Hypergradient

open System
open TorchSharp
open Optimizers

/// One hyperparameter adapted online by its hypergradient.
type AdaptedHyper =
    { /// The name the optimizer builder looks it up by (e.g. "lr", "beta1").
      Name: string
      Initial: float
      /// The step size of its own gradient descent (beta).
      HypergradLr: Hyper
      /// Projection after each step: the value is clamped into [Low, High].
      Low: float
      High: float }

/// Hypergradients of any hyperparameter by automatic differentiation (beyond the seeds; in the
/// spirit of Chandra et al., "Gradient Descent: The Ultimate Optimizer", NeurIPS 2022).
///
/// Given a builder `make : hyperparameter tensors by name -> Transformation`, the hypergradient of
/// hyperparameter eta at step t is h_t = g_t . d u_{t-1} / d eta, where u_{t-1} is the previous
/// update as a function of eta with its inputs (gradient, state, parameters of step t-1) held
/// fixed: exactly the quantity the closed forms of `Hd` compute by hand. It is obtained by
/// recomputing u_{t-1} with eta as a leaf requiring grad and one vector-Jacobian product with
/// g_t. Then eta_t = clamp(eta_{t-1} - beta h_t, Low, High) and the model step uses eta_t.
///
/// The state holds plain tensors only (the current and previous inner states, the previous
/// gradient and parameters, the hyperparameter values), so it saves, detaches and moves like any
/// other. Because the result is itself a Transformation whose update is differentiable in each
/// beta (given as Hyper.Learnable), levels stack: `stack` adapts the betas of one level by another.
module AutoHd =

    let private hyperTensor (v: float) = torch.tensor(v, dtype = torch.ScalarType.Float64)

    /// Wrap the optimizer built by `make` so that each hyperparameter in `adapted` learns online.
    let create (name: string) (make: Map<string, Tensor> -> Transformation) (adapted: AdaptedHyper list) : Transformation =
        if List.isEmpty adapted then Tensors.invalidArg "adapt" $"{name}: no hyperparameter to adapt; name at least one (e.g. lr)"
        for a in adapted do
            Hyper.checkNonNegative name $"hypergrad_lr of {a.Name}" a.HypergradLr
            if not (a.Low <= a.Initial && a.Initial <= a.High) then
                Tensors.invalidArg a.Name $"{name}: {a.Name} = {a.Initial} is outside its range [{a.Low}, {a.High}]"
        let values (s: State) = adapted |> List.map (fun a -> a.Name, s.Scalar a.Name) |> Map.ofList
        // Validate the builder once with the initial values: bad inner options fail at construction.
        let probe = make (adapted |> List.map (fun a -> a.Name, hyperTensor a.Initial) |> Map.ofList)
        let init (p: Tree) =
            let inner = probe.Init p
            { State.empty name with
                Scalars =
                    Map.ofList
                        [ for a in adapted do
                              yield a.Name, hyperTensor a.Initial
                              yield "hypergrad_" + a.Name, hyperTensor 0.0 ]
                Slots = Map.ofList [ "prev_grads", Tree.zerosLike p; "prev_params", Tree.clone p ]
                Children = [ inner; inner ] }
        let update (g: Tree) (s: State) (p: Tree) =
            let current, previous = s.Children[0], s.Children[1]
            let hyper = values s
            // h_t for every adapted hyperparameter (zero at the first step: there is no u_0).
            let h =
                if s.Count = 0 then adapted |> List.map (fun a -> a.Name, hyperTensor 0.0) |> Map.ofList
                else
                    use _ = torch.enable_grad()
                    let leaves = hyper |> Map.map (fun _ v -> v.detach().requires_grad_(true))
                    let uPrev, _ = (make leaves).Update (s.Slot "prev_grads") previous (s.Slot "prev_params")
                    let names = adapted |> List.map (fun a -> a.Name) |> Array.ofList
                    let grads =
                        torch.autograd.grad(uPrev.Values, names |> Array.map (fun n -> leaves[n]), grad_outputs = g.Values, allow_unused = true)
                    // A non-finite hypergradient (d sqrt(v)/d beta2 where a coordinate's v is 0)
                    // leaves its hyperparameter unchanged for that step.
                    Array.zip names (Array.ofSeq grads)
                    |> Array.map (fun (n, d) ->
                        n, (if isNull d then hyperTensor 0.0 else let d = d.detach() in torch.where(torch.isfinite d, d, torch.zeros_like d)))
                    |> Map.ofArray
            let hyper' =
                adapted
                |> List.map (fun a ->
                    let beta = Hyper.at s.Count a.HypergradLr
                    a.Name, (HValue.Ten hyper[a.Name] - beta * HValue.Ten h[a.Name] |> function
                             | HValue.Ten t -> t.clamp(Tensors.scalar a.Low, Tensors.scalar a.High)
                             | HValue.Num v -> hyperTensor (Math.Clamp(v, a.Low, a.High))))
                |> Map.ofList
            let u, next = (make hyper').Update g current p
            u,
            { s with
                Count = s.Count + 1
                Scalars =
                    Map.ofList
                        [ for a in adapted do
                              yield a.Name, hyper'[a.Name]
                              yield "hypergrad_" + a.Name, h[a.Name] ]
                Slots = Map.ofList [ "prev_grads", g; "prev_params", p ]
                Children = [ next; current ] }
        Transform.create name init update

    /// The valid range of a hyperparameter by its conventional name, for projection.
    let rangeOf (name: string) : float * float =
        match name with
        | "beta1" | "beta2" | "momentum" | "dampening" -> 0.0, 1.0 - 1e-6
        | _ -> 0.0, Double.PositiveInfinity

    /// An adapted hyperparameter with the conventional range of its name.
    let adapt (name: string) (initial: float) (hypergradLr: Hyper) : AdaptedHyper =
        let lo, hi = rangeOf name
        { Name = name; Initial = initial; HypergradLr = hypergradLr; Low = lo; High = hi }

    /// Two stacked levels: level 1 adapts `adapted` of the optimizer built by `make` with
    /// hypergradient learning rates beta_j; level 2 adapts each beta_j by its own hypergradient
    /// with step size `level2Lr` (so the learning rate's learning rate is learned too).
    let stack (name: string) (make: Map<string, Tensor> -> Transformation) (adapted: AdaptedHyper list) (level2Lr: Hyper) : Transformation =
        let betaName (a: AdaptedHyper) = "hypergrad_lr_" + a.Name
        let betaInitial (a: AdaptedHyper) =
            match a.HypergradLr with
            | Hyper.Fixed v -> v
            | _ -> Tensors.invalidArg (betaName a) $"{name}: a stacked level needs a plain number as the initial {betaName a}"
        let level1 (betas: Map<string, Tensor>) =
            create (name + "/level1") make [ for a in adapted -> { a with HypergradLr = Hyper.Learnable betas[betaName a] } ]
        create name level1 [ for a in adapted -> adapt (betaName a) (betaInitial a) level2Lr ]
