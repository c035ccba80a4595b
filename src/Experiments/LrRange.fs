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
/// "suggested_lr" and "min_loss_lr" (null when there is none). With Plot, also a PNG (ScottPlot)
/// of the loss and the smoothed loss against the learning rate, both axes logarithmic when the
/// losses are positive, with the suggestion marked.
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

    /// Draw the sweep to a PNG file (800 x 500).
    let plot (path: string) (title: string) (r: LrRangeResult) =
        use plt = new ScottPlot.Plot()
        let xs = r.Points |> Array.map (fun p -> Math.Log10 p.Lr)
        let logY = r.Points |> Array.forall (fun p -> p.Loss > 0.0 && p.Smoothed > 0.0)
        let y (v: float) = if logY then Math.Log10 v else v
        let power (v: float) = (10.0 ** v).ToString("G3", Globalization.CultureInfo.InvariantCulture)
        let raw = plt.Add.ScatterLine(xs, r.Points |> Array.map (fun p -> y p.Loss))
        raw.LegendText <- "loss"
        raw.LineWidth <- 1.0f
        let smooth = plt.Add.ScatterLine(xs, r.Points |> Array.map (fun p -> y p.Smoothed))
        smooth.LegendText <- "smoothed loss"
        smooth.LineWidth <- 2.0f
        match r.SuggestedLr with
        | Some lr ->
            let v = plt.Add.VerticalLine(Math.Log10 lr)
            v.LegendText <- "suggested lr " + Output.short lr
        | None -> ()
        let xTicks = ScottPlot.TickGenerators.NumericAutomatic()
        xTicks.LabelFormatter <- Func<float, string>(power)
        plt.Axes.Bottom.TickGenerator <- xTicks
        if logY then
            let yTicks = ScottPlot.TickGenerators.NumericAutomatic()
            yTicks.LabelFormatter <- Func<float, string>(power)
            plt.Axes.Left.TickGenerator <- yTicks
        plt.XLabel "learning rate (log scale)"
        plt.YLabel(if logY then "training loss (log scale)" else "training loss")
        plt.Title title
        plt.ShowLegend() |> ignore
        plt.SavePng(path, 800, 500) |> ignore

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
        match s.Plot with
        | Some path -> plot path $"LR range test: {s.Optimizer} on {s.Task}" r
        | None -> ()
        r
