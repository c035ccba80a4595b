namespace Optimizers.Experiments

open System.Diagnostics
open Spectre.Console
open Optimizers
open Optimizers.Tasks

/// `demo`: the README's main job. A small comparison of the optimizers on the built-in tasks,
/// needing no data: every optimizer from the same start, its final loss and time, as a table.
module Demo =

    type Case =
        { Task: string
          TaskOptions: (string * string) list
          Steps: int
          /// (optimizer, learning rate) pairs
          Optimizers: (string * float) list }

    let cases =
        [ { Task = "rosenbrock"; TaskOptions = [ "start", "-1.5,2" ]; Steps = 1000
            Optimizers = [ "sgd", 1e-3; "momentum", 1e-3; "nesterov", 1e-3; "adam", 1e-2 ] }
          { Task = "sum-of-squares"; TaskOptions = [ "dim", "1000" ]; Steps = 200
            Optimizers = [ "sgd", 0.1; "momentum", 0.05; "nesterov", 0.05; "adam", 0.5 ] } ]

    /// One row per (task, optimizer): start loss, final loss, wall time.
    let run (quiet: bool) =
        let table = Table().AddColumns("task", "optimizer", "lr", "steps", "start loss", "final loss", "ms")
        for c in cases do
            let task = Registry.createTask c.Task c.TaskOptions
            for name, lr in c.Optimizers do
                let opt = Registry.createOptimizer name [ "lr", Output.num lr ]
                let start = task.Init { TaskInit.Default with Seed = 0; Dtype = TorchSharp.torch.ScalarType.Float64 }
                let mutable first = nan
                let mutable last = nan
                let sw = Stopwatch.StartNew()
                let p, s = Run.optimize task opt start c.Steps (fun k l _ -> (if k = 0 then first <- l); last <- l)
                sw.Stop()
                Tree.dispose p; State.dispose s; Tree.dispose start
                table.AddRow(c.Task, name, Output.short lr, string c.Steps, Output.short first, Output.short last, string sw.ElapsedMilliseconds) |> ignore
        if not quiet then AnsiConsole.Write(Markup("[bold]Optimizers demo[/]: every optimizer from the same start (float64, seed 0)\n"))
        AnsiConsole.Write table
