namespace Optimizers

open System
open System.Globalization

/// The type of an option's value.
type OptionType =
    | Number
    | Integer
    | Flag
    | Numbers
    /// One word of a fixed set (listed in the option's doc).
    | Word
    /// Free text, e.g. a name.
    | Text

/// One option of a registered optimizer or task: its name (PyTorch's where PyTorch has one),
/// type, default (as text) and a one-line description.
type OptionSpec =
    { Name: string
      Type: OptionType
      Default: string
      Doc: string }

/// Option values given by name as text (from the CLI, a config or the C# facade), checked
/// against the specs of their owner: unknown names and malformed values fail with a message
/// that lists what is valid.
///
/// `hypers` gives hyperparameters that are not text (a schedule, a tensor) by option name; `Hyper`
/// returns them in place of the text value. An owner with a spec named "*" (`OptionValues.Rest`)
/// accepts options it does not declare and hands them on (`Rest`), e.g. a wrapper to its inner
/// optimizer, which checks them.
type OptionValues(owner: string, specs: OptionSpec list, given: (string * string) list, hypers: Map<string, Hyper>) =
    let specOf (name: string) = specs |> List.tryFind (fun s -> s.Name = name)
    let valid () = String.Join(", ", specs |> List.map (fun s -> s.Name))
    let forwards = specs |> List.exists (fun s -> s.Name = "*") // OptionValues.RestName
    let hypersRead = Collections.Generic.HashSet<string>()
    do
        for KeyValue(name, _) in hypers do
            if (specOf name).IsNone && not forwards then
                Tensors.invalidArg name $"{owner}: '{name}' is not one of its options, so it cannot be given as a schedule or tensor; valid options: {valid ()}"
        for name, _ in given do
            if (specOf name).IsNone && not forwards then
                Tensors.invalidArg name $"{owner}: unknown option '{name}'; valid options: {valid ()}"
        match given |> List.countBy fst |> List.tryFind (fun (_, c) -> c > 1) with
        | Some(name, _) -> Tensors.invalidArg name $"{owner}: option '{name}' is given twice"
        | None -> ()
    let text (name: string) =
        match given |> List.tryFind (fun (n, _) -> n = name), specOf name with
        | Some(_, v), _ -> v
        | None, Some s -> s.Default
        | None, None -> invalidOp $"{owner}: the registry asked for an undeclared option '{name}'"
    let parseFloat name (v: string) =
        match Double.TryParse(v.Trim(), NumberStyles.Float, CultureInfo.InvariantCulture) with
        | true, x -> x
        | _ -> Tensors.invalidArg name $"{owner}: option {name} = '{v}' is not a number"

    /// Option values given as text only.
    new(owner: string, specs: OptionSpec list, given: (string * string) list) = OptionValues(owner, specs, given, Map.empty)

    /// The name of the spec that makes an owner accept undeclared options (see `Rest`).
    static member RestName = "*"
    member _.Owner = owner
    member _.Float(name: string) : float = parseFloat name (text name)
    /// The hyperparameter: the schedule or tensor given for it in `hypers`, else the number.
    member o.Hyper(name: string) : Hyper =
        match hypers.TryFind name with
        | Some h -> hypersRead.Add name |> ignore; h
        | None -> Hyper.Fixed(o.Float name)
    /// True when the option was given (as text or in `hypers`), false when it takes its default.
    member _.IsGiven(name: string) : bool = List.exists (fun (n, _) -> n = name) given || hypers.ContainsKey name
    /// The raw text of an option (its default when not given).
    member _.Text(name: string) : string = (text name).Trim()
    /// The given options that the owner does not declare (accepted when it has a "*" spec).
    member _.Rest : (string * string) list = given |> List.filter (fun (n, _) -> (specOf n).IsNone)
    /// The non-text hyperparameters, by option name.
    member _.Hypers : Map<string, Hyper> =
        for KeyValue(n, _) in hypers do hypersRead.Add n |> ignore
        hypers
    /// The non-text hyperparameters that the owner does not declare (handed on with `Rest`).
    member _.RestHypers : Map<string, Hyper> =
        let rest = hypers |> Map.filter (fun n _ -> (specOf n).IsNone)
        for KeyValue(n, _) in rest do hypersRead.Add n |> ignore
        rest
    /// The non-text hyperparameters that nothing has read (a constructor took the number instead).
    member _.UnreadHypers : string list = [ for KeyValue(n, _) in hypers do if not (hypersRead.Contains n) then yield n ]
    /// A word from a fixed set, with an error listing the set.
    member _.Word(name: string, choices: string list) : string =
        let v = (text name).Trim().ToLowerInvariant()
        if List.contains v choices then v
        else Tensors.invalidArg name $"{owner}: option {name} = '{v}' is invalid; valid: {Tensors.commas choices}"
    member _.Int(name: string) : int =
        match Int32.TryParse((text name).Trim(), NumberStyles.Integer, CultureInfo.InvariantCulture) with
        | true, x -> x
        | _ -> Tensors.invalidArg name $"{owner}: option {name} = '{text name}' is not a whole number"
    member _.Bool(name: string) : bool =
        match (text name).Trim().ToLowerInvariant() with
        | "true" | "1" | "yes" -> true
        | "false" | "0" | "no" -> false
        | v -> Tensors.invalidArg name $"{owner}: option {name} = '{v}' is not true or false"
    /// A comma-separated list of numbers; None when the text is empty.
    member _.Floats(name: string) : float[] option =
        match (text name).Trim() with
        | "" -> None
        | v ->
            let parts = v.Split(',') |> Array.map (fun x -> Double.TryParse(x.Trim(), NumberStyles.Float, CultureInfo.InvariantCulture))
            if parts |> Array.forall fst then Some(parts |> Array.map snd)
            else Tensors.invalidArg name $"{owner}: option {name} = '{v}' is not a list of numbers (e.g. -1.5,2)"
