namespace Optimizers.Experiments

open System
open System.IO
open System.Globalization
open System.Security.Cryptography
open System.Text
open System.Text.Json
open TorchSharp
open Optimizers
open Optimizers.Tasks

/// A task of a config's grid: a registered task with options (as text, checked against its specs).
type TaskSpec =
    { Name: string
      Label: string
      Options: (string * string) list }

/// A learning-rate schedule of an optimizer entry (Registry.schedules): the entry's lr is its base
/// or peak value.
type ScheduleSpec =
    { Name: string
      Options: (string * string) list }

/// An optimizer of a config's grid. `Lrs` overrides the grid's learning rates for this entry.
type OptimizerSpec =
    { Name: string
      Label: string
      Options: (string * string) list
      Schedule: ScheduleSpec option
      Lrs: float list option }

/// What a config measures per run, summarised over seeds in the report.
[<RequireQualifiedAccess>]
type Measure =
    /// The loss after the last step.
    | FinalLoss
    /// The mean of the loss over steps 0..T (every step, not only the recorded ones).
    | MeanLoss
    /// The lowest loss seen.
    | MinLoss
    /// The first step at which the loss is below the threshold (none if never).
    | StepsTo of threshold: float
    /// The value of a recorded metric at the last step (e.g. final:distance).
    | Final of metric: string
    /// The mean of the minibatch loss over the last k steps (steps T-k+1..T): a low-noise final
    /// loss (mean_last:K).
    | MeanLast of k: int

    member m.Name =
        match m with
        | FinalLoss -> "final_loss"
        | MeanLoss -> "mean_loss"
        | MinLoss -> "min_loss"
        | StepsTo t -> "steps_to:" + Output.num t
        | Final metric -> "final:" + metric
        | MeanLast k -> "mean_last:" + string k

/// A published number: the paper's value of a measure for a task and optimizer (by label), at a
/// learning rate when the paper gives one. `Where` says where it is printed (table, row).
type PaperValue =
    { Task: string
      Optimizer: string
      Lr: float option
      Measure: Measure
      Value: float
      Std: float option
      Where: string }

type Grid =
    { Tasks: TaskSpec list
      Optimizers: OptimizerSpec list
      /// Empty: each optimizer at its own default learning rate (unless its entry has lrs).
      Lrs: float list
      Seeds: int list
      Steps: int
      Dtype: string
      /// Record metrics every this many steps (the last step always); None: about 1000 points.
      RecordEvery: int option }

/// A claim of the seed that the config tests: `Better` beats `Worse` on a task and a measure
/// (docs/configs.md, "Claims"). The report gives it a verdict from the paired difference over seeds.
type ClaimSpec =
    { /// The seed's wording.
      Text: string
      /// Where the seed says it (section, figure, table).
      Where: string
      Task: string
      /// Optimizer labels: the one the seed says is better, and the one it beats.
      Better: string
      Worse: string
      Measure: Measure
      /// Learning rates of the two entries; None: the entry's only one, else its best for the measure.
      BetterLr: float option
      WorseLr: float option
      /// Compare the sensitivity to the learning rate instead: per seed, the range (max - min) of the
      /// measure over the entry's learning rates; the smaller range is the better.
      Sensitivity: bool }

/// The `quick` section: what `--quick` overrides so that the config finishes in minutes.
type QuickOverride =
    { Steps: int option
      Seeds: int list option
      Lrs: float list option
      RecordEvery: int option }

/// An experiment config (docs/configs.md).
type ExperimentConfig =
    { Name: string
      Source: string
      Description: string
      Grid: Grid
      /// Metrics recorded per step besides the loss ("lr", "param_norm", task metrics).
      Metrics: string list
      /// Of those, the ones recorded at the last step only: a `final:` measure needs them and
      /// `metrics` does not list them (an evaluation on a whole data set every step is costly).
      FinalOnly: string list
      Measures: Measure list
      Paper: PaperValue list
      /// The seed's claims that the report gives verdicts (holds, reversed, not significant).
      Claims: ClaimSpec list
      Quick: QuickOverride option
      /// The config as JSON text (stored in the results database).
      Json: string }

/// One run of a grid: what identifies it (Key, from Spec) and how to show and record it.
type RunSpec =
    { Config: string
      /// Position in the grid's order (tasks, optimizers, learning rates, seeds); shards split by it.
      Index: int
      Task: string
      TaskLabel: string
      TaskOptions: (string * string) list
      Optimizer: string
      OptimizerLabel: string
      OptimizerOptions: (string * string) list
      Schedule: ScheduleSpec option
      Lr: float option
      Seed: int
      Steps: int
      Dtype: string
      RecordEvery: int
      Metrics: string list
      /// Metrics recorded at the last step only (ExperimentConfig.FinalOnly).
      FinalOnly: string list
      Measures: Measure list
      /// Canonical JSON of (task, task options, optimizer, options, schedule, lr, seed, steps, dtype).
      Spec: string
      /// The first 16 hex digits of the SHA-256 of Spec.
      Key: string }

/// Metrics a run can record per step besides the loss. Generic ones work on any task; tasks offer
/// their own here (the MNIST tasks register test accuracy and the like), by task name.
module TaskMetrics =

    /// Compute a metric from the task's options and the current parameters.
    type Metric =
        { Name: string
          Doc: string
          Compute: (string * string) list -> Tree -> float }

    /// The learning rate (a schedule's value, or the rate a hypergradient optimizer keeps in its
    /// state, averaged over parameters when per-parameter): recorded by the runner itself.
    let lr = "lr"

    let private norm (p: Tree) =
        p.Values |> Array.sumBy (fun t -> use s = t.detach().square().sum() in s.ToDouble()) |> sqrt

    let generic : Metric list =
        [ { Name = "param_norm"; Doc = "Euclidean norm of all parameters"; Compute = fun _ p -> norm p } ]

    let private option (opts: (string * string) list) (name: string) (d: float) =
        match opts |> List.tryFind (fun (n, _) -> n = name) with
        | Some(_, v) -> Double.Parse(v, CultureInfo.InvariantCulture)
        | None -> d

    /// Tasks built for evaluation metrics, by name and options (the data sets are cached anyway).
    let private evaluationTasks = Collections.Concurrent.ConcurrentDictionary<string, Task>()

    /// The evaluation of one parameter tree on one split, shared by the metrics of that split
    /// (test_loss, test_top1 and test_top2 of a step cost one pass over the test set).
    let private evaluations =
        Runtime.CompilerServices.ConditionalWeakTable<Tree, Collections.Concurrent.ConcurrentDictionary<Optimizers.Data.Split, Metrics>>()

    let private evaluate (task: string) (opts: (string * string) list) (split: Optimizers.Data.Split) (p: Tree) : Metrics =
        // The evaluation sets do not depend on the order of the minibatches: every seed of a config
        // (each with its own data_seed) is evaluated on the same fixed sets.
        let opts = opts |> List.filter (fun (k, _) -> k <> "data_seed")
        let key = task + "|" + String.Join("|", opts |> List.sortBy fst |> List.map (fun (k, v) -> k + "=" + v))
        let t = evaluationTasks.GetOrAdd(key, fun _ -> Registry.createTask task opts)
        evaluations.GetOrCreateValue(p).GetOrAdd(split, fun s -> Task.evaluate t s p)

    /// Metrics of the data-driven tasks from their evaluation on a whole split (Task.Evaluate):
    /// the loss on the validation and test sets, and for classifiers the top-1 and top-2 accuracy
    /// (fractions) on the test set, as HyperAdam's Table 3 reports them.
    let private evaluationMetrics (task: string) (classifier: bool) : Metric list =
        let m name doc split (f: Metrics -> float option) =
            { Name = name; Doc = doc; Compute = fun opts p -> evaluate task opts split p |> f |> Option.defaultValue nan }
        [ m "train_loss" "mean loss on a fixed evaluation set of training data (the whole training split; lstm-sine: 1,000 fixed sequences): a low-noise training loss" Optimizers.Data.Train (fun x -> Some x.Loss)
          m "validation_loss" "mean loss on the whole validation split" Optimizers.Data.Validation (fun x -> Some x.Loss)
          m "test_loss" "mean loss on the whole test split (the hypergradient paper's validation loss)" Optimizers.Data.Test (fun x -> Some x.Loss)
          if classifier then
              m "test_top1" "top-1 accuracy on the test split (fraction)" Optimizers.Data.Test (fun x -> x.Top1)
              m "test_top2" "top-2 accuracy on the test split (fraction)" Optimizers.Data.Test (fun x -> x.Top2) ]

    let private registered =
        Collections.Concurrent.ConcurrentDictionary<string, Metric list>(
            dict
                ([ "rosenbrock",
                   [ { Name = "distance"; Doc = "distance to the minimum (a, a^2)"
                       Compute = fun opts p ->
                         let a = option opts "a" 1.0
                         let xs = Tree.toFloats p
                         sqrt ((xs[0] - a) ** 2.0 + (xs[1] - a * a) ** 2.0) } ]
                   "sum-of-squares",
                   [ { Name = "distance"; Doc = "distance to the minimum 0"; Compute = fun _ p -> norm p } ] ]
                 // The data-driven tasks (those with minibatches) have data splits; the image
                 // classifiers (those reading a data_dir) also have accuracies.
                 @ [ for e in Registry.tasks do
                       let has name = e.Options |> List.exists (fun o -> o.Name = name)
                       if has "batch_size" then yield e.Name, evaluationMetrics e.Name (has "data_dir") ]))

    /// Metrics where higher is better (accuracies): the report picks an optimizer's best learning
    /// rate for a `final:` measure of one of these by the highest mean, not the lowest.
    let private maximisedNames = Collections.Concurrent.ConcurrentDictionary<string, bool>(dict [ "test_top1", true; "test_top2", true ])

    /// Whether higher values of a metric are better.
    let maximised (metric: string) = maximisedNames.ContainsKey metric

    /// Declare a metric one where higher is better (for metrics registered by other tasks).
    let registerMaximised (metric: string) = maximisedNames[metric] <- true

    /// Offer metrics for a task (replaces what it offered before).
    let register (task: string) (metrics: Metric list) = registered[task] <- metrics

    /// The metrics a task offers, generic ones included (not "lr", which the runner records).
    let forTask (task: string) : Metric list =
        generic @ (match registered.TryGetValue task with | true, ms -> ms | _ -> [])

    /// Every metric name a config may ask for with these tasks.
    let namesFor (tasks: string list) : string list =
        lr :: [ for t in tasks do for m in forTask t -> m.Name ] |> List.distinct

/// Reading, validating, expanding and writing experiment configs.
module Config =

    let private fail (path: string) (message: string) : 'a = Tensors.invalidArg path $"{path}: {message}"

    let private at (path: string) (name: string) = if path = "" then name else path + "." + name
    let private item (path: string) (i: int) = $"{path}[{i}]"

    let private kind (e: JsonElement) =
        match e.ValueKind with
        | JsonValueKind.Object -> "an object"
        | JsonValueKind.Array -> "an array"
        | JsonValueKind.String -> $"the string {JsonSerializer.Serialize(e.GetString())}"
        | JsonValueKind.Number -> $"the number {e.GetRawText()}"
        | JsonValueKind.True | JsonValueKind.False -> e.GetRawText()
        | _ -> "null"

    let private fields (path: string) (e: JsonElement) (allowed: string list) =
        if e.ValueKind <> JsonValueKind.Object then fail (if path = "" then "(config)" else path) $"expected an object, got {kind e}"
        for p in e.EnumerateObject() do
            if not (List.contains p.Name allowed) then fail (at path p.Name) $"unknown field '{p.Name}'; valid: {Tensors.commas allowed}"

    let private tryField (e: JsonElement) (name: string) =
        match e.TryGetProperty name with
        | true, v when v.ValueKind <> JsonValueKind.Null -> Some v
        | _ -> None

    let private required (path: string) (e: JsonElement) (name: string) (what: string) =
        match tryField e name with
        | Some v -> v
        | None -> fail (at path name) $"missing field ({what})"

    let private str (path: string) (e: JsonElement) =
        if e.ValueKind = JsonValueKind.String then e.GetString() else fail path $"expected a string, got {kind e}"

    let private number (path: string) (e: JsonElement) =
        if e.ValueKind = JsonValueKind.Number then e.GetDouble() else fail path $"expected a number, got {kind e}"

    let private whole (path: string) (e: JsonElement) =
        match e.ValueKind with
        | JsonValueKind.Number ->
            match e.TryGetInt32() with
            | true, v -> v
            | _ -> fail path $"expected a whole number, got {kind e}"
        | _ -> fail path $"expected a whole number, got {kind e}"

    let private list (path: string) (e: JsonElement) (f: string -> JsonElement -> 'a) : 'a list =
        if e.ValueKind <> JsonValueKind.Array then fail path $"expected an array, got {kind e}"
        e.EnumerateArray() |> Seq.mapi (fun i x -> f (item path i) x) |> List.ofSeq

    let private nonEmpty (path: string) (xs: 'a list) = if xs.IsEmpty then fail path "must not be empty" else xs

    let private positiveLrs (path: string) (e: JsonElement) =
        list path e (fun p x -> let v = number p x in if v > 0.0 && not (Double.IsInfinity v) then v else fail p $"learning rate {Output.num v} is invalid; it must be > 0")

    let private seedList (path: string) (e: JsonElement) =
        list path e (fun p x -> let v = whole p x in if v >= 0 then v else fail p $"seed {v} is invalid; it must be >= 0") |> nonEmpty path

    let private positive (path: string) (what: string) (v: int) = if v >= 1 then v else fail path $"{what} = {v} is invalid; it must be >= 1"

    let private typeText (t: OptionType) =
        match t with
        | Number -> "a number"
        | Integer -> "a whole number"
        | Flag -> "true or false"
        | Numbers -> "an array of numbers"
        | Word | Text -> "a string"

    /// Any scalar as option text (options forwarded to an inner optimizer, checked when it is built).
    let private scalarText (path: string) (e: JsonElement) =
        match e.ValueKind with
        | JsonValueKind.Number -> Output.num (e.GetDouble())
        | JsonValueKind.String -> e.GetString()
        | JsonValueKind.True -> "true"
        | JsonValueKind.False -> "false"
        | JsonValueKind.Array -> String.Join(",", list path e number |> List.map Output.num)
        | _ -> fail path $"expected a number, string or true/false, got {kind e}"

    /// An option's value as the text the registry reads, checked against the owner's specs.
    let private optionText (path: string) (owner: string) (specs: OptionSpec list) (name: string) (e: JsonElement) =
        let p = at path name
        match specs |> List.tryFind (fun s -> s.Name = name) with
        | None when specs |> List.exists (fun s -> s.Name = OptionValues.RestName) -> scalarText p e
        | None -> fail p $"{owner}: unknown option '{name}'; valid options: {Tensors.commas (specs |> List.map (fun s -> s.Name))}"
        | Some s ->
            let wrong () = fail p $"{owner}: option {name} expects {typeText s.Type}, got {kind e}"
            match s.Type, e.ValueKind with
            | Number, JsonValueKind.Number -> Output.num (e.GetDouble())
            | Integer, JsonValueKind.Number -> (match e.TryGetInt32() with | true, v -> string v | _ -> wrong ())
            | Flag, (JsonValueKind.True | JsonValueKind.False) -> e.GetRawText()
            | Numbers, JsonValueKind.Array ->
                String.Join(",", e.EnumerateArray() |> Seq.map (fun x -> if x.ValueKind = JsonValueKind.Number then Output.num (x.GetDouble()) else wrong ()))
            | Numbers, JsonValueKind.Number -> Output.num (e.GetDouble())
            | (Word | Text), JsonValueKind.String -> e.GetString()
            | _ -> wrong ()

    let private options (path: string) (owner: string) (specs: OptionSpec list) (e: JsonElement option) =
        match e with
        | None -> []
        | Some o ->
            let p = at path "options"
            if o.ValueKind <> JsonValueKind.Object then fail p $"expected an object of name: value, got {kind o}"
            [ for prop in o.EnumerateObject() -> prop.Name, optionText p owner specs prop.Name prop.Value ]

    /// Run a registry constructor; its InvalidOptionException becomes an error at the option's path
    /// (when the option was given there) or else at `path`.
    let private checkAt (path: string) (given: (string * string) list) (lrPath: string option) (f: unit -> unit) =
        try f ()
        with :? InvalidOptionException as e ->
            let p =
                if given |> List.exists (fun (n, _) -> n = e.ParamName) then at (at path "options") e.ParamName
                elif e.ParamName = "lr" && lrPath.IsSome then lrPath.Value
                else path
            fail p e.Message

    let private parseTask (path: string) (e: JsonElement) : TaskSpec =
        fields path e [ "name"; "label"; "options" ]
        let namePath = at path "name"
        let name = str namePath (required path e "name" $"a task: {Tensors.commas Registry.taskNames}")
        let entry = try Registry.findTask name with :? InvalidOptionException as x -> fail namePath x.Message
        let opts = options path entry.Name entry.Options (tryField e "options")
        { Name = entry.Name
          Label = (match tryField e "label" with Some l -> str (at path "label") l | None -> entry.Name)
          Options = opts }

    let private parseSchedule (path: string) (e: JsonElement) : ScheduleSpec =
        fields path e [ "name"; "options" ]
        let namePath = at path "name"
        let name = str namePath (required path e "name" $"a schedule: {Tensors.commas Registry.scheduleNames}")
        let entry = try Registry.findSchedule name with :? InvalidOptionException as x -> fail namePath x.Message
        { Name = entry.Name; Options = options path entry.Name entry.Options (tryField e "options") }

    let private parseOptimizer (path: string) (e: JsonElement) : OptimizerSpec =
        fields path e [ "name"; "label"; "options"; "schedule"; "lrs" ]
        let namePath = at path "name"
        let name = str namePath (required path e "name" $"an optimizer: {Tensors.commas Registry.optimizerNames}")
        let entry = try Registry.findOptimizer name with :? InvalidOptionException as x -> fail namePath x.Message
        let opts = options path entry.Name entry.Options (tryField e "options")
        if opts |> List.exists (fun (n, _) -> n = "lr") then
            fail (at (at path "options") "lr") "give learning rates in grid.lrs (or this entry's lrs), not as an option"
        { Name = entry.Name
          Label = (match tryField e "label" with Some l -> str (at path "label") l | None -> entry.Name)
          Options = opts
          Schedule = tryField e "schedule" |> Option.map (parseSchedule (at path "schedule"))
          Lrs = tryField e "lrs" |> Option.map (fun l -> positiveLrs (at path "lrs") l |> nonEmpty (at path "lrs")) }

    let measureChoices = "final_loss, mean_loss, min_loss, mean_last:K, steps_to:THRESHOLD, final:METRIC"

    /// Parse a measure name (final_loss, mean_loss, min_loss, steps_to:1e-3, final:distance).
    let parseMeasure (path: string) (text: string) : Measure =
        match text.Trim() with
        | "final_loss" -> Measure.FinalLoss
        | "mean_loss" -> Measure.MeanLoss
        | "min_loss" -> Measure.MinLoss
        | t when t.StartsWith "steps_to:" ->
            match Double.TryParse(t.Substring 9, NumberStyles.Float, CultureInfo.InvariantCulture) with
            | true, v when not (Double.IsNaN v) -> Measure.StepsTo v
            | _ -> fail path $"'{t}': the threshold is not a number (e.g. steps_to:0.001)"
        | t when t.StartsWith "final:" && t.Length > 6 -> Measure.Final(t.Substring 6)
        | t when t.StartsWith "mean_last:" ->
            match Int32.TryParse(t.Substring 10, NumberStyles.None, CultureInfo.InvariantCulture) with
            | true, k when k >= 1 -> Measure.MeanLast k
            | _ -> fail path $"'{t}': K must be a whole number >= 1 (e.g. mean_last:50)"
        | t -> fail path $"unknown measure '{t}'; valid: {measureChoices}"

    let private uniqueLabels (path: string) (labels: string list) =
        labels |> List.iteri (fun i l ->
            if labels |> List.take i |> List.contains l then
                fail (at (item path i) "label") $"label '{l}' is used twice; give each entry a distinct label")

    /// The learning rates of an optimizer entry: its own, else the grid's, else its default (None).
    let lrsOf (grid: Grid) (o: OptimizerSpec) : float option list =
        match o.Lrs with
        | Some lrs -> lrs |> List.map Some
        | None when grid.Lrs.IsEmpty -> [ None ]
        | None -> grid.Lrs |> List.map Some

    /// The optimizer of a run with its learning rate and schedule, and the schedule. Raises
    /// InvalidOptionException.
    let createScheduled (o: OptimizerSpec) (lr: float option) (steps: int) : Transformation * Schedule option =
        Registry.createScheduled o.Name o.Options lr (o.Schedule |> Option.map (fun s -> s.Name, s.Options)) (Some steps)

    /// The optimizer of a run: with its learning rate and schedule. Raises InvalidOptionException.
    let createOptimizer (o: OptimizerSpec) (lr: float option) (steps: int) : Transformation = createScheduled o lr steps |> fst

    /// Why an optimizer cannot be built on this machine although its config is right: a learned
    /// optimizer given neither `file` nor `init_seed` uses the trained model shipped in
    /// models/<kind>.bin, and that file is not here (yet). None when it can be built. The host
    /// skips such runs with this message instead of failing them, so that a config naming the
    /// shipped models runs (without them) before they are committed, and with them after.
    let missingModel (optimizer: string) (options: (string * string) list) : string option =
        match Registry.learnedKinds |> List.tryFind (fun k -> k.Kind = optimizer) with
        | Some k ->
            let given name = options |> List.tryFind (fun (n, _) -> n = name) |> Option.map snd
            let ownFile = match given "file" with Some f -> f.Trim() <> "" | None -> false
            let seeded = match given "init_seed" with Some v -> (match Int32.TryParse v with | true, i -> i >= 0 | _ -> false) | None -> false
            if ownFile || seeded || (Optimizers.Learned.LearnedOptimizer.shipped k.Kind).IsSome then None
            else Some $"no trained {k.Kind} is shipped here (models/{k.Kind}.bin is missing); give the entry options.file = PATH (optimizers meta-train --kind {k.Kind} ... --out PATH)"
        | None -> None

    /// A claim: { text, where, task, better, worse, measure, lr | better_lr, worse_lr, sensitivity }.
    let private parseClaim (path: string) (e: JsonElement) (tasks: TaskSpec list) (optimizers: OptimizerSpec list) (grid: Grid) (measures: Measure list) : ClaimSpec =
        fields path e [ "text"; "where"; "task"; "better"; "worse"; "measure"; "lr"; "better_lr"; "worse_lr"; "sensitivity" ]
        let task = str (at path "task") (required path e "task" "a task label of the grid")
        if not (tasks |> List.exists (fun t -> t.Label = task)) then
            fail (at path "task") $"unknown task label '{task}'; valid: {Tensors.commas (tasks |> List.map (fun t -> t.Label))}"
        let entry (field: string) =
            let label = str (at path field) (required path e field "an optimizer label of the grid")
            match optimizers |> List.tryFind (fun o -> o.Label = label) with
            | Some o -> o
            | None -> fail (at path field) $"unknown optimizer label '{label}'; valid: {Tensors.commas (optimizers |> List.map (fun o -> o.Label))}"
        let better, worse = entry "better", entry "worse"
        if better.Label = worse.Label then fail (at path "worse") $"'{worse.Label}' is also the better one; a claim compares two optimizers"
        let mp = at path "measure"
        let measure = parseMeasure mp (str mp (required path e "measure" measureChoices))
        if not (List.contains measure measures) then
            fail mp $"'{measure.Name}' is not among the config's measures; valid: {Tensors.commas (measures |> List.map (fun m -> m.Name))}"
        let sensitivity =
            match tryField e "sensitivity" with
            | Some v when v.ValueKind = JsonValueKind.True -> true
            | Some v when v.ValueKind = JsonValueKind.False -> false
            | Some v -> fail (at path "sensitivity") $"expected true or false, got {kind v}"
            | None -> false
        let lrOf (field: string) (o: OptimizerSpec) =
            let given = match tryField e field with Some v -> Some(number (at path field) v, at path field) | None -> None
            let given = match given with Some g -> Some g | None -> tryField e "lr" |> Option.map (fun v -> number (at path "lr") v, at path "lr")
            match given with
            | Some(v, p) ->
                if sensitivity then fail p "a sensitivity claim compares over all the entry's learning rates; give no lr"
                if not (lrsOf grid o |> List.contains (Some v)) then
                    let valid = lrsOf grid o |> List.choose id |> List.map Output.num
                    fail p $"learning rate {Output.num v} is not in the grid for '{o.Label}'; valid: {Tensors.commas valid}"
                Some v
            | None -> None
        let betterLr, worseLr = lrOf "better_lr" better, lrOf "worse_lr" worse
        if sensitivity then
            for o in [ better; worse ] do
                if (lrsOf grid o).Length < 2 then fail (at path "sensitivity") $"'{o.Label}' runs at one learning rate only; a sensitivity claim needs several"
        { Text = str (at path "text") (required path e "text" "the seed's wording of the claim")
          Where = tryField e "where" |> Option.map (str (at path "where")) |> Option.defaultValue ""
          Task = task
          Better = better.Label
          Worse = worse.Label
          Measure = measure
          BetterLr = betterLr
          WorseLr = worseLr
          Sensitivity = sensitivity }

    let private parseQuick (path: string) (e: JsonElement) : QuickOverride =
        fields path e [ "steps"; "seeds"; "lrs"; "record_every" ]
        { Steps = tryField e "steps" |> Option.map (fun v -> whole (at path "steps") v |> positive (at path "steps") "steps")
          Seeds = tryField e "seeds" |> Option.map (seedList (at path "seeds"))
          Lrs = tryField e "lrs" |> Option.map (positiveLrs (at path "lrs"))
          RecordEvery = tryField e "record_every" |> Option.map (fun v -> whole (at path "record_every") v |> positive (at path "record_every") "record_every") }

    /// Build every task and optimizer of the grid once (no run): bad options, learning rates and
    /// schedules fail here with the field path, before anything runs.
    let private validateGrid (grid: Grid) (quick: QuickOverride option) =
        for i, t in List.indexed grid.Tasks do
            let path = item "grid.tasks" i
            // Missing or corrupt data files are errors of the task's data_dir (or of the task).
            let dataError (e: exn) =
                let p = if t.Options |> List.exists (fun (n, _) -> n = "data_dir") then at (at path "options") "data_dir" else path
                fail p e.Message
            try
                checkAt path t.Options None (fun () ->
                    let task = Registry.createTask t.Name t.Options
                    let dtype = Tensors.parseDtype grid.Dtype
                    let p = task.Init { TaskInit.Default with Seed = List.head grid.Seeds; Dtype = dtype }
                    Tree.dispose p)
            with
            | :? FileNotFoundException as e -> dataError e
            | :? DirectoryNotFoundException as e -> dataError e
            | :? InvalidDataException as e -> dataError e
        let stepsToCheck = grid.Steps :: (quick |> Option.bind (fun q -> q.Steps) |> Option.toList) |> List.distinct
        for i, o in List.indexed grid.Optimizers do
            let path = item "grid.optimizers" i
            let lrs =
                [ match o.Lrs with
                  | Some lrs -> yield! lrs |> List.mapi (fun j v -> Some v, Some(item (at path "lrs") j))
                  | None when grid.Lrs.IsEmpty -> yield None, None
                  | None -> yield! grid.Lrs |> List.mapi (fun j v -> Some v, Some(item "grid.lrs" j))
                  match quick |> Option.bind (fun q -> q.Lrs) with
                  | Some lrs when o.Lrs.IsNone -> yield! lrs |> List.mapi (fun j v -> Some v, Some(item "quick.lrs" j))
                  | _ -> () ]
            // A learned optimizer whose shipped model is missing: its options were checked against
            // its specs while parsing; it cannot be built until the model is there.
            let buildable = (missingModel o.Name o.Options).IsNone
            for lr, lrPath in lrs do
                for steps in (if buildable then stepsToCheck else []) do
                    checkAt path o.Options lrPath (fun () -> createOptimizer { o with Schedule = None } lr steps |> ignore)
                    match o.Schedule with
                    | Some s ->
                        checkAt (at path "schedule") s.Options None (fun () ->
                            let baseLr = match lr with Some v -> v | None -> Registry.learningRateOf o.Name o.Options
                            Registry.createSchedule s.Name baseLr (Some steps) s.Options |> ignore)
                        checkAt path o.Options lrPath (fun () -> createOptimizer o lr steps |> ignore)
                    | None -> ()

    /// Parse and validate a config from JSON text. `file` names it in errors about the JSON itself.
    /// Every error is an InvalidOptionException whose message starts with the field path.
    let parse (file: string) (json: string) : ExperimentConfig =
        let doc =
            try JsonDocument.Parse(json, JsonDocumentOptions(CommentHandling = JsonCommentHandling.Skip, AllowTrailingCommas = true))
            with :? JsonException as e ->
                let line = e.LineNumber |> Option.ofNullable |> Option.map (fun l -> l + 1L)
                let col = e.BytePositionInLine |> Option.ofNullable |> Option.map (fun c -> c + 1L)
                let where = match line, col with Some l, Some c -> $" at line {l}, column {c}" | _ -> ""
                Tensors.invalidArg "config" $"{file}: not valid JSON{where}"
        use doc = doc
        let root = doc.RootElement
        fields "" root [ "$schema"; "name"; "source"; "description"; "grid"; "metrics"; "measures"; "paper"; "claims"; "quick" ]
        let name = str "name" (required "" root "name" "the config's name, used for the database and report")
        if name.Trim() = "" || name |> Seq.exists (fun c -> Path.GetInvalidFileNameChars() |> Array.contains c || c = ' ') then
            fail "name" $"'{name}' is not a usable name; use letters, digits, '-' and '_'"
        let source = str "source" (required "" root "source" "the table or figure this config reproduces")
        let g = required "" root "grid" "tasks, optimizers, lrs, seeds, steps"
        fields "grid" g [ "tasks"; "optimizers"; "lrs"; "seeds"; "steps"; "dtype"; "record_every" ]
        let tasks = list "grid.tasks" (required "grid" g "tasks" "an array of {name, options}") parseTask |> nonEmpty "grid.tasks"
        uniqueLabels "grid.tasks" (tasks |> List.map (fun t -> t.Label))
        let optimizers = list "grid.optimizers" (required "grid" g "optimizers" "an array of {name, options}") parseOptimizer |> nonEmpty "grid.optimizers"
        uniqueLabels "grid.optimizers" (optimizers |> List.map (fun o -> o.Label))
        let dtype =
            match tryField g "dtype" with
            | Some d -> let v = str "grid.dtype" d in (try Tensors.parseDtype v |> ignore with :? InvalidOptionException as e -> fail "grid.dtype" e.Message); v.Trim().ToLowerInvariant()
            | None -> "float32"
        let grid =
            { Tasks = tasks
              Optimizers = optimizers
              Lrs = tryField g "lrs" |> Option.map (positiveLrs "grid.lrs") |> Option.defaultValue []
              Seeds = seedList "grid.seeds" (required "grid" g "seeds" "an array of whole numbers")
              Steps = whole "grid.steps" (required "grid" g "steps" "the number of optimizer steps per run") |> positive "grid.steps" "steps"
              Dtype = dtype
              RecordEvery = tryField g "record_every" |> Option.map (fun v -> whole "grid.record_every" v |> positive "grid.record_every" "record_every") }
        let available = TaskMetrics.namesFor (tasks |> List.map (fun t -> t.Name))
        let metricName path (m: string) =
            if List.contains m available then m else fail path $"unknown metric '{m}'; valid: {Tensors.commas available}"
        let measures =
            match tryField root "measures" with
            | Some m -> list "measures" m (fun p x -> parseMeasure p (str p x)) |> nonEmpty "measures"
            | None -> [ Measure.FinalLoss; Measure.MeanLoss ]
        measures |> List.iteri (fun i m -> match m with Measure.Final n -> metricName (item "measures" i) n |> ignore | _ -> ())
        let given = match tryField root "metrics" with Some m -> list "metrics" m (fun p x -> metricName p (str p x)) | None -> []
        let metrics = given @ [ for m in measures do match m with Measure.Final n -> yield n | _ -> () ] |> List.distinct
        let finalOnly = metrics |> List.filter (fun m -> not (List.contains m given) && m <> TaskMetrics.lr)
        let quick = tryField root "quick" |> Option.map (parseQuick "quick")
        let paper =
            match tryField root "paper" with
            | None -> []
            | Some p ->
                list "paper" p (fun path e ->
                    fields path e [ "task"; "optimizer"; "lr"; "measure"; "value"; "std"; "where" ]
                    let task = str (at path "task") (required path e "task" "a task label of the grid")
                    if not (tasks |> List.exists (fun t -> t.Label = task)) then
                        fail (at path "task") $"unknown task label '{task}'; valid: {Tensors.commas (tasks |> List.map (fun t -> t.Label))}"
                    let opt = str (at path "optimizer") (required path e "optimizer" "an optimizer label of the grid")
                    let entry =
                        match optimizers |> List.tryFind (fun o -> o.Label = opt) with
                        | Some o -> o
                        | None -> fail (at path "optimizer") $"unknown optimizer label '{opt}'; valid: {Tensors.commas (optimizers |> List.map (fun o -> o.Label))}"
                    let lr = tryField e "lr" |> Option.map (number (at path "lr"))
                    match lr with
                    | Some v when not (lrsOf grid entry |> List.contains (Some v)) ->
                        let valid = lrsOf grid entry |> List.choose id |> List.map Output.num
                        fail (at path "lr") $"learning rate {Output.num v} is not in the grid for '{opt}'; valid: {Tensors.commas valid}"
                    | _ -> ()
                    let mp = at path "measure"
                    let measure = parseMeasure mp (str mp (required path e "measure" measureChoices))
                    if not (List.contains measure measures) then
                        fail mp $"'{measure.Name}' is not among the config's measures; valid: {Tensors.commas (measures |> List.map (fun m -> m.Name))}"
                    { Task = task
                      Optimizer = opt
                      Lr = lr
                      Measure = measure
                      Value = number (at path "value") (required path e "value" "the published number")
                      Std = tryField e "std" |> Option.map (number (at path "std"))
                      Where = tryField e "where" |> Option.map (str (at path "where")) |> Option.defaultValue "" })
        let claims =
            match tryField root "claims" with
            | None -> []
            | Some c -> list "claims" c (fun path e -> parseClaim path e tasks optimizers grid measures)
        validateGrid grid quick
        { Name = name
          Source = source
          Description = tryField root "description" |> Option.map (str "description") |> Option.defaultValue ""
          Grid = grid
          Metrics = metrics
          FinalOnly = finalOnly
          Measures = measures
          Paper = paper
          Claims = claims
          Quick = quick
          Json = json }

    /// Read and validate a config file.
    let load (path: string) : ExperimentConfig =
        if not (File.Exists path) then Tensors.invalidArg "config" $"config file '{path}' not found"
        parse path (File.ReadAllText path)

    /// The grid with the quick section applied.
    let effectiveGrid (c: ExperimentConfig) (quick: bool) : Grid =
        if not quick then c.Grid
        else
            match c.Quick with
            | None -> Tensors.invalidArg "quick" $"quick: config '{c.Name}' has no quick section, so --quick cannot be used"
            | Some q ->
                { c.Grid with
                    Steps = defaultArg q.Steps c.Grid.Steps
                    Seeds = defaultArg q.Seeds c.Grid.Seeds
                    Lrs = defaultArg q.Lrs c.Grid.Lrs
                    RecordEvery = match q.RecordEvery with Some r -> Some r | None -> c.Grid.RecordEvery }

    let private sorted (xs: (string * string) list) = xs |> List.sortBy fst

    /// The canonical JSON that identifies a run.
    let canonical (task: string) (taskOptions: (string * string) list) (optimizer: string) (optimizerOptions: (string * string) list)
                  (schedule: ScheduleSpec option) (lr: float option) (seed: int) (steps: int) (dtype: string) : string =
        use ms = new MemoryStream()
        (
            use w = new Utf8JsonWriter(ms)
            let obj (name: string) (xs: (string * string) list) =
                w.WriteStartObject name
                for k, v in sorted xs do w.WriteString(k, v)
                w.WriteEndObject()
            w.WriteStartObject()
            w.WriteString("task", task)
            obj "task_options" taskOptions
            w.WriteString("optimizer", optimizer)
            obj "optimizer_options" optimizerOptions
            match schedule with
            | Some s ->
                w.WriteStartObject "schedule"
                w.WriteString("name", s.Name)
                obj "options" s.Options
                w.WriteEndObject()
            | None -> w.WriteNull "schedule"
            match lr with
            | Some v -> w.WriteString("lr", Output.num v)
            | None -> w.WriteNull "lr"
            w.WriteNumber("seed", seed)
            w.WriteNumber("steps", steps)
            w.WriteString("dtype", dtype)
            w.WriteEndObject()
        )
        Encoding.UTF8.GetString(ms.ToArray())

    /// The run key of a canonical spec.
    let keyOf (spec: string) : string =
        Convert.ToHexString(SHA256.HashData(Encoding.UTF8.GetBytes spec)).Substring(0, 16).ToLowerInvariant()

    /// Metrics every `recordEvery` steps; by default about 1000 points per run.
    let recordEvery (grid: Grid) = match grid.RecordEvery with Some r -> r | None -> max 1 (grid.Steps / 1000)

    /// The task options of one seed's run. A task with minibatches (an option data_seed) draws its
    /// data order from the run's seed, data_seed = seed, unless the config pins data_seed in the
    /// task's options: then every seed sees that one sequence of minibatches.
    let seedTaskOptions (t: TaskSpec) (seed: int) : (string * string) list =
        Registry.seedTaskOptions t.Name t.Options seed

    /// Every run of the config, in grid order: tasks, optimizers, learning rates, seeds.
    let expand (c: ExperimentConfig) (quick: bool) : RunSpec list =
        let g = effectiveGrid c quick
        [ for t in g.Tasks do
            for o in g.Optimizers do
                for lr in lrsOf g o do
                    for seed in g.Seeds do
                        let taskOptions = seedTaskOptions t seed
                        let spec = canonical t.Name taskOptions o.Name o.Options o.Schedule lr seed g.Steps g.Dtype
                        yield
                            { Config = c.Name; Index = 0; Task = t.Name; TaskLabel = t.Label; TaskOptions = taskOptions
                              Optimizer = o.Name; OptimizerLabel = o.Label; OptimizerOptions = o.Options; Schedule = o.Schedule
                              Lr = lr; Seed = seed; Steps = g.Steps; Dtype = g.Dtype; RecordEvery = recordEvery g
                              Metrics = c.Metrics; FinalOnly = c.FinalOnly; Measures = c.Measures; Spec = spec; Key = keyOf spec } ]
        |> List.mapi (fun i r -> { r with Index = i })

    /// Parse "i/N" (0 <= i < N).
    let parseShard (text: string) : int * int =
        match text.Split('/') with
        | [| a; b |] ->
            match Int32.TryParse a, Int32.TryParse b with
            | (true, i), (true, n) when n >= 1 && i >= 0 && i < n -> i, n
            | _ -> Tensors.invalidArg "shard" $"shard: '{text}' is invalid; use i/N with 0 <= i < N (e.g. 0/4)"
        | _ -> Tensors.invalidArg "shard" $"shard: '{text}' is invalid; use i/N with 0 <= i < N (e.g. 0/4)"

    /// The runs of shard i of N: those whose grid position is i modulo N.
    let shard (i: int, n: int) (runs: RunSpec list) : RunSpec list = runs |> List.filter (fun r -> r.Index % n = i)

    /// Write a config as JSON (used for configs built from flags, e.g. by `compare`). Option values
    /// are written with the JSON type their spec asks for, so that the text parses back.
    let toJson (name: string) (source: string) (description: string) (grid: Grid) (metrics: string list) (measures: Measure list) : string =
        use ms = new MemoryStream()
        (
            use w = new Utf8JsonWriter(ms, JsonWriterOptions(Indented = true))
            let value (specs: OptionSpec list) (k: string) (v: string) =
                let asNumber () =
                    match Double.TryParse(v, NumberStyles.Float, CultureInfo.InvariantCulture) with
                    | true, x when not (Double.IsNaN x || Double.IsInfinity x) -> w.WriteNumber(k, x); true
                    | _ -> false
                match specs |> List.tryFind (fun s -> s.Name = k) |> Option.map (fun s -> s.Type) with
                | Some Flag | None when v = "true" || v = "false" -> w.WriteBoolean(k, (v = "true"))
                | Some Numbers ->
                    w.WriteStartArray k
                    for x in v.Split(',', StringSplitOptions.TrimEntries ||| StringSplitOptions.RemoveEmptyEntries) do
                        match Double.TryParse(x, NumberStyles.Float, CultureInfo.InvariantCulture) with
                        | true, d -> w.WriteNumberValue d
                        | _ -> w.WriteStringValue x
                    w.WriteEndArray()
                | Some(Number | Integer) | None when asNumber () -> ()
                | _ -> w.WriteString(k, v)
            let opts (specs: OptionSpec list) (xs: (string * string) list) =
                if not xs.IsEmpty then
                    w.WriteStartObject "options"
                    for k, v in xs do value specs k v
                    w.WriteEndObject()
            w.WriteStartObject()
            w.WriteString("name", name)
            w.WriteString("source", source)
            if description <> "" then w.WriteString("description", description)
            w.WriteStartObject "grid"
            w.WriteStartArray "tasks"
            for t in grid.Tasks do
                w.WriteStartObject()
                w.WriteString("name", t.Name)
                if t.Label <> t.Name then w.WriteString("label", t.Label)
                opts (Registry.findTask t.Name).Options t.Options
                w.WriteEndObject()
            w.WriteEndArray()
            w.WriteStartArray "optimizers"
            for o in grid.Optimizers do
                w.WriteStartObject()
                w.WriteString("name", o.Name)
                if o.Label <> o.Name then w.WriteString("label", o.Label)
                opts (Registry.findOptimizer o.Name).Options o.Options
                match o.Schedule with
                | Some s ->
                    w.WriteStartObject "schedule"
                    w.WriteString("name", s.Name)
                    opts (Registry.findSchedule s.Name).Options s.Options
                    w.WriteEndObject()
                | None -> ()
                match o.Lrs with
                | Some lrs ->
                    w.WriteStartArray "lrs"
                    for lr in lrs do w.WriteNumberValue lr
                    w.WriteEndArray()
                | None -> ()
                w.WriteEndObject()
            w.WriteEndArray()
            if not grid.Lrs.IsEmpty then
                w.WriteStartArray "lrs"
                for lr in grid.Lrs do w.WriteNumberValue lr
                w.WriteEndArray()
            w.WriteStartArray "seeds"
            for s in grid.Seeds do w.WriteNumberValue s
            w.WriteEndArray()
            w.WriteNumber("steps", grid.Steps)
            w.WriteString("dtype", grid.Dtype)
            match grid.RecordEvery with Some r -> w.WriteNumber("record_every", r) | None -> ()
            w.WriteEndObject()
            if not metrics.IsEmpty then
                w.WriteStartArray "metrics"
                for m in metrics do w.WriteStringValue m
                w.WriteEndArray()
            w.WriteStartArray "measures"
            for m in measures do w.WriteStringValue m.Name
            w.WriteEndArray()
            w.WriteEndObject()
        )
        Encoding.UTF8.GetString(ms.ToArray())
