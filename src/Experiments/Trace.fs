namespace Optimizers.Experiments

open System
open System.IO
open System.Text.Json
open Optimizers
open Optimizers.Tasks

/// `trace`: an optimizer's path on a built-in task, one row per step, step 0 the start.
/// CSV has the header step,loss,p0,p1,...; JSON is one object with the settings and the rows.
/// Rows are written as they are computed, so a diverging run still shows where it went.
module Trace =

    type Settings =
        { Task: string
          TaskOptions: (string * string) list
          Optimizer: string
          OptimizerOptions: (string * string) list
          Steps: int
          Seed: int
          Dtype: string
          Format: string }

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
        let opt = Registry.createOptimizer s.Optimizer s.OptimizerOptions
        let start = task.Init { TaskInit.Default with Seed = s.Seed; Dtype = dtype }
        let width = int (Tree.numel start)
        match format with
        | "csv" ->
            out.WriteLine("step,loss," + String.Join(",", Seq.init width (fun i -> $"p{i}")))
            let observe step loss p =
                out.WriteLine(String.Join(",", Seq.append [ string step; Output.num loss ] (Tree.toFloats p |> Seq.map Output.num)))
            let p, st = Run.optimize task opt start s.Steps observe
            Tree.dispose p; State.dispose st
        | _ ->
            let json = JsonSerializer.Serialize
            // Written by hand (not buffered in a document) so that long traces stream.
            out.Write($"{{\"task\":{json s.Task},\"optimizer\":{json s.Optimizer},\"dtype\":{json s.Dtype},\"seed\":{s.Seed},")
            let opts (xs: (string * string) list) = "{" + String.Join(",", xs |> List.map (fun (k, v) -> $"{json k}:{json v}")) + "}"
            out.Write($"\"task_options\":{opts s.TaskOptions},\"optimizer_options\":{opts s.OptimizerOptions},\"trajectory\":[")
            let observe step loss p =
                if step > 0 then out.Write(",")
                let ps = String.Join(",", Tree.toFloats p |> Seq.map Output.num)
                out.Write($"{{\"step\":{step},\"loss\":{Output.num loss},\"params\":[{ps}]}}")
            let p, st = Run.optimize task opt start s.Steps observe
            Tree.dispose p; State.dispose st
            out.WriteLine("]}")
        Tree.dispose start
