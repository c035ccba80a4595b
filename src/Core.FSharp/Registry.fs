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
        | v -> Some(v.Split(',') |> Array.map (parseFloat name))

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

    // The hand-designed catalog (issue 3): option names are PyTorch's where PyTorch has the optimizer.
    let private betaOptions (b1: Hyper) (b2: Hyper) =
        [ num "beta1" (fixedValue b1) "decay of the first moment"
          num "beta2" (fixedValue b2) "decay of the second moment" ]

    let private sgdwEntry name summary (d: SgdOptions) =
        { Name = name
          Summary = summary
          Source = "Loshchilov and Hutter 2019 (Algorithm 1); lecture seed 003"
          Options =
            [ num "lr" (fixedValue d.Lr) "learning rate"
              num "momentum" (fixedValue d.Momentum) "momentum factor mu"
              num "dampening" (fixedValue d.Dampening) "dampening of the momentum buffer"
              num "weight_decay" (fixedValue d.WeightDecay) "decoupled weight decay (scaled by lr)"
              flag "nesterov" d.Nesterov "Nesterov momentum" ]
          Create = fun o ->
            Sgdw.create
                { d with
                    Lr = o.Hyper "lr"; Momentum = o.Hyper "momentum"; Dampening = o.Hyper "dampening"
                    WeightDecay = o.Hyper "weight_decay"; Nesterov = o.Bool "nesterov" } }

    let private adaboundEntry name summary (d: AdaBoundOptions) =
        { Name = name
          Summary = summary
          Source = "Luo et al. 2019; reference implementation github.com/Luolc/AdaBound; lecture seed 003"
          Options =
            [ num "lr" (fixedValue d.Lr) "Adam's learning rate"
              yield! betaOptions d.Beta1 d.Beta2
              num "final_lr" (fixedValue d.FinalLr) "the SGD learning rate the bounds converge to"
              num "gamma" (fixedValue d.Gamma) "convergence speed of the bounds"
              num "eps" d.Eps "added to sqrt(v)"
              num "weight_decay" (fixedValue d.WeightDecay) "L2 penalty added to the gradient" ]
          Create = fun o ->
            AdaBound.create
                { d with
                    Lr = o.Hyper "lr"; Beta1 = o.Hyper "beta1"; Beta2 = o.Hyper "beta2"; FinalLr = o.Hyper "final_lr"
                    Gamma = o.Hyper "gamma"; Eps = o.Float "eps"; WeightDecay = o.Hyper "weight_decay" } }

    let private catalogOptimizers : OptimizerEntry list =
        [ { Name = "adagrad"
            Summary = "Adagrad: per-coordinate steps scaled by the root of the summed squared gradients"
            Source = "Duchi et al. 2011; torch.optim.Adagrad; lecture seed 003"
            Options =
              [ num "lr" (fixedValue Adagrad.defaults.Lr) "learning rate"
                num "lr_decay" (fixedValue Adagrad.defaults.LrDecay) "learning rate decay: lr / (1 + (t - 1) lr_decay)"
                num "weight_decay" (fixedValue Adagrad.defaults.WeightDecay) "L2 penalty added to the gradient"
                num "initial_accumulator_value" Adagrad.defaults.InitialAccumulatorValue "start of the sum of squares"
                num "eps" Adagrad.defaults.Eps "added to the root of the sum" ]
            Create = fun o ->
              Adagrad.create
                  { Adagrad.defaults with
                      Lr = o.Hyper "lr"; LrDecay = o.Hyper "lr_decay"; WeightDecay = o.Hyper "weight_decay"
                      InitialAccumulatorValue = o.Float "initial_accumulator_value"; Eps = o.Float "eps" } }
          { Name = "rmsprop"
            Summary = "RMSProp: steps scaled by a running root mean square of the gradients"
            Source = "Hinton et al. 2012; torch.optim.RMSprop; lecture seed 003"
            Options =
              [ num "lr" (fixedValue RmsProp.defaults.Lr) "learning rate"
                num "alpha" (fixedValue RmsProp.defaults.Alpha) "decay of the mean square"
                num "eps" RmsProp.defaults.Eps "added to the root mean square"
                num "weight_decay" (fixedValue RmsProp.defaults.WeightDecay) "L2 penalty added to the gradient"
                num "momentum" (fixedValue RmsProp.defaults.Momentum) "momentum on the scaled gradient"
                flag "centered" RmsProp.defaults.Centered "divide by the estimated standard deviation" ]
            Create = fun o ->
              RmsProp.create
                  { RmsProp.defaults with
                      Lr = o.Hyper "lr"; Alpha = o.Hyper "alpha"; Eps = o.Float "eps"; WeightDecay = o.Hyper "weight_decay"
                      Momentum = o.Hyper "momentum"; Centered = o.Bool "centered" } }
          { Name = "adamax"
            Summary = "Adamax: Adam with the infinity norm"
            Source = "Kingma and Ba 2015, sec. 7.1; torch.optim.Adamax"
            Options =
              [ num "lr" (fixedValue Adamax.defaults.Lr) "learning rate"
                yield! betaOptions Adamax.defaults.Beta1 Adamax.defaults.Beta2
                num "eps" Adamax.defaults.Eps "added to |g| inside the maximum"
                num "weight_decay" (fixedValue Adamax.defaults.WeightDecay) "L2 penalty added to the gradient" ]
            Create = fun o ->
              Adamax.create
                  { Adamax.defaults with
                      Lr = o.Hyper "lr"; Beta1 = o.Hyper "beta1"; Beta2 = o.Hyper "beta2"; Eps = o.Float "eps"
                      WeightDecay = o.Hyper "weight_decay" } }
          { Name = "amsgrad"
            Summary = "AMSGrad: Adam with the running maximum of the second moment"
            Source = "Reddi et al. 2018; torch.optim.Adam(amsgrad=True); lecture seed 003 (debias=false)"
            Options =
              [ num "lr" (fixedValue AmsGrad.defaults.Lr) "learning rate"
                yield! betaOptions AmsGrad.defaults.Beta1 AmsGrad.defaults.Beta2
                num "eps" AmsGrad.defaults.Eps "added to the denominator, outside the square root"
                num "eps_root" AmsGrad.defaults.EpsRoot "added inside the square root (meta-gradients)"
                num "weight_decay" (fixedValue AmsGrad.defaults.WeightDecay) "L2 penalty added to the gradient"
                flag "debias" AmsGrad.defaults.Debias "bias correction (PyTorch); false: the paper's and the lecture's form" ]
            Create = fun o ->
              AmsGrad.create
                  { AmsGrad.defaults with
                      Lr = o.Hyper "lr"; Beta1 = o.Hyper "beta1"; Beta2 = o.Hyper "beta2"; Eps = o.Float "eps"
                      EpsRoot = o.Float "eps_root"; WeightDecay = o.Hyper "weight_decay"; Debias = o.Bool "debias" } }
          adaboundEntry "adabound" "AdaBound: Adam's per-coordinate learning rate clipped into bounds that close in on final_lr" AdaBound.defaults
          adaboundEntry "amsbound" "AMSBound: AdaBound with AMSGrad's running maximum" AdaBound.amsboundDefaults
          { Name = "radam"
            Summary = "RAdam: Adam with the variance of the adaptive learning rate rectified"
            Source = "Liu et al. 2020; torch.optim.RAdam; lecture seed 003"
            Options =
              [ num "lr" (fixedValue RAdam.defaults.Lr) "learning rate"
                yield! betaOptions RAdam.defaults.Beta1 RAdam.defaults.Beta2
                num "eps" RAdam.defaults.Eps "added to sqrt(v)"
                num "weight_decay" (fixedValue RAdam.defaults.WeightDecay) "L2 penalty added to the gradient"
                num "threshold" RAdam.defaults.Threshold "rectify when rho_t > threshold (PyTorch: 5; the paper: 4)" ]
            Create = fun o ->
              RAdam.create
                  { RAdam.defaults with
                      Lr = o.Hyper "lr"; Beta1 = o.Hyper "beta1"; Beta2 = o.Hyper "beta2"; Eps = o.Float "eps"
                      WeightDecay = o.Hyper "weight_decay"; Threshold = o.Float "threshold" } }
          { Name = "nadam"
            Summary = "Nadam: Adam with Nesterov momentum"
            Source = "Dozat 2016; torch.optim.NAdam; lecture seed 003"
            Options =
              [ num "lr" (fixedValue NAdam.defaults.Lr) "learning rate"
                yield! betaOptions NAdam.defaults.Beta1 NAdam.defaults.Beta2
                num "eps" NAdam.defaults.Eps "added to the bias-corrected root of v"
                num "weight_decay" (fixedValue NAdam.defaults.WeightDecay) "L2 penalty added to the gradient"
                num "momentum_decay" NAdam.defaults.MomentumDecay "psi of the momentum schedule" ]
            Create = fun o ->
              NAdam.create
                  { NAdam.defaults with
                      Lr = o.Hyper "lr"; Beta1 = o.Hyper "beta1"; Beta2 = o.Hyper "beta2"; Eps = o.Float "eps"
                      WeightDecay = o.Hyper "weight_decay"; MomentumDecay = o.Float "momentum_decay" } }
          { Name = "adamw"
            Summary = "AdamW: Adam with decoupled weight decay"
            Source = "Loshchilov and Hutter 2019; torch.optim.AdamW; lecture seed 003"
            Options =
              [ num "lr" (fixedValue AdamW.defaults.Lr) "learning rate"
                yield! betaOptions AdamW.defaults.Beta1 AdamW.defaults.Beta2
                num "eps" AdamW.defaults.Eps "added to the denominator, outside the square root"
                num "eps_root" AdamW.defaults.EpsRoot "added inside the square root (meta-gradients)"
                num "weight_decay" (fixedValue AdamW.defaults.WeightDecay) "decoupled weight decay (scaled by lr)"
                flag "amsgrad" AdamW.defaults.Amsgrad "use the running maximum of v" ]
            Create = fun o ->
              AdamW.create
                  { AdamW.defaults with
                      Lr = o.Hyper "lr"; Beta1 = o.Hyper "beta1"; Beta2 = o.Hyper "beta2"; Eps = o.Float "eps"
                      EpsRoot = o.Float "eps_root"; WeightDecay = o.Hyper "weight_decay"; Amsgrad = o.Bool "amsgrad" } }
          sgdwEntry "sgdw" "SGDW: SGD with decoupled weight decay" Sgdw.defaults
          sgdwEntry "sgdwm" "SGDWM: SGD with momentum (mu = 0.9) and decoupled weight decay" Sgdw.momentumDefaults
          { Name = "swats"
            Summary = "SWATS: Adam, then SGD with momentum at the learning rate Adam's steps imply"
            Source = "Keskar and Socher 2017 (Algorithm 1); lecture seed 003"
            Options =
              [ num "lr" (fixedValue Swats.defaults.Lr) "Adam's learning rate"
                yield! betaOptions Swats.defaults.Beta1 Swats.defaults.Beta2
                num "eps" Swats.defaults.Eps "added to sqrt(v) in Adam's step"
                num "switch_eps" Swats.defaults.SwitchEps "switch when the estimate moves less than this"
                num "weight_decay" (fixedValue Swats.defaults.WeightDecay) "L2 penalty added to the gradient" ]
            Create = fun o ->
              Swats.create
                  { Swats.defaults with
                      Lr = o.Hyper "lr"; Beta1 = o.Hyper "beta1"; Beta2 = o.Hyper "beta2"; Eps = o.Float "eps"
                      SwitchEps = o.Float "switch_eps"; WeightDecay = o.Hyper "weight_decay" } }
          { Name = "gradient-noise"
            Summary = "SGD with annealed Gaussian gradient noise, variance eta / (1 + t)^gamma"
            Source = "Neelakantan et al. 2015; lecture seed 003"
            Options =
              [ num "lr" (fixedValue Sgd.defaults.Lr) "learning rate"
                num "momentum" (fixedValue Sgd.defaults.Momentum) "momentum factor mu"
                num "dampening" (fixedValue Sgd.defaults.Dampening) "dampening of the momentum buffer"
                num "weight_decay" (fixedValue Sgd.defaults.WeightDecay) "L2 penalty added to the gradient"
                flag "nesterov" Sgd.defaults.Nesterov "Nesterov momentum"
                num "eta" (fixedValue GradientNoise.defaults.Eta) "variance of the noise at the first step"
                num "gamma" (fixedValue GradientNoise.defaults.Gamma) "decay exponent of the variance"
                int "seed" GradientNoise.defaults.Seed "seed of the noise" ]
            Create = fun o ->
              GradientNoise.create
                  { Eta = o.Hyper "eta"; Gamma = o.Hyper "gamma"; Seed = o.Int "seed" }
                  { Sgd.defaults with
                      Lr = o.Hyper "lr"; Momentum = o.Hyper "momentum"; Dampening = o.Hyper "dampening"
                      WeightDecay = o.Hyper "weight_decay"; Nesterov = o.Bool "nesterov" } } ]

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
        @ catalogOptimizers

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
