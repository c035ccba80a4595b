namespace Optimizers.Experiments

open System
open System.IO
open Argu
open Optimizers

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

    interface IArgParserTemplate with
        member a.Usage =
            match a with
            | Task _ -> "task: " + Tensors.commas Registry.taskNames
            | Start _ -> "start point, comma-separated (e.g. -1.5,2); default: drawn from --seed"
            | Dim _ -> "dimension of sum-of-squares (default 1000)"
            | Seed _ -> "seed of the start point when --start is not given (default 0)"
            | Optimizer _ -> "optimizer: " + Tensors.commas Registry.optimizerNames
            | Lr _ -> "learning rate (default: the optimizer's)"
            | Opt _ -> "optimizer option name=value, repeatable (momentum, beta1, beta2, eps, weight_decay, ...)"
            | Steps _ -> "number of optimizer steps (default 100)"
            | Dtype _ -> "float32 or float64 (default float32)"
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
            | Dtype _ -> "float32 or float64 (default float32)"
            | Format _ -> "table or csv (default table)"

type DemoArgs =
    | Quiet

    interface IArgParserTemplate with
        member a.Usage =
            match a with
            | Quiet -> "print only the table"

type ListArgs =
    | [<Hidden>] Unused

    interface IArgParserTemplate with
        member a.Usage =
            match a with
            | Unused -> ""

[<RequireQualifiedAccess>]
type Args =
    | [<CliPrefix(CliPrefix.None)>] Trace of ParseResults<TraceArgs>
    | [<CliPrefix(CliPrefix.None)>] Demo of ParseResults<DemoArgs>
    | [<CliPrefix(CliPrefix.None)>] Sensitivity of ParseResults<SensitivityArgs>
    | [<CliPrefix(CliPrefix.None)>] List of ParseResults<ListArgs>
    | [<CliPrefix(CliPrefix.None)>] Bench of ParseResults<BenchArgs>

    interface IArgParserTemplate with
        member a.Usage =
            match a with
            | Trace _ -> "print an optimizer's trajectory on a built-in task (CSV or JSON)"
            | Demo _ -> "compare the optimizers on the built-in tasks (the README's main job)"
            | Sensitivity _ -> "iterations until the loss falls below a threshold, per optimizer and initial learning rate"
            | List _ -> "list the optimizers and tasks with their options and defaults"
            | Bench _ -> "time an optimizer step (fast path, pure path, torch.optim, bandwidth bound) and its native memory"

/// The command line. Exit codes: 0 ok, 1 a run failed (e.g. diverged), 2 bad input.
module Cli =

    let private listAll (out: TextWriter) =
        out.WriteLine "Optimizers (--optimizer NAME, options as --opt name=value):"
        for e in Registry.optimizers do
            out.WriteLine($"  {e.Name,-10} {e.Summary}  [{e.Source}]")
            for o in e.Options do out.WriteLine($"      {o.Name,-14} default {o.Default,-8} {o.Doc}")
        out.WriteLine "Tasks (--task NAME):"
        for e in Registry.tasks do
            out.WriteLine($"  {e.Name,-16} {e.Summary}")
            for o in e.Options do out.WriteLine($"      {o.Name,-14} default {o.Default,-8} {o.Doc}")

    let private trace (r: ParseResults<TraceArgs>) (out: TextWriter) =
        let taskOptions =
            [ match r.TryGetResult TraceArgs.Start with
              | Some s -> yield "start", s
              | None -> ()
              match r.TryGetResult TraceArgs.Dim with
              | Some d -> yield "dim", string d
              | None -> () ]
        let optOptions =
            [ match r.TryGetResult TraceArgs.Lr with
              | Some lr -> yield "lr", Output.num lr
              | None -> ()
              for a in r.GetResults TraceArgs.Opt -> Registry.parseAssignment a ]
        Trace.run
            { Task = r.GetResult TraceArgs.Task
              TaskOptions = taskOptions
              Optimizer = r.GetResult TraceArgs.Optimizer
              OptimizerOptions = optOptions
              Steps = r.GetResult(TraceArgs.Steps, 100)
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
                  | Some s -> yield "start", s
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

    /// Run the command line; returns the exit code. Output goes to `out`, errors to `err`.
    let run (argv: string[]) (out: TextWriter) (err: TextWriter) : int =
        let parser = ArgumentParser.Create<Args>(programName = "optimizers")
        try
            let r = parser.ParseCommandLine(argv, raiseOnUsage = true)
            match r.GetSubCommand() with
            | Args.Trace t -> trace t out
            | Args.Demo d -> Demo.run (d.Contains DemoArgs.Quiet)
            | Args.Sensitivity s -> sensitivity s out
            | Args.List _ -> listAll out
            | Args.Bench b -> Bench.run (Bench.settings b) out err
            out.Flush()
            0
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
            err.WriteLine $"optimizers: {e.Message}"
            2
        | DivergedException(step, loss) ->
            out.Flush()
            err.WriteLine $"optimizers: the run diverged at step {step} (loss = {loss}); try a smaller learning rate"
            1
