namespace Optimizers.Experiments

open System
open System.IO
open Spectre.Console
open Optimizers
open Optimizers.Tasks

/// `evaluate`: optimizers (learned or hand-designed) on the same task from the same seeds, for any
/// number of steps, without a graph: mean and standard deviation of the final loss and of the
/// mean loss over the run.
module Evaluation =

    type Row =
        { Optimizer: string
          /// The seeds of the runs that did not diverge, in the order of the losses below.
          Seeds: int list
          FinalLosses: float list
          MeanLosses: float list
          Diverged: int }

    /// "name" or "name:opt=value,opt=value" (values must not contain commas).
    let parseSpec (spec: string) : string * (string * string) list =
        match spec.IndexOf ':' with
        | -1 -> spec.Trim(), []
        | i ->
            spec.Substring(0, i).Trim(),
            spec.Substring(i + 1).Split(',', StringSplitOptions.RemoveEmptyEntries ||| StringSplitOptions.TrimEntries)
            |> Array.map Registry.parseAssignment |> List.ofArray

    let rec run (task: Task) (optimizers: string list) (steps: int) (seeds: int list) (dtype: TorchSharp.torch.ScalarType) : Row list =
        runLogged task optimizers steps seeds dtype None

    /// `run`, writing TensorBoard event files when `tensorboard` is Some(dir, hyperparameters):
    /// one folder per optimizer and seed under dir.
    and runLogged (task: Task) (optimizers: string list) (steps: int) (seeds: int list) (dtype: TorchSharp.torch.ScalarType)
                  (tensorboard: (string * (string * string) list) option) : Row list =
        if steps < 1 then Tensors.invalidArg "steps" $"steps = {steps} is invalid; it must be >= 1"
        if seeds.IsEmpty then Tensors.invalidArg "seeds" "no seeds: pass --seeds N with N >= 1"
        let built = optimizers |> List.map (fun spec -> let n, o = parseSpec spec in spec, Registry.createOptimizer n o)
        [ for spec, opt in built ->
            let results =
                [ for seed in seeds ->
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
                            Tree.dispose p
                            State.dispose st
                            Some(last, sum / float steps)
                        with DivergedException _ -> None
                    Tree.dispose start
                    r |> Option.map (fun (last, mean) -> seed, last, mean) ]
            let ok = results |> List.choose id
            { Optimizer = spec
              Seeds = ok |> List.map (fun (seed, _, _) -> seed)
              FinalLosses = ok |> List.map (fun (_, last, _) -> last)
              MeanLosses = ok |> List.map (fun (_, _, mean) -> mean)
              Diverged = results.Length - ok.Length } ]

    let private meanStd (xs: float list) =
        if xs.IsEmpty then nan, nan
        else
            let m = List.average xs
            m, sqrt (xs |> List.averageBy (fun x -> (x - m) ** 2.0))

    let writeTable (title: string) (rows: Row list) =
        let table = Table().Title(title).AddColumns("optimizer", "final loss (mean +- std)", "mean loss over the run", "diverged")
        for r in rows do
            let fm, fs = meanStd r.FinalLosses
            let mm, ms = meanStd r.MeanLosses
            table.AddRow(r.Optimizer, $"{Output.short fm} +- {Output.short fs}", $"{Output.short mm} +- {Output.short ms}", string r.Diverged) |> ignore
        AnsiConsole.Write table

    let writeCsv (out: TextWriter) (rows: Row list) =
        out.WriteLine "optimizer,final_loss_mean,final_loss_std,mean_loss_mean,mean_loss_std,runs,diverged"
        for r in rows do
            let fm, fs = meanStd r.FinalLosses
            let mm, ms = meanStd r.MeanLosses
            out.WriteLine $"\"{r.Optimizer}\",{Output.num fm},{Output.num fs},{Output.num mm},{Output.num ms},{r.FinalLosses.Length},{r.Diverged}"

    /// One line per run (optimizer, seed): for paired comparisons, since every optimizer sees
    /// the same seeds.
    let writeRunsCsv (out: TextWriter) (rows: Row list) =
        out.WriteLine "optimizer,seed,final_loss,mean_loss"
        for r in rows do
            for seed, last, mean in List.zip3 r.Seeds r.FinalLosses r.MeanLosses do
                out.WriteLine $"\"{r.Optimizer}\",{seed},{Output.num last},{Output.num mean}"
