namespace Optimizers.Experiments

open System
open System.IO
open Spectre.Console
open Optimizers

/// `demo`: the README's main job. Runs paper-configs/demo.json (Adam, Adam-HD and the shipped
/// pre-trained HyperAdam on MlpMnist, HyperAdam's Table 1 setting) through the experiment host,
/// writes its report, and ends with the report's path and a one-screen summary table.
module Demo =

    /// The config's file name in paper-configs/.
    let configName = "demo.json"

    /// paper-configs/demo.json of the repository around the working directory, else the copy the
    /// build puts next to the executable.
    let findConfig () : string =
        let rec up (dir: DirectoryInfo) =
            if isNull dir then None
            elif File.Exists(Path.Combine(dir.FullName, "Optimizers.sln")) then
                let f = Path.Combine(dir.FullName, "paper-configs", configName)
                if File.Exists f then Some f else None
            else up dir.Parent
        match up (DirectoryInfo(Directory.GetCurrentDirectory())) with
        | Some f -> f
        | None ->
            let beside = Path.Combine(AppContext.BaseDirectory, "paper-configs", configName)
            if File.Exists beside then beside
            else Tensors.invalidArg "config" $"demo: paper-configs/{configName} was found neither in the repository around the working directory nor next to the executable; pass --config FILE"

    let private console (out: TextWriter) =
        let c =
            AnsiConsole.Create(
                AnsiConsoleSettings(Out = AnsiConsoleOutput(out), Ansi = AnsiSupport.No, ColorSystem = ColorSystemSupport.NoColors, Interactive = InteractionSupport.No))
        c.Profile.Width <- 120
        c

    /// The summary: one row per optimizer and learning rate, over the seeds.
    let summary (d: ReportData) : Table =
        let table = Table().AddColumns("optimizer", "lr", "final loss (mean ± std)", "paper", "test top-1", "final lr", "s per run")
        let g = Report.grid d
        let task = (List.head g.Tasks).Label
        let skipped = Report.unbuildable d |> Map.ofList
        let finalLoss = Measure.FinalLoss
        for o in g.Optimizers do
            for lr in Config.lrsOf g o do
                let runs = Report.cell d task o.Label lr
                let lrText = Report.lrText lr
                match skipped.TryFind o.Label with
                | Some _ ->
                    let file = $"models/{o.Name}.bin"
                    table.AddRow([| o.Label; lrText; $"skipped: no {file}"; "-"; "-"; "-"; "-" |] |> Array.map Markup.Escape) |> ignore
                | None ->
                    let stat m = Report.stat d runs m
                    let paper =
                        d.Config.Paper
                        |> List.tryFind (fun p -> p.Task = task && p.Optimizer = o.Label && p.Measure = finalLoss && (p.Lr.IsNone || p.Lr = lr))
                        |> Option.map (fun p -> Output.short p.Value)
                        |> Option.defaultValue "-"
                    let mean (m: Measure) (f: float -> string) =
                        let s = stat m
                        if s.Values.IsEmpty then "-" else f s.Mean
                    let seconds =
                        let ws = runs |> List.choose (fun r -> d.Rows.TryFind r.Key |> Option.bind (fun x -> x.WallSeconds))
                        if ws.IsEmpty then "-" else (List.average ws).ToString("F2", Globalization.CultureInfo.InvariantCulture)
                    table.AddRow(
                        [| o.Label; lrText; Report.statText (stat finalLoss); paper
                           mean (Measure.Final "test_top1") (fun v -> (100.0 * v).ToString("F1", Globalization.CultureInfo.InvariantCulture) + "%")
                           mean (Measure.Final TaskMetrics.lr) Output.short
                           seconds |]
                        |> Array.map Markup.Escape)
                    |> ignore
        table

    /// Run the demo: a fresh run of the config into results/demo.db, its report in reports/demo/,
    /// then the report's path and the summary. `reproduce` is the command line of one run alone
    /// (recorded with it). Returns the exit code (1 if a run failed).
    let run (configPath: string option) (quiet: bool) (reproduce: RunSpec -> string) (out: TextWriter) (err: TextWriter) : int =
        let path = match configPath with Some p -> p | None -> findConfig ()
        let config = Config.load path
        // The demo's own database starts empty, so that a changed models/hyperadam.bin is run again.
        let db = Host.defaultDb config.Name None
        for suffix in [ ""; "-wal"; "-shm" ] do
            if File.Exists(db + suffix) then File.Delete(db + suffix)
        let g = config.Grid
        if not quiet then
            out.WriteLine $"Optimizers demo: {config.Source}"
            out.WriteLine $"{g.Optimizers.Length} optimizers x {g.Seeds.Length} seeds x {g.Steps} steps on {(List.head g.Tasks).Label} ({path})"
            out.Flush()
        for o in g.Optimizers do
            match Config.missingModel o.Name o.Options with
            | Some _ -> out.WriteLine $"{o.Label} skipped: models/{o.Name}.bin is not here (the pre-trained {o.Name} is not shipped yet); the other optimizers run."
            | None -> ()
        out.Flush()
        let settings : Host.SweepSettings =
            { Quick = false; Shard = None; Jobs = 1; Threads = None; Db = Some db; TensorBoard = None; Quiet = quiet; Json = false
              Command = "optimizers demo"; Reproduce = reproduce; Table = false }
        let code = Host.sweep config settings (if quiet then TextWriter.Null else out) err
        use store = new ResultsStore(db)
        let data = Report.load store config false
        let dir = Path.Combine("reports", config.Name)
        Report.write store data dir ignore |> ignore
        let c = console out
        if not quiet then
            out.WriteLine()
            let page = Path.GetFullPath(Path.Combine(dir, "report.html"))
            out.WriteLine $"Report: {page} (and report.md, PNG plots beside it)"
            out.WriteLine $"{(List.head g.Tasks).Label}, {g.Steps} steps, mean over {g.Seeds.Length} seeds; paper: HyperAdam Table 1 (sigmoid), not our numbers:"
        c.Write(summary data)
        // The last lines: which of the seeds' orderings held in this run.
        for r in Report.claims data do
            out.WriteLine $"Paper ordering {r.Verdict.Text.ToUpperInvariant()} in this run: {r.Claim.Text}; paired difference {Report.pairedText r}."
        out.Flush()
        code
