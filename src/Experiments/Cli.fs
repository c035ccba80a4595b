namespace Optimizers.Experiments

open System
open System.IO
open Argu
open Optimizers

/// The help texts that several commands share.
module private Usage =
    let dtype = "float32 or float64 (default float32)"
    let jobs = "runs in parallel (default 1)"
    let threads = "TorchSharp threads per process (default: cores / jobs)"
    let tensorboard = "also write TensorBoard event files, one folder per run, under this directory"
    let quiet = "no progress and no summary"
    let db = "results database (default results/NAME.db); finished runs in it are skipped"

/// `trace` options. Names follow PyTorch; `--opt name=value` sets any other optimizer option.
type TraceArgs =
    | [<Mandatory; Unique>] Task of name: string
    | [<Unique; EqualsAssignmentOrSpaced>] Start of coordinates: string
    | [<Unique>] Dim of int
    | [<Unique>] Seed of int
    | [<Mandatory; Unique>] Optimizer of name: string
    | [<Unique; EqualsAssignmentOrSpaced>] Lr of float
    | [<EqualsAssignmentOrSpaced>] Opt of assignment: string
    | [<Unique>] Steps of int
    | [<Unique>] Dtype of string
    | [<Unique>] Format of string
    | Show_Lr
    | [<Unique>] Schedule of name: string
    | [<EqualsAssignmentOrSpaced>] Sched_Opt of assignment: string

    interface IArgParserTemplate with
        member a.Usage =
            match a with
            | Schedule _ -> "learning-rate schedule: " + Tensors.commas Registry.scheduleNames + "; --lr is its base (or peak) value"
            | Sched_Opt _ -> "schedule option name=value, repeatable (step_size, gamma, t_max, ...; see `list`)"
            | Task _ -> "task: " + Tensors.commas Registry.taskNames
            | Start _ -> "start point, comma-separated (e.g. -1.5,2); default: drawn from --seed"
            | Dim _ -> "dimension of sum-of-squares (default 1000)"
            | Seed _ -> "seed of the start point when --start is not given (default 0)"
            | Optimizer _ -> "optimizer: NAME or NAME:opt=value,opt=value (as evaluate takes it); NAME one of " + Tensors.commas Registry.optimizerNames
            | Lr _ -> "learning rate (default: the optimizer's)"
            | Opt _ -> "optimizer option name=value, repeatable (momentum, beta1, beta2, eps, weight_decay, ...)"
            | Steps _ -> "number of optimizer steps (default 100)"
            | Dtype _ -> Usage.dtype
            | Format _ -> "csv or json (default csv)"
            | Show_Lr -> "also print the learning rate and its hypergradient (hypergradient optimizers), as last columns"

/// `sensitivity` options: the hypergradient report's alpha_0 experiment on any task.
type SensitivityArgs =
    | [<Mandatory; Unique>] Task of name: string
    | [<Unique; EqualsAssignmentOrSpaced>] Start of coordinates: string
    | [<Unique>] Dim of int
    | [<Mandatory; Unique>] Optimizers of names: string
    | [<EqualsAssignmentOrSpaced>] Opt of assignment: string
    | [<Unique>] Lrs of values: string
    | [<Mandatory; Unique>] Threshold of float
    | [<Unique>] Max_Steps of int
    | [<Unique>] Seed of int
    | [<Unique>] Dtype of string
    | [<Unique>] Format of string

    interface IArgParserTemplate with
        member a.Usage =
            match a with
            | Task _ -> "task: " + Tensors.commas Registry.taskNames
            | Start _ -> "start point, comma-separated; default: drawn from --seed"
            | Dim _ -> "dimension of sum-of-squares"
            | Optimizers _ -> "comma-separated optimizers, e.g. sgd-hd,sgd_op-sgdn_lop"
            | Opt _ -> "option name=value for every optimizer, repeatable (e.g. hypergrad_lr=0.001)"
            | Lrs _ -> "initial learning rates (default: the report's 0.01,0.005,0.001,0.0005,0.0001)"
            | Threshold _ -> "the training-loss threshold"
            | Max_Steps _ -> "iteration budget per run (default 1000)"
            | Seed _ -> "seed of the start (default 0)"
            | Dtype _ -> Usage.dtype
            | Format _ -> "table or csv (default table)"

/// `lr-range-test` options: the sweep of the learning rate, the task and the optimizer.
type LrRangeTestArgs =
    | [<Mandatory; Unique>] Task of name: string
    | [<Unique; EqualsAssignmentOrSpaced>] Start of coordinates: string
    | [<Unique>] Dim of int
    | [<Unique>] Seed of int
    | [<Mandatory; Unique>] Optimizer of name: string
    | [<EqualsAssignmentOrSpaced>] Opt of assignment: string
    | [<Unique>] Min_Lr of float
    | [<Unique>] Max_Lr of float
    | [<Unique>] Steps of int
    | [<Unique>] Beta of float
    | [<Unique>] Dtype of string
    | [<Unique>] Format of string
    | [<Unique>] Plot of file: string

    interface IArgParserTemplate with
        member a.Usage =
            match a with
            | Task _ -> "task: " + Tensors.commas Registry.taskNames
            | Start _ -> "start point, comma-separated; default: drawn from --seed"
            | Dim _ -> "dimension of sum-of-squares (default 1000)"
            | Seed _ -> "seed of the start point when --start is not given (default 0)"
            | Optimizer _ -> "optimizer: NAME or NAME:opt=value,opt=value (as evaluate takes it); NAME one of " + Tensors.commas Registry.optimizerNames
            | Opt _ -> "optimizer option name=value except lr, repeatable"
            | Min_Lr _ -> "first learning rate of the sweep (default 1e-7)"
            | Max_Lr _ -> "last learning rate of the sweep (default 10)"
            | Steps _ -> "number of steps of the sweep (default 100)"
            | Beta _ -> "smoothing of the loss (default 0.98)"
            | Plot _ -> "also draw the loss against the learning rate to this PNG file"
            | Dtype _ -> Usage.dtype
            | Format _ -> "csv or json (default csv)"

/// `meta-train` options.
type MetaTrainArgs =
    | [<Mandatory; Unique>] Kind of name: string
    | [<EqualsAssignmentOrSpaced>] Opt of assignment: string
    | [<Mandatory; Unique>] Task of name: string
    | [<EqualsAssignmentOrSpaced>] Task_Opt of assignment: string
    | [<Unique>] Task_Choice of assignment: string
    | [<Unique>] Horizon of int
    | [<Unique>] Window of int
    | [<Unique>] Episodes of int
    | [<Unique>] Meta_Lr of float
    | [<Unique>] Meta_Lr_Final of float
    | [<Unique>] Random_Scaling of r: float
    | [<Unique>] Convex_Term of k: int
    | [<Unique>] Reset_Range of lo: int * hi: int
    | [<Unique>] Meta_Objective of string
    | [<Unique>] Validate_Every of int
    | [<Unique>] Validation_Seeds of int
    | [<Unique>] Validation_Split of split: string
    | Validation_Baseline of spec: string
    | [<Unique>] Init of file: string
    | [<Unique>] Init_Adam of lr: float
    | [<Unique>] Checkpoint of dir: string
    | [<Unique>] Checkpoint_Every of int
    | [<Unique>] Seed of int
    | [<Unique>] Dtype of string
    | [<Mandatory; Unique>] Out of file: string
    | [<Unique>] Threads of int
    | [<Unique>] Tensorboard of dir: string
    | Quiet

    interface IArgParserTemplate with
        member a.Usage =
            match a with
            | Tensorboard _ -> "also write TensorBoard event files (meta_loss, validation_loss per episode; the settings as text) under this directory"
            | Kind _ -> "learned optimizer kind: " + Tensors.commas (Registry.learnedKinds |> List.map (fun k -> k.Kind))
            | Opt _ -> "option of the kind, name=value, repeatable (hyperadam: j, hidden, lr, eps; every kind's options: see `list`)"
            | Task _ -> "optimizee task: " + Tensors.commas Registry.taskNames
            | Task_Opt _ -> "task option name=value, repeatable"
            | Task_Choice _ -> "name=v1,v2,...: each optimizee (episode and validation seed) takes one of these values of a task option in turn, e.g. activation=sigmoid,relu,elu,tanh to meta-train for all four"
            | Horizon _ -> "optimizer steps per episode, T (default 100)"
            | Window _ -> "steps per truncated-backprop window (default 20; must divide the horizon; u_max of msadam-rnn)"
            | Episodes _ -> "episodes, each a fresh optimizee (default 100)"
            | Meta_Lr _ -> "Adam's learning rate for theta (default 1e-4, HyperAdam's)"
            | Meta_Lr_Final _ -> "decay the meta learning rate exponentially to this (default: no decay)"
            | Random_Scaling _ -> "random scaling trick with c = exp(U(-r, r)) (Lv et al.; e.g. 3)"
            | Convex_Term _ -> "convex-term trick over a k-dimensional variable (Lv et al.; e.g. 20)"
            | Meta_Objective _ -> "what a window's meta-loss averages: mean (the optimizee loss, the papers'; default) log (its log: late steps count as much as early ones, Metz et al. 2019) or late-log (the log weighted by 2 t / (T + 1): the later the step, the more it counts)"
            | Reset_Range _ -> "random resets (the thesis's train_reset): each episode runs U(lo, hi) steps, cut to whole windows, instead of the horizon"
            | Validate_Every _ -> "validate every this many episodes (default 10)"
            | Validation_Seeds _ -> "validation optimizees (default 5)"
            | Validation_Split _ -> "the split whose loss after the horizon selects the best theta on a data task: validation (default; data never trained on) or train (the whole training split, what Table 1's claims read)"
            | Validation_Baseline _ -> "repeatable: an optimizer measured once on the same validation optimizees, for reference (NAME or NAME:opt=value, e.g. adam:lr=0.03125); printed and recorded in the file"
            | Init_Adam _ -> "hyperadam only: start theta at Adam with this rate (betas 0.9, 0.999; the J candidates' kernels slightly perturbed), e.g. the task's tuned rate, so meta-training starts from tuned Adam"
            | Init _ -> "start theta from this trained file of the same kind (e.g. a shipped model, to continue on new data); its options are used"
            | Checkpoint _ -> "checkpoint directory; a rerun with the same settings resumes from it"
            | Checkpoint_Every _ -> "episodes between checkpoints (default 10)"
            | Seed _ -> "seed of theta and of the episodes (default 0)"
            | Dtype _ -> Usage.dtype
            | Out _ -> "where to save the trained optimizer (the best theta by validation)"
            | Threads _ -> "LibTorch threads (default 1: faster for coordinate-wise optimizers here)"
            | Quiet -> "no progress bar"

/// `evaluate` options.
type EvaluateArgs =
    | [<Mandatory; Unique>] Task of name: string
    | [<EqualsAssignmentOrSpaced>] Task_Opt of assignment: string
    | [<Mandatory>] Optimizer of spec: string
    | [<Unique>] Steps of int
    | [<Unique>] Seeds of int
    | Validation
    | [<Unique>] Dtype of string
    | [<Unique>] Format of string
    | [<Unique>] Tensorboard of dir: string

    interface IArgParserTemplate with
        member a.Usage =
            match a with
            | Tensorboard _ -> "also write TensorBoard event files, one folder per optimizer and seed (loss, lr, learned_lr per step; the settings as text), under this directory"
            | Task _ -> "task: " + Tensors.commas Registry.taskNames
            | Task_Opt _ -> "task option name=value, repeatable"
            | Optimizer _ -> "repeatable: NAME or NAME:opt=value,opt=value (e.g. hyperadam:file=h.bin, adam:lr=0.03125)"
            | Steps _ -> "steps per run (default 100)"
            | Seeds _ -> "number of seeds (default 20); every optimizer sees the same ones, each seed its own minibatch order (data_seed = seed unless given)"
            | Validation -> "run on meta-train's validation optimizees (seeds -1001, -1002, ...) and read the loss on the validation split: for choosing among trained optimizers without touching the evaluation seeds 0, 1, ..."
            | Dtype _ -> Usage.dtype
            | Format _ -> "table, csv (one line per optimizer), runs (one line per optimizer and seed, for paired comparisons) or markdown; default table"

/// `inspect` options.
type InspectArgs =
    | [<Mandatory>] File of path: string
    | [<Unique>] Format of string

    interface IArgParserTemplate with
        member a.Usage =
            match a with
            | File _ -> "trained optimizer file, repeatable (msadam-la files side by side as in the thesis's Table 4.2)"
            | Format _ -> "table or csv (default table)"

/// `data fetch NAME` options.
type FetchArgs =
    | [<MainCommand; Mandatory>] Source of name: string
    | [<Unique>] Dir of path: string

    interface IArgParserTemplate with
        member a.Usage =
            match a with
            | Source _ -> "mnist or cifar10"
            | Dir _ -> "where to put the files (default data/NAME); pass it to the tasks as --task-opt data_dir=..."

/// `data` subcommands.
type DataArgs =
    | [<CliPrefix(CliPrefix.None)>] Fetch of ParseResults<FetchArgs>

    interface IArgParserTemplate with
        member a.Usage =
            match a with
            | Fetch _ -> "download the official files of a data set and verify their SHA-256"

type DemoArgs =
    | [<Unique>] Config of file: string
    | Quiet

    interface IArgParserTemplate with
        member a.Usage =
            match a with
            | Config _ -> "the demo's config (default: paper-configs/demo.json)"
            | Quiet -> "print only the summary table"

type ListArgs =
    | [<Hidden>] Unused

    interface IArgParserTemplate with
        member a.Usage =
            match a with
            | Unused -> ""

/// `run` options: an experiment from a JSON config (docs/configs.md).
type RunArgs =
    | [<MainCommand; ExactlyOnce>] Config of config: string
    | Quick
    | [<Unique>] Jobs of int
    | [<Unique>] Threads of int
    | [<Unique>] Db of file: string
    | [<Unique>] Tensorboard of dir: string
    | Quiet
    | Json

    interface IArgParserTemplate with
        member a.Usage =
            match a with
            | Config _ -> "the experiment config (JSON; see docs/configs.md)"
            | Quick -> "apply the config's quick section (fewer steps and seeds: minutes on 2 cores)"
            | Jobs _ -> Usage.jobs
            | Threads _ -> Usage.threads
            | Db _ -> Usage.db
            | Tensorboard _ -> Usage.tensorboard
            | Quiet -> Usage.quiet
            | Json -> "print the summary and the paper-vs-ours table as JSON"

/// `compare` options: optimizers x tasks x learning rates x seeds, from flags.
type CompareArgs =
    | [<Mandatory; Unique>] Tasks of names: string
    | [<EqualsAssignmentOrSpaced>] Task_Opt of assignment: string
    | [<Mandatory; Unique>] Optimizers of names: string
    | [<EqualsAssignmentOrSpaced>] Opt of assignment: string
    | [<Unique>] Schedule of name: string
    | [<EqualsAssignmentOrSpaced>] Sched_Opt of assignment: string
    | [<Unique>] Lrs of values: string
    | [<Unique>] Seeds of values: string
    | [<Unique>] Steps of int
    | [<Unique>] Dtype of string
    | [<Unique>] Record_Every of int
    | [<Unique>] Metrics of names: string
    | [<Unique>] Measures of names: string
    | [<Unique>] Name of string
    | [<Unique>] Jobs of int
    | [<Unique>] Threads of int
    | [<Unique>] Db of file: string
    | [<Unique>] Tensorboard of dir: string
    | Quiet
    | Json

    interface IArgParserTemplate with
        member a.Usage =
            match a with
            | Tasks _ -> "comma-separated tasks: " + Tensors.commas Registry.taskNames
            | Task_Opt _ -> "task option name=value for every task that has it, repeatable (e.g. dim=100, start=-1.5,2)"
            | Optimizers _ -> "comma-separated optimizers: " + Tensors.commas Registry.optimizerNames
            | Opt _ -> "optimizer option name=value for every optimizer that has it, repeatable (not lr: use --lrs)"
            | Schedule _ -> "learning-rate schedule for every optimizer: " + Tensors.commas Registry.scheduleNames
            | Sched_Opt _ -> "schedule option name=value, repeatable"
            | Lrs _ -> "comma-separated learning rates (default: each optimizer's own)"
            | Seeds _ -> "comma-separated seeds of the start points (default 0)"
            | Steps _ -> "optimizer steps per run (default 100)"
            | Dtype _ -> Usage.dtype
            | Record_Every _ -> "record metrics every N steps (default: about 1000 points per run)"
            | Metrics _ -> "comma-separated metrics to record besides the loss: lr, param_norm, or a task's (distance, ...)"
            | Measures _ -> "comma-separated measures: " + Config.measureChoices + " (default final_loss,mean_loss)"
            | Name _ -> "name of the comparison in the database (default compare)"
            | Jobs _ -> Usage.jobs
            | Threads _ -> Usage.threads
            | Db _ -> Usage.db
            | Tensorboard _ -> Usage.tensorboard
            | Quiet -> Usage.quiet
            | Json -> "print the summary and the table as JSON"

/// `sweep` options: one shard of a config's grid, for running across machines.
type SweepArgs =
    | [<MainCommand; ExactlyOnce>] Config of config: string
    | [<Unique>] Shard of spec: string
    | Quick
    | [<Unique>] Jobs of int
    | [<Unique>] Threads of int
    | [<Unique>] Db of file: string
    | [<Unique>] Tensorboard of dir: string
    | Quiet
    | Json

    interface IArgParserTemplate with
        member a.Usage =
            match a with
            | Config _ -> "the experiment config (JSON; see docs/configs.md)"
            | Shard _ -> "i/N: run the grid's runs whose position is i modulo N (0 <= i < N; default 0/1, the whole grid)"
            | Quick -> "apply the config's quick section"
            | Jobs _ -> Usage.jobs
            | Threads _ -> Usage.threads
            | Db _ -> "results database (default results/NAME.shard-i-of-N.db); finished runs in it are skipped"
            | Tensorboard _ -> Usage.tensorboard
            | Quiet -> Usage.quiet
            | Json -> "print the summary as JSON"

/// `merge` options: unite the databases of shards.
type MergeArgs =
    | [<MainCommand; ExactlyOnce>] Dbs of databases: string list
    | Quiet
    | Json

    interface IArgParserTemplate with
        member a.Usage =
            match a with
            | Dbs _ -> "OUT.db IN.db...: the output (created or extended) then the input databases"
            | Quiet -> "print nothing"
            | Json -> "print what was merged as JSON"

/// `report` options: Markdown, HTML and PNG plots for a config.
type ReportArgs =
    | [<MainCommand; Unique>] Config of config: string
    | [<Unique>] Db of file: string
    | [<Unique; CustomCommandLine("--config")>] Config_Name of name: string
    | Quick
    | [<Unique>] Full
    | [<Unique>] Out of dir: string
    | All
    | [<Unique>] Configs of dir: string
    | [<Unique>] Db_Dir of dir: string
    | Quiet
    | Json

    interface IArgParserTemplate with
        member a.Usage =
            match a with
            | All -> "every config of --configs: the full report of each whose database holds its finished grid, into --out/NAME (default docs/results), then the index --out/README.md"
            | Configs _ -> "with --all: the configs' directory (default paper-configs)"
            | Db_Dir _ -> "with --all: where the databases NAME.db are (default results)"
            | Config _ -> "the experiment config (JSON); without it, the config stored in --db"
            | Db _ -> "results database (default results/NAME.db)"
            | Config_Name _ -> "with --db alone: which stored config (needed when the database holds several)"
            | Quick -> "report the quick variant"
            | Full -> "report the full grid (default unless only the quick variant has results)"
            | Out _ -> "output directory (default reports/NAME or reports/NAME-quick)"
            | Quiet -> "print nothing"
            | Json -> "print the paper-vs-ours table and the files written as JSON"

/// `export` options: a table of a results database as CSV or JSON.
type ExportArgs =
    | [<Mandatory; Unique>] Db of file: string
    | [<Unique>] Format of string
    | [<Unique>] Table of name: string
    | [<Unique>] Config of name: string
    | [<Unique>] Out of file: string

    interface IArgParserTemplate with
        member a.Usage =
            match a with
            | Db _ -> "results database"
            | Format _ -> "csv or json (default csv)"
            | Table _ -> "runs (one row per run, with its command line), metrics (per step) or measures (default runs)"
            | Config _ -> "only the runs of this config"
            | Out _ -> "write to this file instead of standard output"

[<RequireQualifiedAccess>]
type Args =
    | [<CliPrefix(CliPrefix.None)>] Trace of ParseResults<TraceArgs>
    | [<CliPrefix(CliPrefix.None)>] Demo of ParseResults<DemoArgs>
    | [<CliPrefix(CliPrefix.None)>] Sensitivity of ParseResults<SensitivityArgs>
    | [<CliPrefix(CliPrefix.None)>] Data of ParseResults<DataArgs>
    | [<CliPrefix(CliPrefix.None)>] Meta_Train of ParseResults<MetaTrainArgs>
    | [<CliPrefix(CliPrefix.None)>] Evaluate of ParseResults<EvaluateArgs>
    | [<CliPrefix(CliPrefix.None)>] List of ParseResults<ListArgs>
    | [<CliPrefix(CliPrefix.None)>] Lr_Range_Test of ParseResults<LrRangeTestArgs>
    | [<CliPrefix(CliPrefix.None)>] Inspect of ParseResults<InspectArgs>
    | [<CliPrefix(CliPrefix.None)>] Run of ParseResults<RunArgs>
    | [<CliPrefix(CliPrefix.None)>] Compare of ParseResults<CompareArgs>
    | [<CliPrefix(CliPrefix.None)>] Sweep of ParseResults<SweepArgs>
    | [<CliPrefix(CliPrefix.None)>] Merge of ParseResults<MergeArgs>
    | [<CliPrefix(CliPrefix.None)>] Report of ParseResults<ReportArgs>
    | [<CliPrefix(CliPrefix.None)>] Export of ParseResults<ExportArgs>
    | [<CliPrefix(CliPrefix.None)>] Bench of ParseResults<BenchArgs>

    interface IArgParserTemplate with
        member a.Usage =
            match a with
            | Trace _ -> "print an optimizer's trajectory on a built-in task (CSV or JSON)"
            | Demo _ -> "Adam, Adam-HD and the shipped HyperAdam on MlpMnist, with a report and a summary (the README's main job)"
            | Sensitivity _ -> "iterations until the loss falls below a threshold, per optimizer and initial learning rate"
            | Data _ -> "data sets: fetch the official MNIST or CIFAR-10 files (checked by SHA-256)"
            | Meta_Train _ -> "meta-train a learned optimizer (HyperAdam, ...) and save it to a file"
            | Evaluate _ -> "optimizers, learned or not, on the same task and seeds: mean final loss and mean loss"
            | List _ -> "list the optimizers and tasks with their options and defaults"
            | Lr_Range_Test _ -> "sweep the learning rate exponentially and suggest one (Smith 2017)"
            | Inspect _ -> "what trained optimizers learned: Multiscale Adam weights per timescale, k Timesteps steps (thesis Tables 4.2, 4.3, 3.1)"
            | Run _ -> "run an experiment from a JSON config into a results database, resuming; then print paper vs ours"
            | Compare _ -> "run optimizers x tasks x learning rates x seeds given as flags; then print the table"
            | Sweep _ -> "run one shard (i/N) of a config's grid, for running across machines; merge the shards after"
            | Merge _ -> "merge results databases (OUT.db IN.db...), e.g. the shards of a sweep"
            | Report _ -> "write a Markdown and HTML report with plots (PNG) for a config: paper vs ours"
            | Export _ -> "export a results database's runs, metrics or measures as CSV or JSON"
            | Bench _ -> "time an optimizer step (fast path, pure path, torch.optim, bandwidth bound) and its native memory"

/// The command line. Exit codes: 0 ok, 1 a run failed (e.g. diverged), 2 bad input.
module Cli =

    let private listAll (out: TextWriter) =
        out.WriteLine "Optimizers (--optimizer NAME, options as --opt name=value):"
        for e in Registry.optimizers do
            out.WriteLine($"  {e.Name,-10} {e.Summary}  [{e.Source}]")
            for o in e.Options do out.WriteLine($"      {o.Name,-14} default {o.Default,-8} {o.Doc}")
        out.WriteLine "Learning-rate schedules (--schedule NAME, options as --sched-opt name=value; --lr is the base or peak value):"
        for e in Registry.schedules do
            out.WriteLine($"  {e.Name,-14} {e.Summary}  [{e.Source}]")
            for o in e.Options do out.WriteLine($"      {o.Name,-16} default {o.Default,-8} {o.Doc}")
        out.WriteLine "Tasks (--task NAME):"
        for e in Registry.tasks do
            out.WriteLine($"  {e.Name,-16} {e.Summary}")
            for o in e.Options do out.WriteLine($"      {o.Name,-14} default {o.Default,-8} {o.Doc}")

    /// --start: every coordinate a finite number (a NaN or infinite start is bad input, not a
    /// divergence at step 0). Returns the text unchanged for the task's own parser.
    let private checkStart (text: string) =
        for x in text.Split(',', StringSplitOptions.TrimEntries) do
            match Double.TryParse(x, Globalization.NumberStyles.Float, Globalization.CultureInfo.InvariantCulture) with
            | true, v when Double.IsFinite v -> ()
            | true, _ -> Tensors.invalidArg "start" $"--start = '{text}': coordinate '{x}' is not finite; give finite numbers, e.g. -1.5,2"
            | _ -> Tensors.invalidArg "start" $"--start = '{text}' is not a list of numbers, e.g. -1.5,2"
        text

    /// --optimizer NAME or NAME:opt=value,opt=value (as `evaluate` takes it), then the --opt
    /// assignments; an option given both ways is an error.
    let private optimizerSpec (spec: string) (more: (string * string) list) =
        let name, fromSpec = Evaluation.parseSpec spec
        for n, _ in more do
            if fromSpec |> List.exists (fun (m, _) -> m = n) then
                Tensors.invalidArg "opt" $"option '{n}' is given both in --optimizer {spec} and as --opt/--lr; give it once"
        name, fromSpec @ more

    let private trace (r: ParseResults<TraceArgs>) (out: TextWriter) =
        let taskOptions =
            [ match r.TryGetResult TraceArgs.Start with
              | Some s -> yield "start", checkStart s
              | None -> ()
              match r.TryGetResult TraceArgs.Dim with
              | Some d -> yield "dim", string d
              | None -> () ]
        let optOptions = [ for a in r.GetResults TraceArgs.Opt -> Registry.parseAssignment a ]
        let optName, optOptions = optimizerSpec (r.GetResult TraceArgs.Optimizer) optOptions
        Trace.run
            { Task = r.GetResult TraceArgs.Task
              TaskOptions = taskOptions
              Optimizer = optName
              OptimizerOptions = optOptions
              Lr = r.TryGetResult TraceArgs.Lr
              Steps = r.GetResult(TraceArgs.Steps, 100)
              Schedule = r.TryGetResult TraceArgs.Schedule
              ScheduleOptions = [ for a in r.GetResults TraceArgs.Sched_Opt -> Registry.parseAssignment a ]
              Seed = r.GetResult(TraceArgs.Seed, 0)
              Dtype = r.GetResult(TraceArgs.Dtype, "float32")
              Format = r.GetResult(TraceArgs.Format, "csv")
              ShowLr = r.Contains TraceArgs.Show_Lr }
            out

    let private parseFloats (name: string) (text: string) =
        text.Split(',', StringSplitOptions.RemoveEmptyEntries ||| StringSplitOptions.TrimEntries)
        |> Array.map (fun x ->
            match Double.TryParse(x, Globalization.NumberStyles.Float, Globalization.CultureInfo.InvariantCulture) with
            | true, v -> v
            | _ -> Tensors.invalidArg name $"--{name} = '{text}' is not a list of numbers (e.g. 0.01,0.001)")
        |> List.ofArray

    let private sensitivity (r: ParseResults<SensitivityArgs>) (out: TextWriter) =
        let settings : Sensitivity.Settings =
            { Task = r.GetResult SensitivityArgs.Task
              TaskOptions =
                [ match r.TryGetResult SensitivityArgs.Start with
                  | Some s -> yield "start", checkStart s
                  | None -> ()
                  match r.TryGetResult SensitivityArgs.Dim with
                  | Some d -> yield "dim", string d
                  | None -> () ]
              Optimizers = (r.GetResult SensitivityArgs.Optimizers).Split(',', StringSplitOptions.RemoveEmptyEntries ||| StringSplitOptions.TrimEntries) |> List.ofArray
              OptimizerOptions = [ for a in r.GetResults SensitivityArgs.Opt -> Registry.parseAssignment a ]
              Lrs = parseFloats "lrs" (r.GetResult(SensitivityArgs.Lrs, "0.01,0.005,0.001,0.0005,0.0001"))
              Threshold = r.GetResult SensitivityArgs.Threshold
              MaxSteps = r.GetResult(SensitivityArgs.Max_Steps, 1000)
              Seed = r.GetResult(SensitivityArgs.Seed, 0)
              Dtype = r.GetResult(SensitivityArgs.Dtype, "float32") }
        match r.GetResult(SensitivityArgs.Format, "table") with
        | "table" -> Sensitivity.writeTable settings.Threshold (Sensitivity.run settings)
        | "csv" -> Sensitivity.writeCsv out (Sensitivity.run settings)
        | f -> Tensors.invalidArg "format" $"unknown format '{f}'; valid: table, csv"
    let private lrRangeTest (r: ParseResults<LrRangeTestArgs>) (out: TextWriter) =
        let d = LrRangeTest.defaults
        let optName, optOptions = optimizerSpec (r.GetResult LrRangeTestArgs.Optimizer) [ for a in r.GetResults LrRangeTestArgs.Opt -> Registry.parseAssignment a ]
        LrRange.run
            { Task = r.GetResult LrRangeTestArgs.Task
              TaskOptions =
                [ match r.TryGetResult LrRangeTestArgs.Start with
                  | Some s -> yield "start", checkStart s
                  | None -> ()
                  match r.TryGetResult LrRangeTestArgs.Dim with
                  | Some n -> yield "dim", string n
                  | None -> () ]
              Optimizer = optName
              OptimizerOptions = optOptions
              Test =
                { d with
                    MinLr = r.GetResult(LrRangeTestArgs.Min_Lr, d.MinLr)
                    MaxLr = r.GetResult(LrRangeTestArgs.Max_Lr, d.MaxLr)
                    Steps = r.GetResult(LrRangeTestArgs.Steps, d.Steps)
                    Beta = r.GetResult(LrRangeTestArgs.Beta, d.Beta) }
              Seed = r.GetResult(LrRangeTestArgs.Seed, 0)
              Dtype = r.GetResult(LrRangeTestArgs.Dtype, "float32")
              Format = r.GetResult(LrRangeTestArgs.Format, "csv")
              Plot = r.TryGetResult LrRangeTestArgs.Plot }
            out
        |> ignore

    let private metaTrain (r: ParseResults<MetaTrainArgs>) (argv: string[]) (out: TextWriter) =
        MetaTraining.run
            { Kind = r.GetResult MetaTrainArgs.Kind
              KindOptions = [ for a in r.GetResults MetaTrainArgs.Opt -> Registry.parseAssignment a ]
              Task = r.GetResult MetaTrainArgs.Task
              TaskOptions = [ for a in r.GetResults MetaTrainArgs.Task_Opt -> Registry.parseAssignment a ]
              TaskChoice =
                r.TryGetResult MetaTrainArgs.Task_Choice
                |> Option.map (fun a -> let n, v = Registry.parseAssignment a in n, v.Split(',', StringSplitOptions.RemoveEmptyEntries ||| StringSplitOptions.TrimEntries) |> List.ofArray)
              Horizon = r.GetResult(MetaTrainArgs.Horizon, 100)
              Window = r.GetResult(MetaTrainArgs.Window, 20)
              Episodes = r.GetResult(MetaTrainArgs.Episodes, 100)
              MetaLr = r.GetResult(MetaTrainArgs.Meta_Lr, 1e-4)
              MetaLrFinal = r.TryGetResult MetaTrainArgs.Meta_Lr_Final
              RandomScaling = r.TryGetResult MetaTrainArgs.Random_Scaling
              ConvexTerm = r.TryGetResult MetaTrainArgs.Convex_Term
              ResetRange = r.TryGetResult MetaTrainArgs.Reset_Range
              Objective = r.GetResult(MetaTrainArgs.Meta_Objective, "mean")
              ValidateEvery = r.GetResult(MetaTrainArgs.Validate_Every, 10)
              ValidationSeeds = r.GetResult(MetaTrainArgs.Validation_Seeds, 5)
              ValidationSplit = r.GetResult(MetaTrainArgs.Validation_Split, "validation")
              ValidationBaselines = r.GetResults MetaTrainArgs.Validation_Baseline
              Init = r.TryGetResult MetaTrainArgs.Init
              InitAdam = r.TryGetResult MetaTrainArgs.Init_Adam
              Checkpoint = r.TryGetResult MetaTrainArgs.Checkpoint
              CheckpointEvery = r.GetResult(MetaTrainArgs.Checkpoint_Every, 10)
              Seed = r.GetResult(MetaTrainArgs.Seed, 0)
              Dtype = r.GetResult(MetaTrainArgs.Dtype, "float32")
              Out = r.GetResult MetaTrainArgs.Out
              Quiet = r.Contains MetaTrainArgs.Quiet
              Threads = r.GetResult(MetaTrainArgs.Threads, 1)
              TensorBoard = r.TryGetResult MetaTrainArgs.Tensorboard
              CommandLine = "optimizers " + String.Join(" ", argv |> Array.map (fun a -> if a.Contains ' ' then $"'{a}'" else a)) }
            out

    let private data (r: ParseResults<DataArgs>) (out: TextWriter) =
        match r.GetSubCommand() with
        | DataArgs.Fetch f ->
            let name = (f.GetResult FetchArgs.Source).Trim().ToLowerInvariant()
            let source =
                match Optimizers.Data.Fetch.sources |> List.tryFind (fun s -> s.Name = name) with
                | Some s -> s
                | None -> Tensors.invalidArg "name" $"unknown data set '{name}'; valid: {Tensors.commas (Optimizers.Data.Fetch.sources |> List.map (fun s -> s.Name))}"
            let dir = f.GetResult(FetchArgs.Dir, Path.Combine("data", name))
            let fetched = Optimizers.Data.Fetch.run source dir (fun file -> out.WriteLine $"downloading {file} ...")
            out.WriteLine $"{name}: {fetched.Length} file(s) downloaded, all verified, in {Path.GetFullPath dir}"

    let private evaluate (r: ParseResults<EvaluateArgs>) (out: TextWriter) =
        let taskName = r.GetResult EvaluateArgs.Task
        let taskOptions = [ for a in r.GetResults EvaluateArgs.Task_Opt -> Registry.parseAssignment a ]
        Registry.createTask taskName taskOptions |> ignore // bad options fail here, before any run
        let steps = r.GetResult(EvaluateArgs.Steps, 100)
        let n = r.GetResult(EvaluateArgs.Seeds, 20)
        let validation = r.Contains EvaluateArgs.Validation
        let seeds = if validation then Optimizers.Meta.MetaTrain.validationSeeds n else [ 0 .. n - 1 ]
        let write : Evaluation.Row list -> unit =
            match r.GetResult(EvaluateArgs.Format, "table") with
            | "table" -> Evaluation.writeTable $"{taskName}, {steps} steps, {seeds.Length} seeds"
            | "csv" -> Evaluation.writeCsv out
            | "runs" -> Evaluation.writeRunsCsv out
            | "markdown" -> Evaluation.writeMarkdown out
            | f -> Tensors.invalidArg "format" $"unknown format '{f}'; valid: table, csv, runs, markdown"
        let tensorboard = r.TryGetResult EvaluateArgs.Tensorboard |> Option.map (fun dir -> dir, [ "task", taskName; "task options", TensorBoard.options taskOptions ])
        let dtype = Tensors.parseDtype (r.GetResult(EvaluateArgs.Dtype, "float32"))
        write (Evaluation.run (Registry.createSeededTask taskName taskOptions) (r.GetResults EvaluateArgs.Optimizer) steps seeds (if validation then Optimizers.Data.Split.Validation else Optimizers.Data.Split.Train) dtype tensorboard)

    /// The command line of this invocation, as recorded with each run.
    let private commandLine (argv: string[]) =
        let quote (a: string) = if a = "" || a |> Seq.exists (fun c -> Char.IsWhiteSpace c || c = '\'' || c = '"') then "'" + a.Replace("'", "'\\''") + "'" else a
        "optimizers " + String.Join(" ", argv |> Array.map quote)

    let private compareParser = lazy (ArgumentParser.Create<CompareArgs>(programName = "optimizers compare"))

    /// The `compare` command line that runs one run of a grid alone (same run key).
    let reproduce (r: RunSpec) : string =
        let args =
            [ yield CompareArgs.Tasks r.Task
              for k, v in r.TaskOptions -> CompareArgs.Task_Opt $"{k}={v}"
              yield CompareArgs.Optimizers r.Optimizer
              for k, v in r.OptimizerOptions -> CompareArgs.Opt $"{k}={v}"
              match r.Schedule with
              | Some s ->
                  yield CompareArgs.Schedule s.Name
                  for k, v in s.Options -> CompareArgs.Sched_Opt $"{k}={v}"
              | None -> ()
              match r.Lr with
              | Some lr -> yield CompareArgs.Lrs(Output.num lr)
              | None -> ()
              yield CompareArgs.Seeds(string r.Seed)
              yield CompareArgs.Steps r.Steps
              yield CompareArgs.Dtype r.Dtype ]
        "optimizers compare " + compareParser.Force().PrintCommandLineArgumentsFlat args

    let private sweepSettings (argv: string[]) quick shard jobs threads db tensorboard quiet json : Host.SweepSettings =
        { Quick = quick; Shard = shard; Jobs = jobs; Threads = threads; Db = db; TensorBoard = tensorboard; Quiet = quiet; Json = json
          Command = commandLine argv; Reproduce = reproduce; Table = false }

    let private runVerb (argv: string[]) (r: ParseResults<RunArgs>) (out: TextWriter) (err: TextWriter) =
        Host.run (r.GetResult RunArgs.Config)
            (sweepSettings argv (r.Contains RunArgs.Quick) None (r.GetResult(RunArgs.Jobs, 1)) (r.TryGetResult RunArgs.Threads)
                (r.TryGetResult RunArgs.Db) (r.TryGetResult RunArgs.Tensorboard) (r.Contains RunArgs.Quiet) (r.Contains RunArgs.Json))
            out err

    let private sweepVerb (argv: string[]) (r: ParseResults<SweepArgs>) (out: TextWriter) (err: TextWriter) =
        let shard = r.TryGetResult SweepArgs.Shard |> Option.map Config.parseShard
        let config = Config.load (r.GetResult SweepArgs.Config)
        Host.sweep config
            (sweepSettings argv (r.Contains SweepArgs.Quick) shard (r.GetResult(SweepArgs.Jobs, 1)) (r.TryGetResult SweepArgs.Threads)
                (r.TryGetResult SweepArgs.Db) (r.TryGetResult SweepArgs.Tensorboard) (r.Contains SweepArgs.Quiet) (r.Contains SweepArgs.Json))
            out err

    let private compareVerb (argv: string[]) (r: ParseResults<CompareArgs>) (out: TextWriter) (err: TextWriter) =
        let names (text: string) = text.Split(',', StringSplitOptions.RemoveEmptyEntries ||| StringSplitOptions.TrimEntries) |> List.ofArray
        let seeds =
            names (r.GetResult(CompareArgs.Seeds, "0")) |> List.map (fun x ->
                match Int32.TryParse x with
                | true, v when v >= 0 -> v
                | _ -> Tensors.invalidArg "seeds" $"--seeds: '{x}' is not a seed (a whole number >= 0)")
        let settings : Host.CompareSettings =
            { Tasks = names (r.GetResult CompareArgs.Tasks)
              TaskOptions = [ for a in r.GetResults CompareArgs.Task_Opt -> Registry.parseAssignment a ]
              Optimizers = names (r.GetResult CompareArgs.Optimizers)
              OptimizerOptions = [ for a in r.GetResults CompareArgs.Opt -> Registry.parseAssignment a ]
              Schedule = r.TryGetResult CompareArgs.Schedule
              ScheduleOptions = [ for a in r.GetResults CompareArgs.Sched_Opt -> Registry.parseAssignment a ]
              Lrs = (match r.TryGetResult CompareArgs.Lrs with Some l -> parseFloats "lrs" l | None -> [])
              Seeds = seeds
              Steps = r.GetResult(CompareArgs.Steps, 100)
              Dtype = r.GetResult(CompareArgs.Dtype, "float32")
              RecordEvery = r.TryGetResult CompareArgs.Record_Every
              Metrics = (match r.TryGetResult CompareArgs.Metrics with Some m -> names m | None -> [])
              Measures = (match r.TryGetResult CompareArgs.Measures with Some m -> names m | None -> [])
              Name = r.GetResult(CompareArgs.Name, "compare") }
        Host.compare settings
            (sweepSettings argv false None (r.GetResult(CompareArgs.Jobs, 1)) (r.TryGetResult CompareArgs.Threads)
                (r.TryGetResult CompareArgs.Db) (r.TryGetResult CompareArgs.Tensorboard) (r.Contains CompareArgs.Quiet) (r.Contains CompareArgs.Json))
            out err

    let private mergeVerb (r: ParseResults<MergeArgs>) (out: TextWriter) (err: TextWriter) =
        match r.GetResult MergeArgs.Dbs with
        | output :: inputs when not inputs.IsEmpty -> Host.merge output inputs (r.Contains MergeArgs.Json) (r.Contains MergeArgs.Quiet) out err
        | _ -> Tensors.invalidArg "merge" "merge needs an output and at least one input database: merge OUT.db IN.db..."

    let private reportVerb (r: ParseResults<ReportArgs>) (out: TextWriter) (err: TextWriter) =
        if r.Contains ReportArgs.All then
            Host.reportAll (r.GetResult(ReportArgs.Configs, defaultValue = "paper-configs")) (r.GetResult(ReportArgs.Out, defaultValue = Path.Combine("docs", "results")))
                (r.TryGetResult ReportArgs.Db_Dir) (r.Contains ReportArgs.Quiet) out err
        else
        let quick =
            match r.Contains ReportArgs.Quick, r.Contains ReportArgs.Full with
            | true, true -> Tensors.invalidArg "quick" "--quick and --full exclude each other"
            | true, false -> Some true
            | false, true -> Some false
            | false, false -> None
        Host.report (r.TryGetResult ReportArgs.Config) (r.TryGetResult ReportArgs.Db) (r.TryGetResult ReportArgs.Config_Name) quick
            (r.TryGetResult ReportArgs.Out) (r.Contains ReportArgs.Json) (r.Contains ReportArgs.Quiet) out err

    let private exportVerb (r: ParseResults<ExportArgs>) (out: TextWriter) =
        Host.export (r.GetResult ExportArgs.Db) (r.GetResult(ExportArgs.Format, "csv")) (r.GetResult(ExportArgs.Table, "runs"))
            (r.TryGetResult ExportArgs.Config) (r.TryGetResult ExportArgs.Out) out

    /// A message as one line: its lines joined, up to LibTorch's stack that native errors carry.
    let private oneLine (m: string) =
        let ls =
            m.Split([| '\n'; '\r' |], StringSplitOptions.RemoveEmptyEntries ||| StringSplitOptions.TrimEntries)
            |> Array.takeWhile (fun l -> not (l.StartsWith "Exception raised from" || l.StartsWith "frame #"))
        if ls.Length = 0 then m.Trim() else String.Join(" ", ls)

    /// Errors that escape the verbs' own handling (issue 20): one line, never a stack trace.
    /// A database error, malformed JSON and an unparsable number are bad input (exit 2); anything
    /// else is ours (exit 1), said as such.
    let rec private unexpected (e: exn) (out: TextWriter) (err: TextWriter) : int =
        out.Flush()
        match e with
        | :? AggregateException as a when a.InnerExceptions.Count >= 1 -> unexpected (a.Flatten().InnerExceptions[0]) out err
        | :? Reflection.TargetInvocationException as t when not (isNull t.InnerException) -> unexpected t.InnerException out err
        | :? ArgumentException | :? FileNotFoundException | :? DirectoryNotFoundException | :? InvalidDataException ->
            err.WriteLine $"optimizers: {oneLine e.Message}"
            2
        | :? Microsoft.Data.Sqlite.SqliteException as s ->
            err.WriteLine $"optimizers: a results database {StoreCheck.describe s}"
            2
        | :? Text.Json.JsonException | :? FormatException | :? OverflowException ->
            err.WriteLine $"optimizers: {oneLine e.Message}"
            2
        | :? UnauthorizedAccessException ->
            err.WriteLine $"optimizers: {oneLine e.Message}; check the file's permissions"
            2
        | :? IOException ->
            err.WriteLine $"optimizers: {oneLine e.Message}"
            1
        | _ ->
            err.WriteLine $"optimizers: internal error ({e.GetType().Name}: {oneLine e.Message}); please report it with the command line"
            1

    /// Run the command line; returns the exit code. Output goes to `out`, errors to `err`.
    let run (argv: string[]) (out: TextWriter) (err: TextWriter) : int =
        let parser = ArgumentParser.Create<Args>(programName = "optimizers")
        let mutable exitCode = 0
        try
            let r = parser.ParseCommandLine(argv, raiseOnUsage = true)
            match r.GetSubCommand() with
            | Args.Trace t -> trace t out
            | Args.Demo d -> exitCode <- Demo.run (d.TryGetResult DemoArgs.Config) (d.Contains DemoArgs.Quiet) reproduce out err
            | Args.Sensitivity s -> sensitivity s out
            | Args.Data d -> data d out
            | Args.Meta_Train m -> metaTrain m argv out
            | Args.Evaluate e -> evaluate e out
            | Args.List _ -> listAll out
            | Args.Lr_Range_Test t -> lrRangeTest t out
            | Args.Inspect i -> Inspect.run { Files = i.GetResults InspectArgs.File; Format = i.GetResult(InspectArgs.Format, "table") } out
            | Args.Run a -> exitCode <- runVerb argv a out err
            | Args.Compare a -> exitCode <- compareVerb argv a out err
            | Args.Sweep a -> exitCode <- sweepVerb argv a out err
            | Args.Merge a -> exitCode <- mergeVerb a out err
            | Args.Report a -> exitCode <- reportVerb a out err
            | Args.Export a -> exitCode <- exportVerb a out
            | Args.Bench b -> Bench.run (Bench.settings b) out err
            out.Flush()
            exitCode
        with
        | :? ArguParseException as e when e.ErrorCode = ErrorCode.HelpText ->
            out.WriteLine e.Message
            0
        | :? ArguParseException as e ->
            // Argu's message is the error line followed by the whole usage: keep the error line.
            let first = e.Message.Split('\n', StringSplitOptions.RemoveEmptyEntries) |> Array.tryHead |> Option.defaultValue e.Message
            err.WriteLine $"optimizers: {first.Trim()} (see --help)"
            2
        | :? ArgumentException as e ->
            out.Flush()
            err.WriteLine $"optimizers: {oneLine e.Message}"
            2
        | DivergedException(step, loss) ->
            out.Flush()
            err.WriteLine $"optimizers: the run diverged at step {step} (loss = {loss}); try a smaller learning rate"
            1
        | :? FileNotFoundException as e ->
            out.Flush()
            err.WriteLine $"optimizers: {oneLine e.Message}"
            2
        | :? DirectoryNotFoundException as e ->
            out.Flush()
            err.WriteLine $"optimizers: {oneLine e.Message}"
            2
        | :? InvalidDataException as e ->
            out.Flush()
            err.WriteLine $"optimizers: {oneLine e.Message}"
            2
        | :? IOException as e ->
            out.Flush()
            err.WriteLine $"optimizers: {oneLine e.Message}"
            1
        | e -> unexpected e out err
