namespace Optimizers.Experiments

open System
open System.IO
open System.Text.Json
open Optimizers
open Optimizers.Tasks

/// `lr-range-test`: the LR range test (LrRangeTest in the core) of a registered optimizer on a
/// built-in task. CSV: the header step,lr,loss,smoothed_loss, one row per step of the sweep, then
/// comment lines ("# name: value") with why it stopped, the suggested lr and the lr of the
/// lowest smoothed loss. JSON: one object with the settings, "points", "stop", "stop_step",
/// "suggested_lr" and "min_loss_lr" (null when there is none).
module LrRange =

    type Settings =
        { Task: string
          TaskOptions: (string * string) list
          Optimizer: string
          /// Options of the optimizer except lr, which the test sweeps.
          OptimizerOptions: (string * string) list
          Test: LrRangeSettings
          Seed: int
          Dtype: string
          Format: string
          /// Write a PNG plot of the smoothed loss against the learning rate here.
          Plot: string option }

    let formats = [ "csv"; "json" ]

    let private stopText (stop: LrRangeStop) =
        match stop with
        | LrRangeStop.Completed -> "completed", None
        | LrRangeStop.Exploded k -> "exploded", Some k
        | LrRangeStop.NonFinite k -> "non-finite", Some k

    /// Run the test and write it to `out`; returns the result. Bad settings raise
    /// InvalidOptionException before any output.
    let run (s: Settings) (out: TextWriter) : LrRangeResult =
        let format = s.Format.Trim().ToLowerInvariant()
        if not (List.contains format formats) then
            Tensors.invalidArg "format" $"unknown format '{s.Format}'; valid: {Tensors.commas formats}"
        if s.OptimizerOptions |> List.exists (fun (n, _) -> n = "lr") then
            Tensors.invalidArg "lr" "lr-range-test sweeps the learning rate itself; give --min-lr and --max-lr instead of lr"
        LrRangeTest.validate s.Test
        let dtype = Tensors.parseDtype s.Dtype
        let task = Registry.createTask s.Task s.TaskOptions
        let make (lr: Hyper) = Registry.createOptimizerWith s.Optimizer s.OptimizerOptions (Map.ofList [ "lr", lr ])
        make (Hyper.Fixed s.Test.MinLr) |> ignore // bad optimizer options fail here, before any output
        let start = task.Init { TaskInit.Default with Seed = s.Seed; Dtype = dtype }
        let r = try LrRangeTest.run s.Test task make start finally Tree.dispose start
        let stop, stopStep = stopText r.Stop
        let opt (v: float option) = match v with Some x -> Output.num x | None -> "null"
        match format with
        | "csv" ->
            out.WriteLine "step,lr,loss,smoothed_loss"
            for p in r.Points do
                out.WriteLine($"{p.Step},{Output.num p.Lr},{Output.num p.Loss},{Output.num p.Smoothed}")
            let at = match stopStep with Some k -> $" at step {k}" | None -> ""
            out.WriteLine($"# stop: {stop}{at}")
            out.WriteLine($"# suggested_lr: {opt r.SuggestedLr}")
            out.WriteLine($"# min_loss_lr: {opt r.MinLossLr}")
        | _ ->
            let json = JsonSerializer.Serialize
            let opts (xs: (string * string) list) = "{" + String.Join(",", xs |> List.map (fun (k, v) -> $"{json k}:{json v}")) + "}"
            out.Write($"{{\"task\":{json s.Task},\"optimizer\":{json s.Optimizer},\"dtype\":{json s.Dtype},\"seed\":{s.Seed},")
            out.Write($"\"task_options\":{opts s.TaskOptions},\"optimizer_options\":{opts s.OptimizerOptions},")
            let t = s.Test
            out.Write($"\"min_lr\":{Output.num t.MinLr},\"max_lr\":{Output.num t.MaxLr},\"steps\":{t.Steps},\"beta\":{Output.num t.Beta},\"points\":[")
            let points =
                r.Points |> Array.map (fun p ->
                    $"{{\"step\":{p.Step},\"lr\":{Output.num p.Lr},\"loss\":{Output.num p.Loss},\"smoothed_loss\":{Output.num p.Smoothed}}}")
            out.Write(String.Join(",", points))
            let stepJson = match stopStep with Some k -> string k | None -> "null"
            out.WriteLine($"],\"stop\":{json stop},\"stop_step\":{stepJson},\"suggested_lr\":{opt r.SuggestedLr},\"min_loss_lr\":{opt r.MinLossLr}}}")
        r
