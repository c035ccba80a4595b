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
                Tensors.invalidArg name $"{owner}: unknown option '{name}'; valid options: {valid ()}"
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
    /// A plain number: a `Hyper.Fixed` given in `hypers` (a typed value, never printed and parsed),
    /// else the text value.
    member _.Float(name: string) : float =
        match hypers.TryFind name with
        | Some(Hyper.Fixed v) -> hypersRead.Add name |> ignore; v
        | _ -> parseFloat name (text name)
    /// The hyperparameter: the schedule or tensor given for it in `hypers`, else the number.
    member o.Hyper(name: string) : Hyper =
        match hypers.TryFind name with
        | Some h -> hypersRead.Add name |> ignore; h
        | None -> Hyper.Fixed(o.Float name)
    /// True when the option was given (as text or in `hypers`), false when it takes its default.
    member _.IsGiven(name: string) : bool = List.exists (fun (n, _) -> n = name) given || hypers.ContainsKey name
    /// The raw text of an option (its default when not given); a number given typed, as text (for
    /// the learned optimizers, whose options travel in their files as text).
    member _.Text(name: string) : string =
        match hypers.TryFind name with
        | Some(Hyper.Fixed v) -> hypersRead.Add name |> ignore; v.ToString("R", CultureInfo.InvariantCulture)
        | _ -> (text name).Trim()
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

/// A registered learning-rate schedule: how the CLI and configs build it by name. `Create lr steps
/// options` gets the optimizer's learning rate (the schedule's base or peak value, see
/// `Registry.schedules`) and the number of steps of the run when known (the default length of
/// schedules such as cosine and one-cycle). Declared before OptimizerEntry, whose field names it
/// shares, so that unannotated record expressions with those fields still make optimizer entries.
type ScheduleEntry =
    { Name: string
      Summary: string
      Source: string
      Options: OptionSpec list
      Create: float -> int option -> OptionValues -> Schedule }

/// A registered optimizer: how the CLI, configs and the C# facade build it by name.
type OptimizerEntry =
    { Name: string
      Summary: string
      Source: string
      Options: OptionSpec list
      Create: OptionValues -> Transformation }

/// One option of a named optimizer as a typed field of its options record 'O: the spec it shows
/// (its default read off a defaults record, so the listed default is the one used) and how a
/// given value goes into the record. A value not given leaves the record's own value.
type Field<'O> =
    { Name: string
      Type: OptionType
      Doc: string
      /// The default as text, read off a record of defaults.
      DefaultOf: 'O -> string
      /// The record with this option's given value, if any.
      Read: OptionValues -> 'O -> 'O }

/// Builders of typed fields, one per option type, and of registry entries from them.
module Field =

    let private text (v: float) = v.ToString("R", CultureInfo.InvariantCulture)

    /// A hyperparameter (number, schedule or tensor) of the record.
    let hyper (name: string) (get: 'O -> Hyper) (set: 'O -> Hyper -> 'O) (doc: string) : Field<'O> =
        { Name = name; Type = Number; Doc = doc
          DefaultOf = fun o -> match get o with Hyper.Fixed v -> text v | _ -> ""
          Read = fun v o -> if v.IsGiven name then set o (v.Hyper name) else o }

    /// A plain number of the record (a constant of the rule, not schedulable).
    let number (name: string) (get: 'O -> float) (set: 'O -> float -> 'O) (doc: string) : Field<'O> =
        { Name = name; Type = Number; Doc = doc
          DefaultOf = fun o -> text (get o)
          Read = fun v o -> if v.IsGiven name then set o (v.Float name) else o }

    let integer (name: string) (get: 'O -> int) (set: 'O -> int -> 'O) (doc: string) : Field<'O> =
        { Name = name; Type = Integer; Doc = doc
          DefaultOf = fun o -> string (get o)
          Read = fun v o -> if v.IsGiven name then set o (v.Int name) else o }

    /// A whole number that may be left out (None, shown in the specs as `shown`: what None means).
    let integerOr (name: string) (shown: string) (get: 'O -> int option) (set: 'O -> int option -> 'O) (doc: string) : Field<'O> =
        { Name = name; Type = Integer; Doc = doc
          DefaultOf = fun o -> match get o with Some v -> string v | None -> shown
          Read = fun v o -> if v.IsGiven name then set o (Some(v.Int name)) else o }

    let flag (name: string) (get: 'O -> bool) (set: 'O -> bool -> 'O) (doc: string) : Field<'O> =
        { Name = name; Type = Flag; Doc = doc
          DefaultOf = fun o -> if get o then "true" else "false"
          Read = fun v o -> if v.IsGiven name then set o (v.Bool name) else o }

    /// A list of numbers, given comma-separated; None when not given (an empty text).
    let numbers (name: string) (get: 'O -> float[] option) (set: 'O -> float[] option -> 'O) (doc: string) : Field<'O> =
        { Name = name; Type = Numbers; Doc = doc
          DefaultOf = fun o -> match get o with Some xs -> String.Join(",", xs |> Array.map text) | None -> ""
          Read = fun v o -> if v.IsGiven name then set o (v.Floats name) else o }

    /// One of a fixed set of words, each standing for a value of the record's field.
    let word (name: string) (choices: (string * 'V) list) (get: 'O -> 'V) (set: 'O -> 'V -> 'O) (doc: string) : Field<'O> =
        { Name = name; Type = Word; Doc = doc
          DefaultOf = fun o -> choices |> List.tryFind (fun (_, c) -> c = get o) |> Option.map fst |> Option.defaultValue ""
          Read = fun v o ->
            if v.IsGiven name then set o (choices |> List.find (fun (w, _) -> w = v.Word(name, List.map fst choices)) |> snd) else o }

    /// A field of a part of a larger record (e.g. SGD's options inside gradient noise's).
    let lift (get: 'P -> 'O) (set: 'P -> 'O -> 'P) (f: Field<'O>) : Field<'P> =
        { Name = f.Name; Type = f.Type; Doc = f.Doc
          DefaultOf = fun p -> f.DefaultOf (get p)
          Read = fun v p -> set p (f.Read v (get p)) }

    /// The option specs the fields show, with the defaults of `defaults`.
    let specs (defaults: 'O) (fields: Field<'O> list) : OptionSpec list =
        [ for f in fields -> { Name = f.Name; Type = f.Type; Default = f.DefaultOf defaults; Doc = f.Doc } ]

    /// The record `defaults` with every given option read in.
    let read (fields: Field<'O> list) (defaults: 'O) (values: OptionValues) : 'O =
        fields |> List.fold (fun o f -> f.Read values o) defaults

/// A named optimizer's registration in its own file: what it is, its typed fields, and its
/// constructor from the options record.
type Registration<'O> =
    { Summary: string
      Source: string
      Defaults: 'O
      Fields: Field<'O> list
      Create: 'O -> Transformation }

module Registration =

    /// The registry entry of an optimizer spec under a name.
    let entry (name: string) (s: Registration<'O>) : OptimizerEntry =
        { Name = name
          Summary = s.Summary
          Source = s.Source
          Options = Field.specs s.Defaults s.Fields
          Create = fun v -> s.Create (Field.read s.Fields s.Defaults v) }
