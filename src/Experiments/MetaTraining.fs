namespace Optimizers.Experiments

open System
open System.Diagnostics
open System.IO
open Spectre.Console
open Optimizers
open Optimizers.Learned
open Optimizers.Meta
open Optimizers.Tasks

/// `meta-train`: train a learned optimizer on a task and save it (best by validation) to a file,
/// with the command line that made it recorded inside.
module MetaTraining =

    type Settings =
        { Kind: string
          KindOptions: (string * string) list
          Task: string
          TaskOptions: (string * string) list
          /// A task option whose value each optimizee takes in turn from the list (by its seed).
          TaskChoice: (string * string list) option
          Horizon: int
          Window: int
          Episodes: int
          MetaLr: float
          MetaLrFinal: float option
          RandomScaling: float option
          ConvexTerm: int option
          ResetRange: (int * int) option
          Objective: string
          ValidateEvery: int
          ValidationSeeds: int
          /// "validation" or "train": the split whose loss selects the best theta (MetaSettings.ValidationSplit).
          ValidationSplit: string
          /// Optimizers (evaluate's NAME:opt=value specs) measured once on the validation optimizees,
          /// so that the log shows what the learned optimizer's validation loss has to beat.
          ValidationBaselines: string list
          /// A trained file of the same kind to start theta from (its options are the run's).
          Init: string option
          /// HyperAdam only: start theta at Adam with this rate (HyperAdam.adamTheta).
          InitAdam: float option
          Checkpoint: string option
          CheckpointEvery: int
          Seed: int
          Dtype: string
          Out: string
          Quiet: bool
          /// LibTorch threads; coordinate-wise learned optimizers work on many small tensors,
          /// where one thread measured faster than two (see the issue notes).
          Threads: int
          /// Write TensorBoard event files (meta_loss, validation_loss per episode) under this directory.
          TensorBoard: string option
          CommandLine: string }

    let run (s: Settings) (out: TextWriter) =
        let kind = Registry.findLearnedKind s.Kind
        if s.Threads < 1 then Tensors.invalidArg "threads" $"threads = {s.Threads} is invalid; it must be >= 1"
        TorchSharp.torch.set_num_threads s.Threads
        let init = s.Init |> Option.map (fun file -> file, LearnedOptimizer.load file)
        let kindOptions =
            match init with
            | None -> s.KindOptions
            | Some(file, t) when t.Kind <> kind.Kind ->
                Tensors.invalidArg "init" $"--init {file} holds a '{t.Kind}', not a '{kind.Kind}'; start from a file of the kind being trained"
            | Some(_, t) when s.KindOptions.IsEmpty -> t.Options
            | Some(file, t) when List.sort s.KindOptions <> List.sort t.Options ->
                Tensors.invalidArg "init" $"--init {file} was trained with options {TensorBoard.options t.Options}, not {TensorBoard.options s.KindOptions}; drop --opt to take the file's"
            | Some _ -> s.KindOptions
        let values = LearnedOptimizer.values kind kindOptions
        let taskFor =
            match s.TaskChoice with
            | None -> Registry.createSeededTask s.Task s.TaskOptions
            | Some(name, []) -> Tensors.invalidArg "task-choice" $"--task-choice {name}=: no values; give them as {name}=v1,v2"
            | Some(name, _) when s.TaskOptions |> List.exists (fun (n, _) -> n = name) ->
                Tensors.invalidArg "task-choice" $"--task-choice {name} and --task-opt {name} both set '{name}'; keep one"
            | Some(name, choices) ->
                for v in choices do Registry.createTask s.Task (s.TaskOptions @ [ name, v ]) |> ignore   // each value checked now
                fun seed -> Registry.createSeededTask s.Task (s.TaskOptions @ [ name, choices[((seed % choices.Length) + choices.Length) % choices.Length] ]) seed
        let initTheta =
            match init, s.InitAdam with
            | Some _, Some _ -> Tensors.invalidArg "init-adam" "--init and --init-adam both give the starting theta; pass one of them"
            | Some(_, t), None -> Some t.Theta
            | None, Some lr when kind.Kind = HyperAdam.kind.Kind -> Some(HyperAdam.adamTheta (LearnedRegistration.read HyperAdam.registration values) s.Seed lr 0.9 0.999 0.01)
            | None, Some _ -> Tensors.invalidArg "init-adam" $"--init-adam: '{kind.Kind}' has no Adam special case (only hyperadam has); drop it or start from a file with --init"
            | None, None -> None
        let settings : MetaSettings =
            { Kind = kind
              KindOptions = kindOptions
              // Each episode (and each validation seed) draws its own minibatch order.
              Task = taskFor
              InitTheta = initTheta
              Horizon = s.Horizon
              Window = s.Window
              Episodes = s.Episodes
              MetaLr = s.MetaLr
              MetaLrFinal = defaultArg s.MetaLrFinal s.MetaLr
              RandomScaling = s.RandomScaling
              ConvexTerm = s.ConvexTerm
              ResetRange = s.ResetRange
              Objective = MetaObjective.Parse s.Objective
              ValidateEvery = s.ValidateEvery
              // Validation optimizees come from seeds the training episodes never use.
              ValidationSeeds = MetaTrain.validationSeeds s.ValidationSeeds
              ValidationSplit =
                match s.ValidationSplit.Trim().ToLowerInvariant() with
                | "validation" -> Optimizers.Data.Split.Validation
                | "train" -> Optimizers.Data.Split.Train
                | other -> Tensors.invalidArg "validation_split" $"--validation-split {other} is invalid; give validation or train"
              CheckpointDir = s.Checkpoint
              CheckpointEvery = s.CheckpointEvery
              Seed = s.Seed
              Dtype = Tensors.parseDtype s.Dtype }
        let writer =
            s.TensorBoard |> Option.map (fun dir ->
                let w = TensorBoard.create dir [ "meta-train"; $"{kind.Kind}-{s.Task}"; $"seed={s.Seed}" ]
                TensorBoard.hparams w
                    [ "kind", kind.Kind; "kind options", TensorBoard.options s.KindOptions; "task", s.Task
                      "task options", TensorBoard.options s.TaskOptions; "horizon", string s.Horizon; "window", string s.Window
                      "episodes", string s.Episodes; "meta_lr", Output.num s.MetaLr
                      "meta_lr_final", (match s.MetaLrFinal with Some v -> Output.num v | None -> "none")
                      "random_scaling", (match s.RandomScaling with Some v -> Output.num v | None -> "none")
                      "convex_term", (match s.ConvexTerm with Some v -> string v | None -> "none")
                      "objective", s.Objective; "seed", string s.Seed; "dtype", s.Dtype; "command", s.CommandLine ]
                w)
        let logged (report: MetaProgress -> unit) (p: MetaProgress) =
            writer |> Option.iter (fun w ->
                if not p.Skipped then TensorBoard.scalar w "meta_loss" (p.Episode + 1) p.MetaLoss
                p.Validation |> Option.iter (TensorBoard.scalar w "validation_loss" (p.Episode + 1)))
            report p
        let baselines =
            [ for spec in s.ValidationBaselines ->
                let name, options = Evaluation.parseSpec spec
                spec, MetaTrain.meanValidationLoss settings (Registry.createOptimizer name options) ]
        for spec, v in baselines do
            out.WriteLine $"validation baseline {spec}: {Output.short v} (mean over the {s.ValidationSeeds} validation optimizees, {s.ValidationSplit} split)"
            writer |> Option.iter (fun w -> TensorBoard.scalar w $"validation_baseline/{spec}" 0 v)
        let sw = Stopwatch.StartNew()
        let train (report: MetaProgress -> unit) = MetaTrain.train settings (logged report)
        let result =
            if s.Quiet then train ignore
            else
                AnsiConsole.Progress()
                    .Columns(TaskDescriptionColumn(), ProgressBarColumn(), PercentageColumn(), RemainingTimeColumn(), SpinnerColumn())
                    .Start(fun ctx ->
                        let bar = ctx.AddTask($"meta-training {kind.Kind} on {s.Task}", maxValue = float s.Episodes)
                        train (fun p ->
                            let v = match p.Validation with Some v -> $", validation {Output.short v}" | None -> ""
                            bar.Description <- $"episode {p.Episode + 1}/{p.Episodes}: meta-loss {Output.short p.MetaLoss}{v}"
                            bar.Value <- float (p.Episode + 1)
                            // each validation on a line of its own, above the bar, so that a log keeps them all
                            p.Validation |> Option.iter (fun v -> AnsiConsole.WriteLine $"episode {p.Episode + 1}: validation {Output.short v}")))
        sw.Stop()
        let info =
            [ "command", s.CommandLine
              "wall_seconds", sw.Elapsed.TotalSeconds.ToString("F1", Globalization.CultureInfo.InvariantCulture)
              "meta_losses", String.Join(" ", result.MetaLosses |> List.map Output.short)
              "validations", String.Join(" ", result.Validations |> List.map (fun (e, v) -> $"{e + 1}:{Output.short v}"))
              "validation_split", s.ValidationSplit ]
            @ [ for spec, v in baselines -> $"validation_baseline {spec}", Output.short v ]
        let withInfo (t: TrainedOptimizer) = { t with Info = List.fold (fun m (k, v) -> Map.add k v m) t.Info info }
        LearnedOptimizer.save s.Out (withInfo result.Best)
        LearnedOptimizer.save (Path.ChangeExtension(s.Out, ".last.bin")) (withInfo result.Last)
        let first = result.MetaLosses |> List.truncate 10 |> List.filter (Double.IsNaN >> not)
        let last = result.MetaLosses |> List.rev |> List.truncate 10 |> List.filter (Double.IsNaN >> not)
        let mean (xs: float list) = if xs.IsEmpty then nan else List.average xs
        out.WriteLine(
            $"saved {s.Out} (best by validation) and its last theta beside it; "
            + $"meta-loss {Output.short (mean first)} (first 10 episodes) -> {Output.short (mean last)} (last 10); {sw.Elapsed.TotalSeconds:F0} s")
