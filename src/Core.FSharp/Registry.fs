namespace Optimizers

open System
open System.Globalization
open Optimizers.Handcrafted
open Optimizers.Fused
open Optimizers.Hypergradient
open Optimizers.Tasks

/// The type of an option's value.
type OptionType =
    | Number
    | Integer
    | Flag
    | Numbers
    /// One word of a fixed set (listed in the option's doc).
    | Word

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
/// `tensors` turns chosen hyperparameters into tensors (Hyper.Learnable): how the autodiff
/// hypergradient wrapper differentiates any registered optimizer with respect to them.
type OptionValues(owner: string, specs: OptionSpec list, given: (string * string) list, tensors: Map<string, Tensor>) =
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

    new(owner, specs, given) = OptionValues(owner, specs, given, Map.empty)

    member _.Owner = owner
    member _.Float(name: string) : float = parseFloat name (text name)
    member o.Hyper(name: string) : Hyper =
        match tensors.TryFind name with
        | Some t -> Hyper.Learnable t
        | None -> Hyper.Fixed(o.Float name)
    /// True when the option was given (not defaulted).
    member _.IsGiven(name: string) = given |> List.exists (fun (n, _) -> n = name)
    /// The option's text as given.
    member _.Text(name: string) : string = (text name).Trim()
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
            SgdKernel.create
                { Lr = o.Hyper "lr"; Momentum = o.Hyper "momentum"; Dampening = o.Hyper "dampening"
                  WeightDecay = o.Hyper "weight_decay"; Nesterov = o.Bool "nesterov" } }

    let private word name (d: string) doc = { Name = name; Type = Word; Default = d; Doc = doc }

    let private hdModels = [ "sgd", SgdOp; "sgdn", SgdnOp; "adam", AdamOp ]
    let private hdLops = [ "sgd", SgdLop; "sgdn", SgdnLop; "adam", AdamLop ]
    let private guards = [ "none", Unguarded; "clip", ClipAtZero; "multiplicative", Multiplicative ]

    /// A closed-form hypergradient optimizer under its report name, or an alias.
    let private hdEntry (name: string) (model: ModelOptimizer) (lop: LrOptimizer) =
        let d = Hd.forModel model lop
        let modelOptions =
            match model with
            | SgdOp -> []
            | SgdnOp -> [ num "momentum" d.Momentum "Nesterov momentum of the model optimizer" ]
            | AdamOp -> [ num "beta1" d.Beta1 "Adam's first-moment decay"; num "beta2" d.Beta2 "Adam's second-moment decay"; num "eps" d.Eps "Adam's eps" ]
        let lopOptions =
            match lop with
            | SgdLop -> []
            | SgdnLop -> [ num "lop_momentum" d.LopMomentum "momentum on the hypergradient (Algorithm 1)" ]
            | AdamLop ->
                [ num "lop_beta1" d.LopBeta1 "first-moment decay on the hypergradient (Algorithm 2)"
                  num "lop_beta2" d.LopBeta2 "second-moment decay on the hypergradient"
                  num "lop_eps" d.LopEps "eps of Adam on the hypergradient" ]
        { Name = name
          Summary = $"{Hd.opName model} whose learning rate learns by {Hd.lopName lop} on the hypergradient"
          Source = "Baydin et al. 2018; seed 001 (Mittal 2019)"
          Options =
            [ num "lr" d.Lr "initial learning rate alpha_0"
              num "hypergrad_lr" (fixedValue d.HypergradLr) "hypergradient learning rate beta" ]
            @ modelOptions @ lopOptions
            @ [ num "weight_decay" d.WeightDecay "L2 penalty added to the gradient"
                flag "per_parameter" d.PerParameter "one learning rate per parameter tensor"
                word "lr_guard" "none" "none | clip (at 0) | multiplicative" ]
          Create = fun o ->
            let has n = (modelOptions @ lopOptions) |> List.exists (fun s -> s.Name = n)
            let f n dflt = if has n then o.Float n else dflt
            Hd.create
                { d with
                    Lr = o.Float "lr"
                    HypergradLr = o.Hyper "hypergrad_lr"
                    Momentum = f "momentum" d.Momentum
                    Beta1 = f "beta1" d.Beta1
                    Beta2 = f "beta2" d.Beta2
                    Eps = f "eps" d.Eps
                    LopMomentum = f "lop_momentum" d.LopMomentum
                    LopBeta1 = f "lop_beta1" d.LopBeta1
                    LopBeta2 = f "lop_beta2" d.LopBeta2
                    LopEps = f "lop_eps" d.LopEps
                    WeightDecay = o.Float "weight_decay"
                    PerParameter = o.Bool "per_parameter"
                    Guard = guards |> List.find (fun (n, _) -> n = o.Word("lr_guard", List.map fst guards)) |> snd } }

    /// The nine {op}_op-{lop}_lop optimizers and the classic aliases.
    let private hdEntries =
        [ for m, model in hdModels do
              for l, lop in hdLops -> hdEntry $"{m}_op-{l}_lop" model lop ]
        @ [ hdEntry "sgd-hd" SgdOp SgdLop; hdEntry "sgdn-hd" SgdnOp SgdLop; hdEntry "adam-hd" AdamOp SgdLop ]

    /// Every optimizer that does not wrap another, by name.
    let private baseOptimizers : OptimizerEntry list =
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
              AdamKernel.create
                  { Lr = o.Hyper "lr"; Beta1 = o.Hyper "beta1"; Beta2 = o.Hyper "beta2"; Eps = o.Float "eps"
                    EpsRoot = o.Float "eps_root"; WeightDecay = o.Hyper "weight_decay" } } ]
        @ hdEntries

    /// Any registered optimizer with chosen hyperparameters adapted by autodiff hypergradients.
    let private autoHdEntry : OptimizerEntry =
        let innerNames = baseOptimizers |> List.map (fun e -> e.Name)
        { Name = "hd"
          Summary = "any optimizer whose hyperparameters (lr, beta1, beta2, momentum, weight_decay) learn by autodiff hypergradients"
          Source = "Baydin et al. 2018 generalised; Chandra et al. 2022 (stacking)"
          Options =
            [ word "inner" "adam" "the optimizer whose hyperparameters adapt (any base optimizer)"
              word "adapt" "lr" "comma-separated hyperparameters to adapt, e.g. lr,beta1"
              num "lr" nan "the inner optimizer's initial learning rate (default: its own)"
              num "hypergrad_lr" 1e-3 "step size of each hyperparameter's own gradient descent"
              int "levels" 1 "1, or 2 to adapt the hypergradient learning rates too"
              num "level2_hypergrad_lr" 1e-6 "step size of level 2 (levels = 2)" ]
          Create = fun o ->
            let innerName = o.Text "inner"
            let inner =
                match baseOptimizers |> List.tryFind (fun e -> e.Name = innerName) with
                | Some e -> e
                | None -> Tensors.invalidArg "inner" $"hd: unknown inner optimizer '{innerName}'; valid: {Tensors.commas innerNames}"
            let given = if Double.IsNaN(o.Float "lr") then [] else [ "lr", o.Text "lr" ]
            let names = (o.Text "adapt").Split(',', StringSplitOptions.RemoveEmptyEntries ||| StringSplitOptions.TrimEntries) |> List.ofArray
            let initial (n: string) =
                match inner.Options |> List.tryFind (fun s -> s.Name = n && s.Type = Number) with
                | Some _ -> OptionValues(inner.Name, inner.Options, given).Float n
                | None ->
                    let valid = inner.Options |> List.filter (fun s -> s.Type = Number) |> List.map (fun s -> s.Name)
                    Tensors.invalidArg "adapt" $"hd: '{inner.Name}' has no numeric hyperparameter '{n}'; valid: {Tensors.commas valid}"
            let adapted = [ for n in names -> AutoHd.adapt n (initial n) (o.Hyper "hypergrad_lr") ]
            let make (tensors: Map<string, Tensor>) = inner.Create(OptionValues(inner.Name, inner.Options, given, tensors))
            match o.Int "levels" with
            | 1 -> AutoHd.create $"hd({inner.Name})" make adapted
            | 2 -> AutoHd.stack $"hd2({inner.Name})" make adapted (o.Hyper "level2_hypergrad_lr")
            | l -> Tensors.invalidArg "levels" $"hd: levels = {l} is invalid; valid: 1, 2" }

    /// Every optimizer, by name.
    let optimizers : OptimizerEntry list = baseOptimizers @ [ autoHdEntry ]

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
              [ int "dim" 1000 "number of dimensions (default: the start's, else 1000)"
                { Name = "start"; Type = Numbers; Default = ""; Doc = "start x_1,...,x_dim (default: drawn from the seed)" } ]
            Create = fun o ->
                // A start without a dim sets the dimension.
                let start = o.Floats "start"
                let dim = match start with Some s when not (o.IsGiven "dim") -> s.Length | _ -> o.Int "dim"
                Synthetic.sumOfSquares dim start } ]

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
