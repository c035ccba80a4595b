namespace Optimizers

/// Transformations that wrap a whole optimizer.
module Wrappers =

    /// Lookahead (Zhang, Lucas, Hinton and Ba, NeurIPS 2019, Algorithm 1; lecture seed 003,
    /// "k step forward, 1 step back") around any transformation `inner`, under a given name.
    /// The parameters are the fast weights theta; the state holds the slow weights phi (slot
    /// "slow", phi_0 = theta_0), the step count and the inner optimizer's state (its only child):
    ///   theta' = theta + inner update                                  (every step)
    ///   every k-th step:  phi <- phi + alpha * (theta' - phi),  theta' <- phi   (fast weights reset)
    /// The returned updates take the parameters exactly there: the inner update on ordinary steps,
    /// phi_new - theta on synchronising steps. The inner state is carried over a synchronisation
    /// (not reset), as in the authors' code and Ranger. alpha in [0, 1] may be a schedule or a
    /// tensor; k >= 1. With k = 1 and alpha = 1 it is the inner optimizer (up to rounding).
    /// A model is measured at phi (`Transform.evaluationParams`), which equals theta right after a
    /// synchronisation.
    let lookaheadNamed (name: string) (k: int) (alpha: Hyper) (inner: Transformation) : Transformation =
        if k < 1 then Tensors.invalidArg "k" $"{name}: k = {k} is invalid; it must be a whole number >= 1"
        Hyper.checkUnitClosed name "alpha" alpha
        let init p = { State.withSlots name [ "slow", Tree.clone p ] with Children = [ inner.Init p ] }
        let update (g: Tree) (s: State) (p: Tree) =
            let innerState =
                match s.Children with
                | [ c ] -> c
                | cs -> Tensors.invalidArg "state" $"'{name}' expects the state of its inner optimizer as its only child, got {cs.Length}; did you call init of this same optimizer?"
            let u, innerState' = inner.Update g innerState p
            let t = s.Count + 1
            if t % k <> 0 then u, { s with Count = t; Children = [ innerState' ] }
            else
                let a = Hyper.at s.Count alpha
                let fast = Transform.applyUpdates p u
                let slow' = Tree.map2 (fun phi th -> phi + a * (th - phi)) (s.Slot "slow") fast
                let u' = Tree.map2 (fun phi th -> phi - th) slow' p
                u', { s with Count = t; Slots = Map.ofList [ "slow", slow' ]; Children = [ innerState' ] }
        // Measured at the slow weights, as the authors evaluate: between synchronisations the fast
        // weights are mid-excursion (a run of 1,000 steps with k = 6 would otherwise be judged 4
        // fast steps after its last synchronisation).
        { Transform.create name init update with Evaluate = Some(fun s _ -> s.Slot "slow") }

    /// Lookahead named "lookahead(inner name)", so a saved state records what it wrapped.
    /// The paper's usual settings are k = 5 (or 6, Ranger) and alpha = 0.5.
    let lookahead (k: int) (alpha: Hyper) (inner: Transformation) : Transformation =
        lookaheadNamed $"lookahead({inner.Name})" k alpha inner
