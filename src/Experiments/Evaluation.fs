namespace Optimizers.Experiments

open System
open System.IO
open Spectre.Console
open Optimizers
open Optimizers.Data
open Optimizers.Tasks

/// `evaluate`: optimizers (learned or hand-designed) on the same task from the same seeds, for any
/// number of steps, without a graph. Each seed draws its own minibatch order (data_seed = seed
/// unless the task options pin it), the same for every optimizer, so differences are paired.
/// Measures per run: the last minibatch's loss (the papers' "final loss"), the mean loss over the
/// run, and, for data-driven tasks, the low-noise ones: the loss on the whole training split after
/// the last step and the test split's top-1 accuracy (docs/configs.md, "Fair measure").
module Evaluation =

    /// One run (optimizer, seed) that did not diverge.
    type RunResult =
        { Seed: int
          Final: float
          Mean: float
          /// Loss on the whole split `Row.LossSplit` (the training split, or the validation split
          /// for choosing among trained optimizers) after the last step (data-driven tasks).
          SplitLoss: float option
          /// Top-1 accuracy on the test split after the last step (classifiers).
          TestTop1: float option }

    type Row =
        { Optimizer: string
          Runs: RunResult list
          Diverged: int
          LossSplit: Split }

    /// "name" or "name:opt=value,opt=value" (values must not contain commas).
    let parseSpec (spec: string) : string * (string * string) list =
        match spec.IndexOf ':' with
        | -1 -> spec.Trim(), []
        | i ->
            spec.Substring(0, i).Trim(),
            spec.Substring(i + 1).Split(',', StringSplitOptions.RemoveEmptyEntries ||| StringSplitOptions.TrimEntries)
            |> Array.map Registry.parseAssignment |> List.ofArray

    /// The optimizers on `taskFor seed` (the task with that seed's data order) for each seed;
    /// with `tensorboard` = Some(dir, hyperparameters), event files in one folder per optimizer
    /// and seed under dir.
    let run (taskFor: int -> Task) (optimizers: string list) (steps: int) (seeds: int list) (lossSplit: Split) (dtype: TorchSharp.torch.ScalarType)
            (tensorboard: (string * (string * string) list) option) : Row list =
        if steps < 1 then Tensors.invalidArg "steps" $"steps = {steps} is invalid; it must be >= 1"
        if seeds.IsEmpty then Tensors.invalidArg "seeds" "no seeds: pass --seeds N with N >= 1"
        let built = optimizers |> List.map (fun spec -> let n, o = parseSpec spec in spec, Registry.createOptimizer n o)
        let tasks = seeds |> List.map (fun seed -> seed, taskFor seed)
        [ for spec, opt in built ->
            let results =
                [ for seed, task in tasks ->
                    let start = task.Init { TaskInit.Default with Seed = seed; Dtype = dtype }
                    let mutable sum, last = 0.0, nan
                    let writer =
                        tensorboard |> Option.map (fun (dir, pairs) ->
                            let w = TensorBoard.create dir [ "evaluate"; task.Name; spec; $"seed={seed}" ]
                            TensorBoard.hparams w (pairs @ [ "optimizer", spec; "seed", string seed; "steps", string steps; "dtype", string dtype ])
                            w)
                    let lr = let n, o = parseSpec spec in TensorBoard.optionLr n o
                    let r =
                        try
                            let p, st =
                                Run.optimizeObserved task opt start steps (fun k l _ st ->
                                    writer |> Option.iter (fun w -> TensorBoard.step w k l lr st)
                                    (if k > 0 then sum <- sum + l)
                                    last <- l)
                            let train, test =
                                let at = Transform.evaluationParams opt st p
                                match task.Evaluate with
                                | Some evaluate -> Some (evaluate lossSplit at).Loss, (evaluate Split.Test at).Top1
                                | None -> None, None
                            Tree.dispose p
                            State.dispose st
                            Some { Seed = seed; Final = last; Mean = sum / float steps; SplitLoss = train; TestTop1 = test }
                        with DivergedException _ -> None
                    Tree.dispose start
                    r ]
            let ok = results |> List.choose id
            { Optimizer = spec; Runs = ok; Diverged = results.Length - ok.Length; LossSplit = lossSplit } ]

    /// The name of the split-loss measure: train_loss, validation_loss or test_loss.
    let private splitLossName (rows: Row list) =
        match rows with
        | { LossSplit = Split.Validation } :: _ -> "validation_loss"
        | { LossSplit = Split.Test } :: _ -> "test_loss"
        | _ -> "train_loss"

    /// The measures a row has, by name: (name, value of a run, higher is better).
    let private measures (rows: Row list) : (string * (RunResult -> float) * bool) list =
        let all = rows |> List.collect (fun r -> r.Runs)
        [ yield "final_loss", (fun r -> r.Final), false
          yield "mean_loss", (fun r -> r.Mean), false
          if all |> List.exists (fun r -> r.SplitLoss.IsSome) then yield splitLossName rows, (fun r -> defaultArg r.SplitLoss nan), false
          if all |> List.exists (fun r -> r.TestTop1.IsSome) then yield "test_top1", (fun r -> defaultArg r.TestTop1 nan), true ]

    /// The measure the table pairs on: the low-noise split loss when there is one.
    let private pairedMeasure (rows: Row list) =
        let ms = measures rows
        ms |> List.tryFind (fun (n, _, _) -> n = splitLossName rows) |> Option.defaultValue ms.Head

    /// `row` against `reference` on the seeds both finished: the paired difference of `value`,
    /// oriented so that a positive mean says `row` is better.
    let paired (value: RunResult -> float) (higherIsBetter: bool) (reference: Row) (row: Row) : Paired =
        let bySeed = reference.Runs |> List.map (fun r -> r.Seed, value r) |> Map.ofList
        row.Runs
        |> List.choose (fun r -> bySeed |> Map.tryFind r.Seed |> Option.map (fun v -> value r, v))
        |> Measures.paired higherIsBetter

    let private label (name: string) =
        match name with
        | "final_loss" -> "final loss"
        | "mean_loss" -> "mean loss"
        | "train_loss" -> "train-split loss"
        | "validation_loss" -> "validation-split loss"
        | "test_loss" -> "test-split loss"
        | "test_top1" -> "test top-1"
        | n -> n

    /// Headers and rows of the summary: mean +- standard error of every measure, and each
    /// optimizer paired with the first one on the low-noise measure.
    let summaryTable (rows: Row list) : string list * string list list =
        let ms = measures rows
        let name, value, higher = pairedMeasure rows
        let first = rows.Head
        let headers = [ "optimizer" ] @ [ for n, _, _ in ms -> label n ] @ [ $"{label name} vs {first.Optimizer}: paired difference (+ = better), better on"; "diverged" ]
        let body =
            [ for r in rows ->
                let cells = [ for _, f, _ in ms -> let s = Measures.summary (r.Runs |> List.map f) in $"{Output.f3 s.Mean} +- {Output.f3 s.Se}" ]
                let vs =
                    if obj.ReferenceEquals(r, first) then "-"
                    else
                        let p = paired value higher first r
                        let word = match Measures.verdict p with Verdict.Holds -> "better" | Verdict.Reversed -> "worse" | v -> v.Text
                        // The means' ratio, as "within x%" claims read it.
                        let mean (row: Row) = (Measures.summary (row.Runs |> List.map value)).Mean
                        let relative = (100.0 * (mean r / mean first - 1.0)).ToString("+0.0;-0.0", Globalization.CultureInfo.InvariantCulture) + "%"
                        $"{Output.f3 p.Mean} +- {Output.f3 p.Se} (mean {relative}), {p.Holds}/{p.N} seeds: {word}"
                [ r.Optimizer ] @ cells @ [ vs; string r.Diverged ] ]
        headers, body

    /// The summary for people, in the terminal (mean +- standard error).
    let writeTable (title: string) (rows: Row list) =
        let headers, body = summaryTable rows
        let table = Table().Title(title + " (mean +- standard error)")
        for h in headers do table.AddColumn h |> ignore
        for r in body do table.AddRow(Array.ofList r) |> ignore
        AnsiConsole.Write table

    /// The summary as a Markdown table (mean +- standard error).
    let writeMarkdown (out: TextWriter) (rows: Row list) =
        let headers, body = summaryTable rows
        let line (cells: string list) = out.WriteLine("| " + String.Join(" | ", cells) + " |")
        line headers
        line [ for _ in headers -> "---" ]
        for r in body do line r

    /// One line per optimizer: mean, standard deviation and standard error of every measure.
    let writeCsv (out: TextWriter) (rows: Row list) =
        let ms = measures rows
        out.WriteLine("optimizer," + String.Join(",", [ for n, _, _ in ms -> $"{n}_mean,{n}_std,{n}_se" ]) + ",runs,diverged")
        for r in rows do
            let cells = [ for _, f, _ in ms -> let s = Measures.summary (r.Runs |> List.map f) in $"{Output.num s.Mean},{Output.num s.Std},{Output.num s.Se}" ]
            out.WriteLine $"\"{r.Optimizer}\",{String.Join(',', cells)},{r.Runs.Length},{r.Diverged}"

    /// One line per run (optimizer, seed): for paired comparisons, since every optimizer sees
    /// the same seeds and data orders.
    let writeRunsCsv (out: TextWriter) (rows: Row list) =
        let ms = measures rows
        out.WriteLine("optimizer,seed," + String.Join(",", [ for n, _, _ in ms -> n ]))
        for r in rows do
            for run in r.Runs do
                out.WriteLine $"\"{r.Optimizer}\",{run.Seed},{String.Join(',', [ for _, f, _ in ms -> Output.num (f run) ])}"
