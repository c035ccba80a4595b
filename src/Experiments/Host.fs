namespace Optimizers.Experiments

open System
open System.IO
open System.Text
open System.Text.Json
open Spectre.Console
open Optimizers

/// The experiment host's verbs (run, compare, sweep, merge, report, export) behind the CLI:
/// settings in, exit code out (0 ok, 1 a run failed, 2 bad input raised as InvalidOptionException).
module Host =

    /// Settings shared by run, compare and sweep.
    type SweepSettings =
        { Quick: bool
          Shard: (int * int) option
          Jobs: int
          Threads: int option
          Db: string option
          TensorBoard: string option
          Quiet: bool
          Json: bool
          /// This invocation's command line.
          Command: string
          /// The command line of one run alone (Argu's flat print of a `compare`).
          Reproduce: RunSpec -> string
          /// Print the paper-vs-ours table at the end (run, compare).
          Table: bool }

    /// results/NAME.db, or results/NAME.shard-I-of-N.db for a shard.
    let defaultDb (name: string) (shard: (int * int) option) =
        match shard with
        | Some(i, n) when n > 1 -> Path.Combine("results", $"{name}.shard-{i}-of-{n}.db")
        | _ -> Path.Combine("results", $"{name}.db")

    let private checkPositive (name: string) (v: int) =
        if v < 1 then Tensors.invalidArg name $"--{name} = {v} is invalid; it must be >= 1"

    let private consoleFor (out: TextWriter) =
        AnsiConsole.Create(AnsiConsoleSettings(Out = AnsiConsoleOutput(out), Ansi = AnsiSupport.No, ColorSystem = ColorSystemSupport.NoColors, Interactive = InteractionSupport.No))

    /// The paper-vs-ours lines of the first measure and of every paper value, as a table on `out`
    /// (the report has them all).
    let private printTable (out: TextWriter) (d: ReportData) =
        let table = Table().AddColumns("task", "optimizer", "lr", "measure", "paper", "ours (mean ± std over seeds)")
        let first = List.head d.Config.Measures
        for c in Report.comparisons d |> List.filter (fun c -> c.Measure = first || c.Paper.IsSome) do
            let paper = match c.Paper with Some p -> Output.short p.Value | None -> "-"
            let lr = Report.lrText c.Lr + (if c.BestLr then "*" else "")
            table.AddRow([| c.Task; c.Optimizer; lr; c.Measure.Name; paper; Report.statText c.Ours |] |> Array.map Markup.Escape) |> ignore
        let console = consoleFor out
        console.Profile.Width <- 160
        console.Write table
        out.WriteLine "(* the grid's best learning rate for the measure)"

    let private summaryJson (config: ExperimentConfig) (shard: int * int) (s: SweepSummary) (notRun: int) (report: string option) =
        use ms = new MemoryStream()
        (
            use w = new Utf8JsonWriter(ms, JsonWriterOptions(Indented = true))
            let num (name: string) (v: float option) =
                match v with
                | Some x when not (Double.IsNaN x || Double.IsInfinity x) -> w.WriteNumber(name, x)
                | _ -> w.WriteNull name
            w.WriteStartObject()
            w.WriteString("config", config.Name)
            w.WriteString("db", s.Db)
            w.WriteString("shard", $"{fst shard}/{snd shard}")
            w.WriteNumber("total", s.Total)
            w.WriteNumber("skipped", s.Skipped)
            w.WriteNumber("busy", s.Busy)
            w.WriteNumber("done", s.Done)
            w.WriteNumber("diverged", s.Diverged)
            w.WriteNumber("failed", s.Failed)
            w.WriteNumber("not_run_no_model", notRun)
            w.WriteNumber("wall_seconds", s.WallSeconds)
            w.WriteStartArray "runs"
            for r, o in s.Outcomes do
                w.WriteStartObject()
                w.WriteString("key", r.Key)
                w.WriteString("task", r.TaskLabel)
                w.WriteString("optimizer", r.OptimizerLabel)
                num "lr" r.Lr
                w.WriteNumber("seed", r.Seed)
                w.WriteString("status", o.Status)
                num "final_loss" o.FinalLoss
                num "mean_loss" o.MeanLoss
                match o.DivergedStep with Some k -> w.WriteNumber("diverged_step", k) | None -> w.WriteNull "diverged_step"
                if o.Error <> "" then w.WriteString("error", o.Error)
                w.WriteNumber("wall_seconds", o.WallSeconds)
                w.WriteEndObject()
            w.WriteEndArray()
            match report with
            | Some r ->
                w.WritePropertyName "report"
                w.WriteRawValue r
            | None -> ()
            w.WriteEndObject()
        )
        Encoding.UTF8.GetString(ms.ToArray())

    /// Run a config's grid (or a shard of it), resuming from the database.
    let sweep (config: ExperimentConfig) (s: SweepSettings) (out: TextWriter) (err: TextWriter) : int =
        checkPositive "jobs" s.Jobs
        s.Threads |> Option.iter (checkPositive "threads")
        let shard = defaultArg s.Shard (0, 1)
        let planned = Config.expand config s.Quick |> Config.shard shard
        // Runs of learned optimizers whose shipped model is not here are skipped, one line each.
        let unbuildable =
            planned
            |> List.choose (fun r -> Config.missingModel r.Optimizer r.OptimizerOptions |> Option.map (fun m -> r.OptimizerLabel, m))
            |> List.countBy id
        for (label, why), n in unbuildable do
            err.WriteLine $"optimizers: skipping {label} ({n} runs): {why}"
        let runs = planned |> List.filter (fun r -> (Config.missingModel r.Optimizer r.OptimizerOptions).IsNone)
        let notRun = unbuildable |> List.sumBy snd
        let db = match s.Db with Some d -> d | None -> defaultDb config.Name s.Shard
        let summary =
            Runner.sweep
                { Config = config
                  Runs = runs
                  Db = db
                  Jobs = s.Jobs
                  Threads = s.Threads
                  TensorBoard = s.TensorBoard
                  Command = s.Command
                  Reproduce = s.Reproduce
                  Progress = (if s.Json then Progress.mode true err else Progress.mode s.Quiet err) }
        for r, o in summary.Outcomes do
            if o.Status = "failed" then err.WriteLine $"optimizers: run {r.Key} ({Progress.describe r}) failed: {o.Error}"
        let data () = using (new ResultsStore(db)) (fun store -> Report.load store config s.Quick)
        if s.Json then
            let report = if s.Table then Some(Report.json (data ()) []) else None
            out.WriteLine(summaryJson config shard summary notRun report)
        elif not s.Quiet then
            let (i, n) = shard
            let part = if n > 1 then $" (shard {i}/{n})" else ""
            let missing = if notRun > 0 then $", {notRun} not run (no trained model)" else ""
            out.WriteLine
                $"{config.Name}{part}: {summary.Total} runs: {summary.Done} done, {summary.Diverged} diverged, {summary.Failed} failed, {summary.Skipped} finished before, {summary.Busy} left to another process{missing}; {summary.WallSeconds:F1} s; results in {summary.Db}"
            if s.Table then printTable out (data ())
        out.Flush()
        if summary.Failed > 0 then 1 else 0

    /// `run CONFIG`: the whole grid, then the paper-vs-ours table.
    let run (configPath: string) (s: SweepSettings) (out: TextWriter) (err: TextWriter) : int =
        let config = Config.load configPath
        sweep config { s with Table = true } out err

    /// Flags of `compare`: a grid given on the command line.
    type CompareSettings =
        { Tasks: string list
          TaskOptions: (string * string) list
          Optimizers: string list
          OptimizerOptions: (string * string) list
          Schedule: string option
          ScheduleOptions: (string * string) list
          Lrs: float list
          Seeds: int list
          Steps: int
          Dtype: string
          RecordEvery: int option
          Metrics: string list
          Measures: string list
          Name: string }

    /// The config that a `compare` command line describes (validated like a file).
    let compareConfig (c: CompareSettings) : ExperimentConfig =
        let declares (options: OptionSpec list) (name: string) =
            options |> List.exists (fun o -> o.Name = name || o.Name = OptionValues.RestName)
        let tasks = c.Tasks |> List.map Registry.findTask
        let optimizers = c.Optimizers |> List.map Registry.findOptimizer
        let schedule = c.Schedule |> Option.map Registry.findSchedule
        for name, _ in c.TaskOptions do
            if not (tasks |> List.exists (fun t -> declares t.Options name)) then
                Tensors.invalidArg "task-opt" $"--task-opt {name}: none of the tasks {Tensors.commas c.Tasks} has an option '{name}'"
        for name, _ in c.OptimizerOptions do
            if name = "lr" then Tensors.invalidArg "opt" "--opt lr: give learning rates with --lrs"
            if not (optimizers |> List.exists (fun o -> declares o.Options name)) then
                Tensors.invalidArg "opt" $"--opt {name}: none of the optimizers {Tensors.commas c.Optimizers} has an option '{name}'"
        if schedule.IsNone && not c.ScheduleOptions.IsEmpty then
            Tensors.invalidArg "sched-opt" "--sched-opt was given without --schedule NAME"
        let measures = c.Measures |> List.mapi (fun i m -> Config.parseMeasure $"--measures[{i}]" m)
        let grid : Optimizers.Experiments.Grid =
            { Tasks = [ for t in tasks -> { Name = t.Name; Label = t.Name; Options = c.TaskOptions |> List.filter (fun (n, _) -> declares t.Options n) } ]
              Optimizers =
                [ for o in optimizers ->
                    { Name = o.Name; Label = o.Name; Options = c.OptimizerOptions |> List.filter (fun (n, _) -> declares o.Options n)
                      Schedule = schedule |> Option.map (fun s -> { Name = s.Name; Options = c.ScheduleOptions }); Lrs = None } ]
              Lrs = c.Lrs
              Seeds = c.Seeds
              Steps = c.Steps
              Dtype = c.Dtype
              RecordEvery = c.RecordEvery }
        let json =
            Config.toJson c.Name "compare (command line)" "" grid c.Metrics
                (if measures.IsEmpty then [ Measure.FinalLoss; Measure.MeanLoss ] else measures)
        Config.parse "compare" json

    /// `compare`: optimizers x tasks x learning rates x seeds from flags.
    let compare (c: CompareSettings) (s: SweepSettings) (out: TextWriter) (err: TextWriter) : int =
        sweep (compareConfig c) { s with Table = true } out err

    /// `merge OUT IN...`: unite shards' databases.
    let merge (output: string) (inputs: string list) (json: bool) (quiet: bool) (out: TextWriter) (err: TextWriter) : int =
        if inputs.IsEmpty then Tensors.invalidArg "merge" "merge needs an output and at least one input database: merge OUT.db IN.db..."
        for i in inputs do
            if not (File.Exists i) then Tensors.invalidArg "merge" $"merge: input database '{i}' not found"
            StoreCheck.validate i false false
        // Every input is checked before the output is created or touched.
        use store = new ResultsStore(output)
        let taken =
            match Progress.console err with
            | Some c when not quiet && not json -> c.Status().Start($"merging {inputs.Length} databases", fun _ -> store.Merge inputs)
            | _ -> store.Merge inputs
        let total = store.Runs() |> List.length
        for i, _, conflicts in taken do
            if conflicts > 0 then
                err.WriteLine $"optimizers: warning: {i}: {conflicts} seed(s) give another start than in {store.Path}; runs with them are not reproducible across these machines"
        if json then
            let items = taken |> List.map (fun (i, n, c) -> $"{{\"input\":{JsonSerializer.Serialize i},\"runs_taken\":{n},\"seed_conflicts\":{c}}}")
            let joined = String.Join(",", items)
            out.WriteLine($"{{\"output\":{JsonSerializer.Serialize store.Path},\"runs\":{total},\"inputs\":[{joined}]}}")
        elif not quiet then
            for i, n, _ in taken do out.WriteLine $"{i}: {n} runs taken"
            out.WriteLine $"{store.Path}: {total} runs"
        0

    /// The config of a report: from its file, or from the database by name (the only one there
    /// when no name is given).
    let private configOf (configPath: string option) (store: ResultsStore option) (name: string option) : ExperimentConfig =
        match configPath, store with
        | Some p, _ -> Config.load p
        | None, Some st ->
            let configs = st.Configs()
            let names = configs |> List.map (fun (n, _, _) -> n) |> List.distinct
            let chosen =
                match name, names with
                | Some n, _ when List.contains n names -> n
                | Some n, _ -> Tensors.invalidArg "config" $"--config: no config '{n}' in {st.Path}; valid: {Tensors.commas names}"
                | None, [ n ] -> n
                | None, [] -> Tensors.invalidArg "db" $"--db: {st.Path} holds no config (was anything run into it?)"
                | None, _ -> Tensors.invalidArg "config" $"--db: {st.Path} holds several configs; choose one with --config NAME; valid: {Tensors.commas names}"
            let _, json, _ = configs |> List.filter (fun (n, _, _) -> n = chosen) |> List.last
            Config.parse $"{st.Path} (config {chosen})" json
        | None, None -> Tensors.invalidArg "config" "report needs a CONFIG file or --db FILE"

    /// `report`: Markdown, HTML and PNGs for a config.
    let report (configPath: string option) (db: string option) (name: string option) (quick: bool option) (outDir: string option)
               (json: bool) (quiet: bool) (out: TextWriter) (err: TextWriter) : int =
        match db with
        | Some d when not (File.Exists d) -> Tensors.invalidArg "db" $"--db: database '{d}' not found"
        | _ -> ()
        let dbPath, config =
            match db with
            | Some d -> d, (use st = new ResultsStore(d, readOnly = true) in configOf configPath (Some st) name)
            | None ->
                let c = configOf configPath None name
                let d = defaultDb c.Name None
                if not (File.Exists d) then Tensors.invalidArg "db" $"--db: no database given and '{d}' does not exist; run the config first or pass --db"
                d, c
        use store = new ResultsStore(dbPath)
        let quick =
            match quick with
            | Some q -> q
            | None ->
                // Without --quick: the full grid, unless only the quick variant has results.
                let has q = (Report.load store config q).Rows |> Map.isEmpty |> not
                config.Quick.IsSome && not (has false) && has true
        let data = Report.load store config quick
        let dir = defaultArg outDir (Path.Combine("reports", config.Name + (if quick then "-quick" else "")))
        let files =
            match Progress.console err with
            | Some c when not quiet && not json ->
                c.Status().Start("report", fun ctx -> Report.write store data dir (fun t -> ctx.Status <- Markup.Escape $"plotting {t}"))
            | _ -> Report.write store data dir ignore
        if json then out.WriteLine(Report.json data files)
        elif not quiet then
            for f in files do out.WriteLine f
        0

    /// `report --all`: for every config of `configsDir` (top level) whose database
    /// (results/NAME.db, or DBDIR/NAME.db) holds its full grid finished, the report into
    /// `resultsDir/NAME/`; configs not (fully) run keep what is committed there. Then the index
    /// `resultsDir/README.md` from every config's claims and the reports' claims.json.
    let reportAll (configsDir: string) (resultsDir: string) (dbDir: string option) (quiet: bool) (out: TextWriter) (err: TextWriter) : int =
        if not (Directory.Exists configsDir) then Tensors.invalidArg "configs" $"--configs: directory '{configsDir}' not found"
        for file in Directory.GetFiles(configsDir, "*.json") |> Array.sort do
            let name =
                use doc = JsonDocument.Parse(File.ReadAllText file, JsonDocumentOptions(CommentHandling = JsonCommentHandling.Skip, AllowTrailingCommas = true))
                match doc.RootElement.TryGetProperty "name" with
                | true, v when v.ValueKind = JsonValueKind.String -> v.GetString()
                | _ -> Path.GetFileNameWithoutExtension file
            let db = match dbDir with Some d -> Path.Combine(d, name + ".db") | None -> defaultDb name None
            if File.Exists db then
                let config = Config.load file
                use store = new ResultsStore(db)
                // The committed report names the database relative to the repository root.
                let data = { Report.load store config false with Db = Path.GetRelativePath(Directory.GetCurrentDirectory(), store.Path) }
                let unbuildable = Report.unbuildable data |> List.map fst
                let open' =
                    data.Runs |> List.filter (fun r ->
                        not (List.contains r.OptimizerLabel unbuildable)
                        && (match data.Rows.TryFind r.Key with Some x -> x.Status <> "done" && x.Status <> "diverged" | None -> true))
                if open'.IsEmpty then
                    let files = Report.write store data (Path.Combine(resultsDir, name)) ignore
                    if not quiet then out.WriteLine $"{name}: report from {db} ({files.Length} files in {Path.Combine(resultsDir, name)})"
                elif not quiet then
                    err.WriteLine $"optimizers: {name}: {open'.Length} of {data.Runs.Length} runs of the full grid are not finished in {db}; its committed report (if any) is kept"
        let index = ResultsIndex.write configsDir resultsDir
        if not quiet then out.WriteLine index
        out.Flush()
        0

    let private csvField (s: string) =
        if s.IndexOfAny([| ','; '"'; '\n'; '\r' |]) >= 0 then "\"" + s.Replace("\"", "\"\"") + "\"" else s

    let private numText (v: float option) = match v with Some x -> Output.num x | None -> ""

    let formats = [ "csv"; "json" ]
    let tables = [ "runs"; "metrics"; "measures" ]

    /// `export`: a table of the database as CSV or JSON.
    let export (db: string) (format: string) (what: string) (config: string option) (output: string option) (out: TextWriter) : int =
        let format = format.Trim().ToLowerInvariant()
        if not (List.contains format formats) then Tensors.invalidArg "format" $"--format: unknown format '{format}'; valid: {Tensors.commas formats}"
        let what = what.Trim().ToLowerInvariant()
        if not (List.contains what tables) then Tensors.invalidArg "table" $"--table: unknown table '{what}'; valid: {Tensors.commas tables}"
        if not (File.Exists db) then Tensors.invalidArg "db" $"--db: database '{db}' not found"
        use store = new ResultsStore(db, readOnly = true)
        match config with
        | Some c ->
            let names = store.Runs() |> List.map (fun r -> r.Config) |> List.distinct |> List.sort
            if not (List.contains c names) then
                if names.IsEmpty then Tensors.invalidArg "config" $"--config: no config '{c}' in {db}: it holds no runs"
                else Tensors.invalidArg "config" $"--config: no config '{c}' in {db}; valid: {Tensors.commas names}"
        | None -> ()
        let runs = store.Runs() |> List.filter (fun r -> match config with Some c -> r.Config = c | None -> true)
        let keys = runs |> List.map (fun r -> r.Key)
        let header, rows =
            match what with
            | "runs" ->
                [ "run_key"; "config"; "task"; "task_label"; "task_options"; "optimizer"; "optimizer_label"; "optimizer_options"; "schedule"; "lr"; "seed"; "steps"; "dtype"
                  "status"; "final_loss"; "mean_loss"; "diverged_step"; "attempts"; "started_at"; "finished_at"; "wall_seconds"; "host"; "command"; "reproduce"; "error" ],
                [ for r in runs ->
                    [ r.Key; r.Config; r.Task; r.TaskLabel; r.TaskOptions; r.Optimizer; r.OptimizerLabel; r.OptimizerOptions; r.Schedule; numText r.Lr; string r.Seed
                      string r.Steps; r.Dtype; r.Status; numText r.FinalLoss; numText r.MeanLoss; (r.DivergedStep |> Option.map string |> Option.defaultValue "")
                      string r.Attempts; r.StartedAt; r.FinishedAt; numText r.WallSeconds; r.Host; r.Command; r.Reproduce; r.Error ] ]
            | "metrics" ->
                [ "run_key"; "name"; "step"; "value" ],
                [ for k, n, s, v in store.AllMetrics(Some keys) -> [ k; n; string s; numText v ] ]
            | _ ->
                [ "run_key"; "name"; "value" ],
                [ for KeyValue(k, ms) in store.Measures keys do
                    for KeyValue(n, v) in ms -> [ k; n; numText v ] ]
        let numeric = set [ "lr"; "seed"; "steps"; "final_loss"; "mean_loss"; "diverged_step"; "attempts"; "wall_seconds"; "step"; "value" ]
        let text =
            match format with
            | "csv" ->
                let sb = StringBuilder()
                sb.AppendLine(String.Join(",", header)) |> ignore
                for r in rows do sb.AppendLine(String.Join(",", r |> List.map csvField)) |> ignore
                sb.ToString()
            | _ ->
                use ms = new MemoryStream()
                (
                    use w = new Utf8JsonWriter(ms, JsonWriterOptions(Indented = true))
                    w.WriteStartArray()
                    for r in rows do
                        w.WriteStartObject()
                        for h, v in List.zip header r do
                            if numeric.Contains h then
                                match Double.TryParse(v, Globalization.NumberStyles.Float, Globalization.CultureInfo.InvariantCulture) with
                                | true, x when not (Double.IsNaN x || Double.IsInfinity x) -> w.WriteNumber(h, x)
                                | _ -> w.WriteNull h
                            else w.WriteString(h, v)
                        w.WriteEndObject()
                    w.WriteEndArray()
                )
                Encoding.UTF8.GetString(ms.ToArray()) + Environment.NewLine
        match output with
        | Some path ->
            match Path.GetDirectoryName(Path.GetFullPath path) with
            | null -> ()
            | d -> Directory.CreateDirectory d |> ignore
            File.WriteAllText(path, text)
        | None -> out.Write text
        out.Flush()
        0
