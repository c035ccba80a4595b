namespace Optimizers

open System

/// Combinators: transformations built from transformations.
module Combine =

    /// Run transformations one after another, each consuming the updates of the one before.
    /// The state holds the parts' states in order, as Children; `name` names the whole chain.
    let chainNamed (name: string) (parts: Transformation list) : Transformation =
        let n = List.length parts
        let init p = { State.empty name with Children = parts |> List.map (fun t -> t.Init p) }
        let update u (s: State) p =
            if s.Children.Length <> n then
                Tensors.invalidArg "state"
                    $"'{name}' chains {n} transformations but its state has {s.Children.Length} parts; did you call init of this same optimizer?"
            let u', states =
                List.zip parts s.Children
                |> List.fold (fun (u, acc) (t, st) ->
                    let u', st' = t.Update u st p
                    u', st' :: acc) (u, [])
            u', { s with Count = s.Count + 1; Children = List.rev states }
        // A chain is measured where its parts say, in order (a Lookahead part: at its slow weights).
        let evaluate =
            if parts |> List.forall (fun t -> t.Evaluate.IsNone) then None
            else Some(fun (s: State) p -> List.fold2 (fun p (t: Transformation) st -> Transform.evaluationParams t st p) p parts s.Children)
        { Transform.create name init update with Evaluate = evaluate }

    /// Chain under a name made of the parts' names.
    let chain (parts: Transformation list) : Transformation =
        let name = "chain(" + String.Join(", ", parts |> List.map (fun t -> t.Name)) + ")"
        chainNamed name parts

    /// A named optimizer: a chain of small transformations under the optimizer's own name and
    /// state layout version, so saved files and wiring errors speak of "adam", not of its parts.
    let named (name: string) (version: int) (parts: Transformation list) : Transformation =
        { chainNamed name parts with Version = version }

    /// What `maskedWith` does to the parameters its predicate leaves out.
    [<RequireQualifiedAccess>]
    type MaskedOut =
        /// Their incoming updates go through unchanged (optax's `masked`).
        | PassThrough
        /// Their update is zero: they are frozen.
        | Zero

    /// Apply `inner` only to the parameters whose names satisfy `predicate`; the others get what
    /// `others` says. The inner transformation sees (and keeps state for) the selected parameters
    /// only, so e.g. its moments are never allocated for the others. The state's only child is the
    /// inner state. The selection is by name and fixed: the same names each step.
    let maskedWith (others: MaskedOut) (predicate: string -> bool) (inner: Transformation) : Transformation =
        let name =
            match others with
            | MaskedOut.PassThrough -> $"masked({inner.Name})"
            | MaskedOut.Zero -> $"masked_zero({inner.Name})"
        let select (t: Tree) : Tree =
            let keep = t.Names |> Array.map predicate
            { Names = Array.zip t.Names keep |> Array.filter snd |> Array.map fst
              Values = Array.zip t.Values keep |> Array.filter snd |> Array.map fst }
        let init p = { State.empty name with Children = [ inner.Init(select p) ] }
        let update (u: Tree) (s: State) (p: Tree) =
            let innerState =
                match s.Children with
                | [ c ] -> c
                | cs -> Tensors.invalidArg "state" $"'{name}' expects the state of its inner transformation as its only child, got {cs.Length}; did you call init of this same optimizer?"
            let inU, inState' = inner.Update (select u) innerState (select p)
            let out =
                u |> Tree.mapi (fun n x ->
                    match Array.IndexOf(inU.Names, n) with
                    | -1 ->
                        match others with
                        | MaskedOut.PassThrough -> x
                        | MaskedOut.Zero -> TorchSharp.torch.zeros_like x
                    | i -> inU.Values[i])
            out, { s with Count = s.Count + 1; Children = [ inState' ] }
        Transform.create name init update

    /// Apply `inner` only to the parameters whose names satisfy `predicate`; the updates of the
    /// others pass through unchanged (optax's `masked`). E.g. weight decay on weights only:
    ///   masked (fun n -> not (n.EndsWith "bias")) (ScaleBy.l2WeightDecay wd)
    let masked (predicate: string -> bool) (inner: Transformation) : Transformation =
        maskedWith MaskedOut.PassThrough predicate inner
