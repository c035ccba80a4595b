namespace Optimizers.Experiments

open System
open System.IO
open Spectre.Console
open Optimizers
open Optimizers.Tasks

/// The hypergradient report's alpha_0 sensitivity experiment (seed 001, section 4): for each
/// optimizer and initial learning rate, the number of iterations until the training loss first
/// falls below a threshold (or none within the budget).
module Sensitivity =

    type Row =
        { Optimizer: string
          Lr: float
          /// Iterations until loss < threshold; None if never within MaxSteps (or diverged).
          Iterations: int option
          FinalLoss: float
          Diverged: bool }

    type Settings =
        { Task: string
          TaskOptions: (string * string) list
          Optimizers: string list
          /// Options for the optimizers that have them.
          OptimizerOptions: (string * string) list
          Lrs: float list
          Threshold: float
          MaxSteps: int
          Seed: int
          Dtype: string }

    /// One row per (optimizer, lr), every run from the same start.
    let run (s: Settings) : Row list =
        if s.MaxSteps < 1 then Tensors.invalidArg "max-steps" $"max-steps = {s.MaxSteps} is invalid; it must be >= 1"
        if s.Lrs.IsEmpty then Tensors.invalidArg "lrs" "no learning rate given; pass e.g. --lrs 0.01,0.001"
        let task = Registry.createTask s.Task s.TaskOptions
        let dtype = Tensors.parseDtype s.Dtype
        // An option applies to the optimizers that have it (hypergrad_lr to the HD ones only);
        // one that none has is an error. Every optimizer is built before any run.
        let has (name: string) (option: string) = (Registry.findOptimizer name).Options |> List.exists (fun o -> o.Name = option)
        for option, _ in s.OptimizerOptions do
            if not (s.Optimizers |> List.exists (fun n -> has n option)) then
                Tensors.invalidArg option $"option '{option}' belongs to none of {Tensors.commas s.Optimizers}"
        let optionsOf name = s.OptimizerOptions |> List.filter (fun (o, _) -> has name o)
        let opts = [ for name in s.Optimizers do for lr in s.Lrs -> name, lr, Registry.createOptimizer name (("lr", Output.num lr) :: optionsOf name) ]
        [ for name, lr, opt in opts do
            let start = task.Init { TaskInit.Default with Seed = s.Seed; Dtype = dtype }
            let mutable reached = None
            let mutable last = nan
            let diverged =
                try
                    let p, st =
                        Run.optimizeWhile task opt start s.MaxSteps (fun k l _ _ ->
                            last <- l
                            if l < s.Threshold then reached <- Some k
                            reached.IsNone)
                    Tree.dispose p
                    State.dispose st
                    false
                with DivergedException _ -> true
            Tree.dispose start
            yield { Optimizer = name; Lr = lr; Iterations = reached; FinalLoss = last; Diverged = diverged } ]

    /// The rows as CSV: optimizer,lr,iterations,final_loss,diverged (iterations empty if never).
    let writeCsv (out: TextWriter) (rows: Row list) =
        out.WriteLine "optimizer,lr,iterations,final_loss,diverged"
        for r in rows do
            let it = r.Iterations |> Option.map string |> Option.defaultValue ""
            out.WriteLine $"{r.Optimizer},{Output.num r.Lr},{it},{Output.num r.FinalLoss},{r.Diverged.ToString().ToLowerInvariant()}"

    /// The rows as a table: optimizers down, learning rates across, iterations in the cells.
    let writeTable (threshold: float) (rows: Row list) =
        let lrs = rows |> List.map (fun r -> r.Lr) |> List.distinct
        let table = Table().AddColumn($"iterations to loss < {Output.short threshold}")
        for lr in lrs do table.AddColumn($"alpha_0 = {Output.short lr}") |> ignore
        for name in rows |> List.map (fun r -> r.Optimizer) |> List.distinct do
            let cells =
                [ for lr in lrs ->
                    match rows |> List.find (fun r -> r.Optimizer = name && r.Lr = lr) with
                    | { Diverged = true } -> "diverged"
                    | { Iterations = Some n } -> string n
                    | _ -> "-" ]
            table.AddRow(Array.ofList (name :: cells)) |> ignore
        AnsiConsole.Write table
