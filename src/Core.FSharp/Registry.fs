namespace Optimizers

open System
open System.Globalization
open Optimizers.Handcrafted
open Optimizers.Fused
open Optimizers.Hypergradient
open Optimizers.Learned
open Optimizers.Tasks

/// A registered task.
type TaskEntry =
    { Name: string
      Summary: string
      Options: OptionSpec list
      Create: OptionValues -> Task }

/// The one place that maps names and option strings to constructors.
module Registry =

    // Before anything here can load LibTorch: where a script starts (Native.fs).
    do LibTorch.prepare ()

    let private num name (d: float) doc = { Name = name; Type = Number; Default = d.ToString("R", CultureInfo.InvariantCulture); Doc = doc }
    let private flag name (d: bool) doc = { Name = name; Type = Flag; Default = (if d then "true" else "false"); Doc = doc }
    let private int name (d: int) doc = { Name = name; Type = Integer; Default = string d; Doc = doc }
    let private word name (d: string) doc = { Name = name; Type = Word; Default = d; Doc = doc }
    let private entry = Registration.entry

    /// The closed-form hypergradient optimizers: the nine {op}_op-{lop}_lop and the classic aliases.
    let private hdEntries =
        let models = [ "sgd", SgdOp; "sgdn", SgdnOp; "adam", AdamOp ]
        let lops = [ "sgd", SgdLop; "sgdn", SgdnLop; "adam", AdamLop ]
        [ for m, model in models do
              for l, lop in lops -> entry $"{m}_op-{l}_lop" (Hd.spec model lop) ]
        @ [ entry "sgd-hd" (Hd.spec SgdOp SgdLop); entry "sgdn-hd" (Hd.spec SgdnOp SgdLop); entry "adam-hd" (Hd.spec AdamOp SgdLop) ]

    /// Every optimizer that does not wrap another, by name: one line each, from the spec that
    /// its own file (Handcrafted/, Hypergradient/Hd.fs) keeps beside its rule.
    let private baseOptimizers : OptimizerEntry list =
        [ entry "sgd" Sgd.spec
          entry "momentum" Sgd.momentumSpec
          entry "nesterov" Sgd.nesterovSpec
          entry "adam" Adam.spec
          entry "adagrad" Adagrad.spec
          entry "rmsprop" RmsProp.spec
          entry "adamax" Adamax.spec
          entry "amsgrad" AmsGrad.spec
          entry "adabound" AdaBound.spec
          entry "amsbound" AdaBound.amsboundSpec
          entry "radam" RAdam.spec
          entry "nadam" NAdam.spec
          entry "adamw" AdamW.spec
          entry "sgdw" Sgdw.spec
          entry "sgdwm" Sgdw.momentumSpec
          entry "swats" Swats.spec
          entry "gradient-noise" GradientNoise.spec
          // the thesis's hand-designed optimizer (seed 004)
          entry "mng" Mng.spec ]
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
            let make (tensors: Map<string, Tensor>) =
                inner.Create(OptionValues(inner.Name, inner.Options, given, tensors |> Map.map (fun _ t -> Hyper.Learnable t)))
            match o.Int "levels" with
            | 1 -> AutoHd.create $"hd({inner.Name})" make adapted
            | 2 -> AutoHd.stack $"hd2({inner.Name})" make adapted (o.Hyper "level2_hypergrad_lr")
            | l -> Tensors.invalidArg "levels" $"hd: levels = {l} is invalid; valid: 1, 2" }

    /// The families of learned optimizers.
    let learnedKinds : LearnedKind list =
        [ HyperAdam.kind
          DmOptimizer.kind
          RnnProp.kind
          // The thesis (seed 004, issue 7): chapter 3, then chapter 4.
          NormalizedInputs.kTimestepsKind
          NormalizedInputs.kMomentumsKind
          MultiscaleAdam.laKind
          MultiscaleAdam.mlpKind
          MultiscaleAdam.rnnKind ]

    /// A learned optimizer by its kind's name: a trained one from `file`, else the shipped one,
    /// else (with init_seed) an untrained one; its own options override the file's.
    let private learnedEntry (k: LearnedKind) : OptimizerEntry =
        { Name = k.Kind
          Summary = k.Summary + " (learned)"
          Source = k.Source
          Options =
            k.Options
            @ [ { Name = "file"; Type = Text; Default = ""; Doc = "trained optimizer file (default: the shipped models/" + k.Kind + ".bin)" }
                { Name = "init_seed"; Type = Integer; Default = "-1"; Doc = "use fresh, untrained meta-parameters from this seed" } ]
          Create = fun o ->
            let own = k.Options |> List.filter (fun spec -> o.IsGiven spec.Name) |> List.map (fun spec -> spec.Name, o.Text spec.Name)
            let trained =
                match o.Text "file", o.Int "init_seed" with
                | "", seed when seed >= 0 -> { Kind = k.Kind; Options = own; Theta = k.InitTheta (LearnedOptimizer.values k own) seed; Info = Map.empty }
                | "", _ ->
                    match LearnedOptimizer.shipped k.Kind with
                    | Some f -> LearnedOptimizer.load f
                    | None ->
                        Tensors.invalidArg "file"
                            $"{k.Kind}: no trained {k.Kind} is shipped here; pass file=PATH (make one with: optimizers meta-train --kind {k.Kind}) or init_seed=N for an untrained one"
                | file, _ -> LearnedOptimizer.load file
            let merged = (trained.Options |> List.filter (fun (n, _) -> not (List.exists (fun (m, _) -> m = n) own))) @ own
            LearnedOptimizer.create k { trained with Options = merged } }

    let private names (xs: string list) = String.Join(", ", xs)

    /// The entry of `name` among `entries`, or an error (about option `what`) listing them.
    let private findIn (entries: OptimizerEntry list) (what: string) (name: string) : OptimizerEntry =
        match entries |> List.tryFind (fun e -> e.Name = name.Trim().ToLowerInvariant()) with
        | Some e -> e
        | None -> Tensors.invalidArg what $"unknown optimizer '{name}'; valid: {names (entries |> List.map (fun e -> e.Name))}"

    /// Build an optimizer from its entry, options given as text, and hyperparameters that are not
    /// text (e.g. "lr" as Hyper.Scheduled), which take the place of the text value of the same name;
    /// also the names of those the optimizer read as plain numbers instead.
    let private buildWith (e: OptimizerEntry) (options: (string * string) list) (hypers: Map<string, Hyper>) =
        let o = OptionValues(e.Name, e.Options, options, hypers)
        let t = e.Create o
        t, o.UnreadHypers

    /// As buildWith, failing when a hyperparameter given as a schedule or tensor was read as a number.
    let private buildStrict (e: OptimizerEntry) (options: (string * string) list) (hypers: Map<string, Hyper>) : Transformation =
        match buildWith e options hypers with
        | t, [] -> t
        | _, unread ->
            Tensors.invalidArg (List.head unread)
                $"{e.Name} takes {Tensors.commas unread} as a plain number only, so it cannot be a schedule or tensor here"

    /// The wrappers' names (a wrapper cannot wrap one).
    let private wrapperNames = [ "lookahead"; "ranger" ]

    /// Lookahead around a registered optimizer chosen by the option `inner`; every option that
    /// lookahead does not declare goes to the inner optimizer (lr, momentum, beta1, ...).
    let private lookaheadEntry (inners: OptimizerEntry list) (name: string) (summary: string) (source: string) (inner: string) (k: int) (alpha: float) =
        { Name = name
          Summary = summary
          Source = source
          Options =
            [ { Name = "inner"; Type = Text; Default = inner; Doc = "the registered optimizer to wrap (a name)" }
              int "k" k "fast steps between synchronisations"
              num "alpha" alpha "slow-weights step size, in [0, 1]"
              { Name = OptionValues.RestName; Type = Text; Default = ""; Doc = "any other option goes to the inner optimizer (lr, momentum, beta1, ...)" } ]
          Create = fun o ->
            let innerName = o.Text "inner"
            if wrapperNames |> List.contains (innerName.Trim().ToLowerInvariant()) then
                Tensors.invalidArg "inner" $"{name}: inner = {innerName} is a wrapper, and wrappers do not nest; choose another optimizer"
            let innerOpt = buildStrict (findIn inners "inner" innerName) o.Rest o.RestHypers
            Wrappers.lookaheadNamed (if name = "lookahead" then $"lookahead({innerOpt.Name})" else name) (o.Int "k") (o.Hyper "alpha") innerOpt }

    /// Every optimizer a wrapper can wrap (everything but the wrappers themselves).
    let private wrappable : OptimizerEntry list = baseOptimizers @ (learnedKinds |> List.map learnedEntry) @ [ autoHdEntry ]

    /// Every optimizer, by name.
    let optimizers : OptimizerEntry list =
        wrappable
        @ [ lookaheadEntry wrappable "lookahead" "Lookahead: k fast steps of an inner optimizer, then the slow weights step towards them"
                "Zhang et al. 2019; lecture seed 003" "adam" 5 0.5
            lookaheadEntry wrappable "ranger" "Ranger: Lookahead (k = 6, alpha = 0.5) around RAdam" "Wright 2019; lecture seed 003" "radam" 6 0.5 ]

    // ---- options of the data-driven tasks ------------------------------------------------------

    let private initNames = [ "normal"; "torch" ]

    let private trainingOptions (batch: int) (init: InitScheme) =
        [ int "batch_size" batch "examples per minibatch"
          int "data_seed" 0 "seed of the minibatch sequence: same seed, same batches (init uses the run's seed)"
          word "init" (match init with TorchDefault -> "torch" | Normal _ -> "normal") "normal: every parameter N(0, init_std^2) | torch: PyTorch's U(-1/sqrt(fan_in), 1/sqrt(fan_in))"
          num "init_std" (match init with Normal s -> s | TorchDefault -> 0.1) "std of init=normal (HyperAdam 0.1, thesis 0.01)" ]

    let private imageOptions (d: ClassificationOptions) (dataDoc: string) =
        trainingOptions d.BatchSize d.Init @ [ word "data_dir" "" dataDoc ]

    let private mnistOptions (d: ClassificationOptions) =
        imageOptions d "folder with the MNIST IDX files (gzip or raw), or a shipped set: mnist-20k (the default when empty), mnist-subset (the earlier 10,000 digits)"
        @ [ flag "normalize" (d.Preprocess <> Scale01) "standardise pixels (mean 0.1307, std 0.3081; hypergradient paper) instead of scaling to [0, 1]" ]

    let private initOf (o: OptionValues) = InitScheme.Parse(o.Word("init", initNames), o.Float "init_std")

    let private readClassification (o: OptionValues) (d: ClassificationOptions) =
        { d with BatchSize = o.Int "batch_size"; DataSeed = o.Int "data_seed"; Init = initOf o }

    let private readMnist (o: OptionValues) (d: ClassificationOptions) =
        { readClassification o d with Preprocess = (if o.Bool "normalize" then Standardize(0.1307, 0.3081) else Scale01) }

    let private mnistDir (o: OptionValues) = match o.Text "data_dir" with "" -> None | d -> Some d

    let private mnistEntry (name: string) (summary: string) (d: ClassificationOptions) (make: string option -> ClassificationOptions -> Task) : TaskEntry =
        { Name = name; Summary = summary; Options = mnistOptions d; Create = fun o -> make (mnistDir o) (readMnist o d) }

    let private mlpEntry (name: string) (summary: string) (activation: string) (layers: int) (width: int) (d: ClassificationOptions) : TaskEntry =
        { Name = name
          Summary = summary
          Options =
            [ word "activation" activation "sigmoid | relu | elu | tanh"
              int "layers" layers "hidden layers (1..10 in HyperAdam's experiments)"
              int "width" width "units per hidden layer" ]
            @ mnistOptions d
          Create = fun o ->
            let layers = o.Int "layers"
            if layers < 0 then Tensors.invalidArg "layers" $"{name}: layers = {layers} is invalid; it must be >= 0 (0 is logistic regression)"
            let hidden = List.replicate layers (o.Int "width")
            Vision.mlp (o.Word("activation", Layers.activationNames)) hidden (mnistDir o) (readMnist o d) }

    let private cifarEntry (name: string) (summary: string) (make: string -> ClassificationOptions -> Task) : TaskEntry =
        let d = Vision.cifarOptions
        { Name = name
          Summary = summary
          Options =
            imageOptions d "folder with the CIFAR-10 binary files (data_batch_1.bin .. test_batch.bin); required"
            @ [ num "weight_decay" d.WeightDecay "coefficient of sum(w^2)/2 over the two hidden layers' weights (TF tutorial)"
                flag "augment" true "random 24 x 24 crops and flips of training images (else central crops)" ]
          Create = fun o ->
            match o.Text "data_dir" with
            | "" ->
                Tensors.invalidArg "data_dir"
                    $"{name}: option data_dir is required: a folder with the CIFAR-10 binary files data_batch_1.bin .. data_batch_5.bin and test_batch.bin"
            | dir ->
                make dir
                    { readClassification o d with
                        WeightDecay = o.Float "weight_decay"
                        Preprocess = CifarCrop(24, o.Bool "augment") } }

    /// The tasks on data (MNIST, CIFAR-10, synthetic sequences) and the random quadratic.
    let private dataTasks : TaskEntry list =
        [ { Name = "quadratic"
            Summary = "1/2 (x - x*)^T A (x - x*), A random with eigenvalues log-spaced 1..condition; minimum 0 at x*"
            Options =
              [ int "dim" 10 "number of dimensions"
                num "condition" 100.0 "condition number of A"
                int "problem_seed" 0 "seed of A and x* (the start is drawn from the run's seed)" ]
            Create = fun o -> Quadratic.task (o.Int "dim") (o.Float "condition") (o.Int "problem_seed") }
          mnistEntry "logreg-mnist" "logistic regression 784-10 on MNIST (hypergradient paper; 7,850 parameters)"
              Vision.hypergradientOptions Vision.logisticRegression
          mlpEntry "mlp-mnist" "MLP on MNIST; default MlpMnist 784-20-10 sigmoid (15,910 parameters; HyperAdam, thesis)"
              "sigmoid" 1 20 Vision.hyperAdamOptions
          mlpEntry "mlp-mnist-hd" "MLP 784-1000-1000-10 ReLU on MNIST (hypergradient paper; 1,796,010 parameters)"
              "relu" 2 1000 Vision.hypergradientOptions
          mnistEntry "cnn1-mnist" "HyperAdam's CNN-1 on MNIST: conv-conv-pool-fc, 3x3 kernels (33,850 parameters)"
              Vision.hyperAdamOptions Vision.cnn1
          mnistEntry "cnn2-mnist" "HyperAdam's CNN-2 on MNIST: conv-conv-pool-conv-conv-pool-fc-fc (117,434 parameters)"
              Vision.hyperAdamOptions Vision.cnn2
          mnistEntry "conv-mnist-l" "the thesis's ConvMnist_l: TF's MNIST convnet, 5x5 convs 32/64, fc 1024 (3,274,634 parameters)"
              Vision.thesisOptions Vision.convMnistL
          mnistEntry "conv-mnist-s" "the thesis's ConvMnist_s: 5x5 convs 16/32, fc 512 (821,706 parameters)"
              Vision.thesisOptions Vision.convMnistS
          cifarEntry "conv-cifar0" "the thesis's ConvCifar_0: TF's CIFAR-10 net with LRN and max pooling (1,068,298 parameters)" Vision.convCifar0
          cifarEntry "conv-cifar1" "the thesis's ConvCifar_1: ConvCifar_0 with 32/32 channels, 96/48 hidden (143,898 parameters)" Vision.convCifar1
          { Name = "lstm-sine"
            Summary = "LSTM predicts f(10) from noisy f(0..9), f(x) = A sin(w x + phi) (HyperAdam Table 2)"
            Options =
              [ int "layers" 1 "stacked LSTM layers (Table 2's 2-layer row: 2)"
                int "hidden" 20 "hidden units per layer"
                int "length" 10 "observed points f(0..length-1)"
                num "noise" 0.1 "std of the observation noise (Table 2's small-noise row: 0.01)" ]
              @ trainingOptions 128 (Normal 0.1)
            Create = fun o ->
              Sequence.lstmSine
                  { Layers = o.Int "layers"; Hidden = o.Int "hidden"; Length = o.Int "length"; Noise = o.Float "noise"
                    BatchSize = o.Int "batch_size"; DataSeed = o.Int "data_seed"; Init = initOf o } } ]

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
        @ dataTasks

    let optimizerNames = optimizers |> List.map (fun e -> e.Name)
    let taskNames = tasks |> List.map (fun e -> e.Name)

    /// The entry of an optimizer, or an error listing the valid names.
    let findOptimizer (name: string) : OptimizerEntry = findIn optimizers "optimizer" name

    /// A learned kind by name, or an error listing the valid ones.
    let findLearnedKind (name: string) : LearnedKind =
        match learnedKinds |> List.tryFind (fun k -> k.Kind = name.Trim().ToLowerInvariant()) with
        | Some k -> k
        | None -> Tensors.invalidArg "kind" $"unknown learned optimizer kind '{name}'; valid: {Tensors.commas (learnedKinds |> List.map (fun k -> k.Kind))}"

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

    /// A task's options for run seed `seed`: its data seed (minibatch order) set to the seed,
    /// unless the options pin one or the task has none. Each seed then draws its own order, so a
    /// final loss is not the loss of one shared last minibatch (docs/configs.md, "Fair measure").
    let seedTaskOptions (name: string) (options: (string * string) list) (seed: int) : (string * string) list =
        let offered = (findTask name).Options |> List.exists (fun o -> o.Name = "data_seed")
        if offered && not (options |> List.exists (fun (n, _) -> n = "data_seed")) then options @ [ "data_seed", string seed ]
        else options

    /// The task for run seed `seed`, with that seed's own data order (`seedTaskOptions`).
    let createSeededTask (name: string) (options: (string * string) list) (seed: int) : Task =
        createTask name (seedTaskOptions name options seed)

    /// Build an optimizer from its name, options given as text, and hyperparameters that are not
    /// text (e.g. "lr" as Hyper.Scheduled); these take the place of the text value of the same
    /// name. Fails when the optimizer reads such a hyperparameter as a plain number.
    let createOptimizerWith (name: string) (options: (string * string) list) (hypers: Map<string, Hyper>) : Transformation =
        buildStrict (findOptimizer name) options hypers

    /// As createOptimizerWith, but None where the optimizer reads one of `hypers` as a plain number
    /// (e.g. a hypergradient optimizer's initial "lr"), for callers that then build it from text.
    let tryCreateOptimizerWith (name: string) (options: (string * string) list) (hypers: Map<string, Hyper>) : Transformation option =
        match buildWith (findOptimizer name) options hypers with
        | t, [] -> Some t
        | _ -> None

    /// The learning rate an optimizer gets from these options: "lr" when given, else the
    /// optimizer's default, or for a wrapper, its inner optimizer's.
    let rec learningRateOf (name: string) (options: (string * string) list) : float =
        let e = findOptimizer name
        let o = OptionValues(e.Name, e.Options, options)
        if e.Options |> List.exists (fun s -> s.Name = "lr") then o.Float "lr"
        elif e.Options |> List.exists (fun s -> s.Name = "inner") then learningRateOf (o.Text "inner") o.Rest
        else Tensors.invalidArg "optimizer" $"{e.Name} has no learning rate option 'lr'"

    let private needSteps (owner: string) (option: string) (steps: int option) (o: OptionValues) : int =
        if o.IsGiven option then o.Int option
        else
            match steps with
            | Some n -> n
            | None -> Tensors.invalidArg option $"{owner}: option {option} is required (e.g. {option}=100)"

    let private required (owner: string) (option: string) (o: OptionValues) =
        if not (o.IsGiven option) then Tensors.invalidArg option $"{owner}: option {option} is required"

    let private cyclicEntry (name: string) (mode: float -> CyclicMode) (withGamma: bool) : ScheduleEntry =
        { Name = name
          Summary = $"cyclical learning rate, {name} policy: between base_lr and lr"
          Source = "Smith, WACV 2017; torch CyclicLR; lecture seed 003"
          Options =
            [ yield { Name = "base_lr"; Type = Number; Default = ""; Doc = "lower bound (default: lr / 4, Smith's 3-4x range)" }
              yield int "step_size_up" 2000 "steps from base_lr up to lr"
              yield { Name = "step_size_down"; Type = Integer; Default = ""; Doc = "steps from lr down to base_lr (default: step_size_up)" }
              if withGamma then yield num "gamma" 1.0 "amplitude factor per step, gamma^t" ]
          Create = fun lr _ o ->
            let up = o.Int "step_size_up"
            let down = if o.IsGiven "step_size_down" then o.Int "step_size_down" else up
            let baseLr = if o.IsGiven "base_lr" then o.Float "base_lr" else lr / 4.0
            Schedule.cyclic (mode (if withGamma then o.Float "gamma" else 1.0)) baseLr lr up down }

    /// Every learning-rate schedule, by name. The value is the learning rate itself; `lr` (the
    /// optimizer's learning rate, --lr) is the starting value of the decaying schedules (PyTorch's
    /// base lr) and the peak of cyclic, one-cycle and warm-up (PyTorch's max_lr). Options without
    /// a default are required, except lengths that default to the number of steps of the run.
    let schedules : ScheduleEntry list =
        [ { Name = "constant"; Summary = "lr at every step"; Source = "torch.optim default"; Options = []
            Create = fun lr _ _ -> Schedule.constant lr }
          { Name = "step"; Summary = "lr * gamma^floor(t / step_size)"; Source = "torch StepLR"
            Options = [ { Name = "step_size"; Type = Integer; Default = ""; Doc = "steps between decays (required)" }; num "gamma" 0.1 "decay factor" ]
            Create = fun lr _ o -> required "step" "step_size" o; Schedule.step lr (o.Int "step_size") (o.Float "gamma") }
          { Name = "multistep"; Summary = "lr * gamma^(number of milestones <= t)"; Source = "torch MultiStepLR"
            Options = [ { Name = "milestones"; Type = Numbers; Default = ""; Doc = "increasing steps, comma-separated (required)" }; num "gamma" 0.1 "decay factor" ]
            Create = fun lr _ o ->
              let ms = o.Floats "milestones" |> Option.defaultWith (fun () -> required "multistep" "milestones" o; [||])
              for m in ms do
                  if m <> Math.Floor m then Tensors.invalidArg "milestones" $"multistep: milestone {m} is not a whole number"
              Schedule.multistep lr (ms |> Array.map int32 |> List.ofArray) (o.Float "gamma") }
          { Name = "exponential"; Summary = "lr * gamma^t"; Source = "torch ExponentialLR"
            Options = [ { Name = "gamma"; Type = Number; Default = ""; Doc = "decay factor per step (required)" } ]
            Create = fun lr _ o -> required "exponential" "gamma" o; Schedule.exponential lr (o.Float "gamma") }
          { Name = "polynomial"; Summary = "(lr - end_lr) (1 - t / total_iters)^power + end_lr"; Source = "torch PolynomialLR; optax polynomial_schedule"
            Options =
              [ { Name = "total_iters"; Type = Integer; Default = ""; Doc = "steps of the decay (default: the run's steps)" }
                num "power" 1.0 "power of the decay"
                num "end_lr" 0.0 "final value (PyTorch: 0)" ]
            Create = fun lr steps o -> Schedule.polynomial lr (o.Float "end_lr") (o.Float "power") (needSteps "polynomial" "total_iters" steps o) }
          { Name = "cosine"; Summary = "cosine annealing from lr to eta_min over t_max steps"; Source = "Loshchilov and Hutter 2017; torch CosineAnnealingLR"
            Options =
              [ { Name = "t_max"; Type = Integer; Default = ""; Doc = "steps of the half cosine (default: the run's steps)" }
                num "eta_min" 0.0 "minimum" ]
            Create = fun lr steps o -> Schedule.cosine lr (needSteps "cosine" "t_max" steps o) (o.Float "eta_min") }
          { Name = "sgdr"; Summary = "cosine annealing with warm restarts, periods t_0 * t_mult^i"; Source = "Loshchilov and Hutter, ICLR 2017; torch CosineAnnealingWarmRestarts; lecture seed 003"
            Options =
              [ { Name = "t_0"; Type = Integer; Default = ""; Doc = "steps of the first period (required)" }
                int "t_mult" 1 "period growth factor (whole number)"
                num "eta_min" 0.0 "minimum" ]
            Create = fun lr _ o -> required "sgdr" "t_0" o; Schedule.sgdr lr (o.Int "t_0") (o.Int "t_mult") (o.Float "eta_min") }
          cyclicEntry "triangular" (fun _ -> CyclicMode.Triangular) false
          cyclicEntry "triangular2" (fun _ -> CyclicMode.Triangular2) false
          cyclicEntry "exp-range" CyclicMode.ExpRange true
          { Name = "one-cycle"; Summary = "1cycle: up from lr / div_factor to lr, then down to lr / div_factor / final_div_factor"
            Source = "Smith and Topin 2017; torch OneCycleLR; lecture seed 003"
            Options =
              [ { Name = "total_steps"; Type = Integer; Default = ""; Doc = "length of the cycle (default: the run's steps)" }
                num "pct_start" 0.3 "fraction of the cycle spent rising"
                num "div_factor" 25.0 "initial lr = lr / div_factor"
                num "final_div_factor" 1e4 "final lr = initial lr / final_div_factor"
                flag "three_phase" false "come back down to the initial lr before annealing to the final lr"
                flag "linear" false "anneal linearly (torch anneal_strategy='linear') instead of by cosine" ]
            Create = fun lr steps o ->
              Schedule.oneCycle lr (needSteps "one-cycle" "total_steps" steps o) (o.Float "pct_start") (o.Float "div_factor")
                  (o.Float "final_div_factor") (o.Bool "three_phase") (o.Bool "linear") }
          { Name = "warmup"; Summary = "linear warm-up from start_factor * lr to lr over warmup_steps, then lr"
            Source = "Goyal et al. 2017; torch LinearLR; lecture seed 003"
            Options =
              [ { Name = "warmup_steps"; Type = Integer; Default = ""; Doc = "steps of the warm-up (required)" }
                num "start_factor" 0.0 "first value as a fraction of lr" ]
            Create = fun lr _ o -> required "warmup" "warmup_steps" o; Schedule.warmup lr (o.Float "start_factor") (o.Int "warmup_steps") }
          { Name = "warmup-cosine"; Summary = "linear warm-up, then cosine annealing (join of warmup and cosine)"
            Source = "Goyal et al. 2017; Loshchilov and Hutter 2017; optax warmup_cosine_decay_schedule"
            Options =
              [ { Name = "warmup_steps"; Type = Integer; Default = ""; Doc = "steps of the warm-up (required)" }
                num "start_factor" 0.0 "first value as a fraction of lr"
                { Name = "t_max"; Type = Integer; Default = ""; Doc = "steps of the cosine after the warm-up (default: the run's steps - warmup_steps)" }
                num "eta_min" 0.0 "minimum" ]
            Create = fun lr steps o ->
              required "warmup-cosine" "warmup_steps" o
              let w = o.Int "warmup_steps"
              let tMax = needSteps "warmup-cosine" "t_max" (steps |> Option.map (fun n -> n - w)) o
              Schedule.join [ Schedule.warmup lr (o.Float "start_factor") w; Schedule.cosine lr tMax (o.Float "eta_min") ] [ w ] } ]

    let scheduleNames = schedules |> List.map (fun e -> e.Name)

    let findSchedule (name: string) : ScheduleEntry =
        match schedules |> List.tryFind (fun e -> e.Name = name.Trim().ToLowerInvariant()) with
        | Some e -> e
        | None -> Tensors.invalidArg "schedule" $"unknown schedule '{name}'; valid: {names scheduleNames}"

    /// Build a schedule from its name, the learning rate it starts from or peaks at, the length
    /// of the run when known, and options given as text.
    let createSchedule (name: string) (lr: float) (steps: int option) (options: (string * string) list) : Schedule =
        let e = findSchedule name
        e.Create lr steps (OptionValues(e.Name, e.Options, options))

    /// An optimizer, its learning rate given as a typed number (or left at its default), and
    /// optionally driven by a registered schedule (name and options) that starts from or peaks at
    /// that learning rate over a run of `steps`: the one way the CLI, the configs and the
    /// experiment host build "an optimizer with a scheduled lr". Also the schedule, for reporting
    /// the learning rate per step.
    let createScheduled (name: string) (options: (string * string) list) (lr: float option)
                        (schedule: (string * (string * string) list) option) (steps: int option) : Transformation * Schedule option =
        if lr.IsSome && options |> List.exists (fun (n, _) -> n = "lr") then
            Tensors.invalidArg "lr" $"{name}: the learning rate is given twice (as lr and among the options); give it once"
        let fixedLr = match lr with Some v -> Map.ofList [ "lr", Hyper.Fixed v ] | None -> Map.empty
        match schedule with
        | None -> createOptimizerWith name options fixedLr, None
        | Some(scheduleName, scheduleOptions) ->
            let baseLr = match lr with Some v -> v | None -> learningRateOf name options
            let f = createSchedule scheduleName baseLr steps scheduleOptions
            createOptimizerWith name options (Map.ofList [ "lr", Hyper.Scheduled f ]), Some f

    /// Split "name=value" into its parts, with a clear error otherwise.
    let parseAssignment (text: string) : string * string =
        match text.IndexOf '=' with
        | i when i > 0 -> text.Substring(0, i).Trim(), text.Substring(i + 1).Trim()
        | _ -> Tensors.invalidArg "opt" $"option '{text}' is not of the form name=value (e.g. beta1=0.9)"
