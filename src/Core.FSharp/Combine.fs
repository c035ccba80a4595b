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
        Transform.create name init update

    /// Chain under a name made of the parts' names.
    let chain (parts: Transformation list) : Transformation =
        let name = "chain(" + String.Join(", ", parts |> List.map (fun t -> t.Name)) + ")"
        chainNamed name parts

    /// A named optimizer: a chain of small transformations under the optimizer's own name and
    /// state layout version, so saved files and wiring errors speak of "adam", not of its parts.
    let named (name: string) (version: int) (parts: Transformation list) : Transformation =
        { chainNamed name parts with Version = version }
