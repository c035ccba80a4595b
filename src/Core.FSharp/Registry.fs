namespace Optimizers

open System
open System.Globalization
open Optimizers.Handcrafted
open Optimizers.Tasks

/// The type of an option's value.
type OptionType =
    | Number
    | Integer
    | Flag
    | Numbers

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
type OptionValues(owner: string, specs: OptionSpec list, given: (string * string) list) =
    let specOf (name: string) = specs |> List.tryFind (fun s -> s.Name = name)
    let valid () = String.Join(", ", specs |> List.map (fun s -> s.Name))
    do
        for name, _ in given do
            if (specOf name).IsNone then
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

    member _.Owner = owner
    member _.Float(name: string) : float = parseFloat name (text name)
    member o.Hyper(name: string) : Hyper = Hyper.Fixed(o.Float name)
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

/// A registered optimizer: how the CLI, configs and the C# facade build it by name.
type OptimizerEntry =
    { Name: string
      Summary: string
      Source: string
      Options: OptionSpec list
      Create: OptionValues -> Transformation }

/// A registered task.
type TaskEntry =
    { Name: string
      Summary: string
      Options: OptionSpec list
      Create: OptionValues -> Task }

/// The one place that maps names and option strings to constructors.
module Registry =

    let private num name (d: float) doc = { Name = name; Type = Number; Default = d.ToString("R", CultureInfo.InvariantCulture); Doc = doc }
    let private flag name (d: bool) doc = { Name = name; Type = Flag; Default = (if d then "true" else "false"); Doc = doc }
    let private int name (d: int) doc = { Name = name; Type = Integer; Default = string d; Doc = doc }
    let private fixedValue (h: Hyper) = match h with Hyper.Fixed v -> v | _ -> nan

    let private sgdEntry name summary (d: SgdOptions) =
        { Name = name
          Summary = summary
          Source = "torch.optim.SGD; lecture seed 003"
          Options =
            [ num "lr" (fixedValue d.Lr) "learning rate"
              num "momentum" (fixedValue d.Momentum) "momentum factor mu"
              num "dampening" (fixedValue d.Dampening) "dampening of the momentum buffer"
              num "weight_decay" (fixedValue d.WeightDecay) "L2 penalty added to the gradient"
              flag "nesterov" d.Nesterov "Nesterov momentum" ]
          Create = fun o ->
            Sgd.create
                { Lr = o.Hyper "lr"; Momentum = o.Hyper "momentum"; Dampening = o.Hyper "dampening"
                  WeightDecay = o.Hyper "weight_decay"; Nesterov = o.Bool "nesterov" } }

    /// Every optimizer, by name.
    let optimizers : OptimizerEntry list =
        [ sgdEntry "sgd" "stochastic gradient descent" Sgd.defaults
          sgdEntry "momentum" "SGD with classical momentum (mu = 0.9)" Sgd.momentumDefaults
          sgdEntry "nesterov" "SGD with Nesterov momentum (mu = 0.9)" Sgd.nesterovDefaults
          { Name = "adam"
            Summary = "Adam: bias-corrected first and second moments"
            Source = "Kingma and Ba 2015; torch.optim.Adam; lecture seed 003"
            Options =
              [ num "lr" (fixedValue Adam.defaults.Lr) "learning rate"
                num "beta1" (fixedValue Adam.defaults.Beta1) "decay of the first moment"
                num "beta2" (fixedValue Adam.defaults.Beta2) "decay of the second moment"
                num "eps" Adam.defaults.Eps "added to the denominator, outside the square root"
                num "eps_root" Adam.defaults.EpsRoot "added inside the square root (meta-gradients)"
                num "weight_decay" (fixedValue Adam.defaults.WeightDecay) "L2 penalty added to the gradient" ]
            Create = fun o ->
              Adam.create
                  { Lr = o.Hyper "lr"; Beta1 = o.Hyper "beta1"; Beta2 = o.Hyper "beta2"; Eps = o.Float "eps"
                    EpsRoot = o.Float "eps_root"; WeightDecay = o.Hyper "weight_decay" } } ]

    /// Every task, by name.
    let tasks : TaskEntry list =
        [ { Name = "rosenbrock"
            Summary = "Rosenbrock's function (a - x)^2 + b (y - x^2)^2, 2 parameters"
            Options =
              [ num "a" 1.0 "the minimum is at (a, a^2)"
                num "b" 100.0 "the valley's steepness"
                { Name = "start"; Type = Numbers; Default = ""; Doc = "start x,y (default: drawn from the seed)" } ]
            Create = fun o -> Synthetic.rosenbrock (o.Float "a") (o.Float "b") (o.Floats "start") }
          { Name = "sum-of-squares"
            Summary = "sum of x_i^2 in dim dimensions, start U(-10, 10)"
            Options =
              [ int "dim" 1000 "number of dimensions"
                { Name = "start"; Type = Numbers; Default = ""; Doc = "start x_1,...,x_dim (default: drawn from the seed)" } ]
            Create = fun o -> Synthetic.sumOfSquares (o.Int "dim") (o.Floats "start") } ]

    let private names (xs: string list) = String.Join(", ", xs)

    let optimizerNames = optimizers |> List.map (fun e -> e.Name)
    let taskNames = tasks |> List.map (fun e -> e.Name)

    /// The entry of an optimizer, or an error listing the valid names.
    let findOptimizer (name: string) : OptimizerEntry =
        match optimizers |> List.tryFind (fun e -> e.Name = name.Trim().ToLowerInvariant()) with
        | Some e -> e
        | None -> Tensors.invalidArg "optimizer" $"unknown optimizer '{name}'; valid: {names optimizerNames}"

    let findTask (name: string) : TaskEntry =
        match tasks |> List.tryFind (fun e -> e.Name = name.Trim().ToLowerInvariant()) with
        | Some e -> e
        | None -> Tensors.invalidArg "task" $"unknown task '{name}'; valid: {names taskNames}"

    /// Build an optimizer from its name and options given as text.
    let createOptimizer (name: string) (options: (string * string) list) : Transformation =
        let e = findOptimizer name
        e.Create(OptionValues(e.Name, e.Options, options))

    /// Build a task from its name and options given as text.
    let createTask (name: string) (options: (string * string) list) : Task =
        let e = findTask name
        e.Create(OptionValues(e.Name, e.Options, options))

    /// Split "name=value" into its parts, with a clear error otherwise.
    let parseAssignment (text: string) : string * string =
        match text.IndexOf '=' with
        | i when i > 0 -> text.Substring(0, i).Trim(), text.Substring(i + 1).Trim()
        | _ -> Tensors.invalidArg "opt" $"option '{text}' is not of the form name=value (e.g. beta1=0.9)"
