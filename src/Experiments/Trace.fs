namespace Optimizers.Experiments

open System
open System.IO
open System.Text.Json
open TorchSharp
open Optimizers
open Optimizers.Tasks

/// `trace`: an optimizer's path on a built-in task, one row per step, step 0 the start.
/// CSV has the header step,loss,p0,p1,...; JSON is one object with the settings and the rows.
/// With a schedule (Settings.Schedule) the optimizer's lr is the schedule (Registry.schedules: the
/// optimizer's lr is its base or peak value), and each row also has `lr`, the learning rate of the
/// step taken from that row's parameters (the schedule at that step): a last CSV column, a JSON field.
/// Rows are written as they are computed, so a diverging run still shows where it went.
module Trace =

    type Settings =
        { Task: string
          TaskOptions: (string * string) list
          Optimizer: string
          OptimizerOptions: (string * string) list
          /// The learning rate (--lr), or None for the optimizer's own.
          Lr: float option
          Steps: int
          /// A learning-rate schedule by name (Registry.schedules), or None for a constant lr.
          Schedule: string option
          ScheduleOptions: (string * string) list
          Seed: int
          Dtype: string
          Format: string
          /// Also print the learning rate(s) and hypergradient(s) the optimizer keeps in its state.
          ShowLr: bool }

    let formats = [ "csv"; "json" ]

    /// Run the trace and write it to `out`. Bad settings raise InvalidOptionException before any
    /// output; divergence raises DivergedException after the rows up to it.
    let run (s: Settings) (out: TextWriter) =
        let format = s.Format.Trim().ToLowerInvariant()
        if not (List.contains format formats) then
            Tensors.invalidArg "format" $"unknown format '{s.Format}'; valid: {Tensors.commas formats}"
        if s.Steps < 0 then Tensors.invalidArg "steps" $"steps = {s.Steps} is invalid; it must be >= 0"
        let dtype = Tensors.parseDtype s.Dtype
        let task = Registry.createTask s.Task s.TaskOptions
        if s.Schedule.IsNone && not s.ScheduleOptions.IsEmpty then
            Tensors.invalidArg "sched-opt" "schedule options were given without a schedule; add --schedule NAME"
        let opt, schedule =
            Registry.createScheduled s.Optimizer s.OptimizerOptions s.Lr (s.Schedule |> Option.map (fun n -> n, s.ScheduleOptions)) (Some s.Steps)
        let lrColumn = match schedule with Some _ -> ",lr" | None -> ""
        let lrAt step = match schedule with Some f -> "," + Output.num (f step) | None -> ""
        let start = task.Init { TaskInit.Default with Seed = s.Seed; Dtype = dtype }
        let width = int (Tree.numel start)
        let watched (st: State) =
            if s.ShowLr then State.watch "lr" st @ State.watch "hypergrad_lr" st else []
        let extra = watched (opt.Init start)
        if s.ShowLr && extra.IsEmpty then
            Tensors.invalidArg "show-lr" $"'{s.Optimizer}' keeps no learning rate in its state; --show-lr needs a hypergradient optimizer (e.g. sgd-hd, adam-hd, hd)"
        let columns = [ for i in 0 .. width - 1 -> $"p{i}" ] @ (extra |> List.map fst)
        let values p st = Seq.append (Tree.toFloats p) (watched st |> List.map (fun (_, t) -> t.ToDouble()))
        match format with
        | "csv" ->
            out.WriteLine("step,loss," + String.Join(",", columns) + lrColumn)
            let observe step loss p st =
                out.WriteLine(String.Join(",", Seq.append [ string step; Output.num loss ] (values p st |> Seq.map Output.num)) + lrAt step)
            let p, st = Run.optimizeObserved task opt start s.Steps observe
            Tree.dispose p; State.dispose st
        | _ ->
            let json = JsonSerializer.Serialize
            // Written by hand (not buffered in a document) so that long traces stream.
            out.Write($"{{\"task\":{json s.Task},\"optimizer\":{json s.Optimizer},\"dtype\":{json s.Dtype},\"seed\":{s.Seed},")
            let opts (xs: (string * string) list) = "{" + String.Join(",", xs |> List.map (fun (k, v) -> $"{json k}:{json v}")) + "}"
            out.Write($"\"task_options\":{opts s.TaskOptions},\"optimizer_options\":{opts s.OptimizerOptions},")
            match s.Schedule with
            | Some name -> out.Write($"\"schedule\":{json name},\"schedule_options\":{opts s.ScheduleOptions},")
            | None -> ()
            out.Write("\"trajectory\":[")
            let observe step loss p st =
                if step > 0 then out.Write(",")
                let ps = String.Join(",", Tree.toFloats p |> Seq.map Output.num)
                let lr = match schedule with Some f -> $",\"lr\":{Output.num (f step)}" | None -> ""
                let ws = String.Join("", watched st |> List.map (fun (n, t) -> $",{json n}:{Output.num (t.ToDouble())}"))
                out.Write($"{{\"step\":{step},\"loss\":{Output.num loss},\"params\":[{ps}]{lr}{ws}}}")
            let p, st = Run.optimizeObserved task opt start s.Steps observe
            Tree.dispose p; State.dispose st
            out.WriteLine("]}")
        Tree.dispose start
