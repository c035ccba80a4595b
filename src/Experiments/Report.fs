namespace Optimizers.Experiments

open System
open System.IO
open System.Text
open System.Text.Json
open System.Globalization
open Optimizers

/// A measure summarised over the seeds of one grid cell (task, optimizer, learning rate).
type Stat =
    { Values: float list
      Mean: float
      Std: float
      Seeds: int
      Diverged: int
      Failed: int
      /// Seeds with no finished run in the database.
      Missing: int
      /// Finished seeds without a value (steps_to: the loss never went below the threshold).
      NoValue: int
      /// How to name those: "not reached" or "no value".
      NoValueText: string }

/// One line of the "paper vs ours" table.
type Comparison =
    { Task: string
      Optimizer: string
      Lr: float option
      /// The learning rate was chosen as the grid's best for the measure (the paper gives none).
      BestLr: bool
      Measure: Measure
      Paper: PaperValue option
      Ours: Stat }

/// A config's results, read from the database: the runs of its grid by key.
type ReportData =
    { Config: ExperimentConfig
      Quick: bool
      Db: string
      Runs: RunSpec list
      Rows: Map<string, RunRow>
      Measures: Map<string, Map<string, float option>> }

/// Reports: "paper" next to "ours", tables by learning rate, and plots, as Markdown and HTML.
module Report =

    let private fmt (v: float) = v.ToString("G3", CultureInfo.InvariantCulture)

    let load (store: ResultsStore) (config: ExperimentConfig) (quick: bool) : ReportData =
        let runs = Config.expand config quick
        let keys = runs |> List.map (fun r -> r.Key)
        { Config = config
          Quick = quick
          Db = store.Path
          Runs = runs
          Rows = store.Runs keys |> List.map (fun r -> r.Key, r) |> Map.ofList
          Measures = store.Measures keys }

    /// The runs of one cell: a task label, an optimizer label, a learning rate.
    let cell (d: ReportData) (task: string) (optimizer: string) (lr: float option) =
        d.Runs |> List.filter (fun r -> r.TaskLabel = task && r.OptimizerLabel = optimizer && r.Lr = lr)

    /// A measure over the seeds of some runs (values of runs that have it; steps_to counts only
    /// the runs that reached the threshold).
    let stat (d: ReportData) (runs: RunSpec list) (measure: Measure) : Stat =
        let status (r: RunSpec) = d.Rows.TryFind r.Key |> Option.map (fun x -> x.Status)
        let values =
            [ for r in runs do
                match status r with
                | Some("done" | "diverged") ->
                    match d.Measures.TryFind r.Key |> Option.bind (Map.tryFind measure.Name) with
                    | Some(Some v) -> yield v
                    | _ -> ()
                | _ -> () ]
        // steps_to can have a value on a diverged run (reached before diverging).
        let divergedWithValue =
            runs |> List.filter (fun r ->
                status r = Some "diverged" && (d.Measures.TryFind r.Key |> Option.bind (Map.tryFind measure.Name) |> Option.flatten).IsSome)
            |> List.length
        let n = values.Length
        let mean = if n = 0 then nan else List.average values
        { Values = values
          Mean = mean
          Std = (if n < 2 then 0.0 else sqrt ((values |> List.sumBy (fun v -> (v - mean) ** 2.0)) / float (n - 1)))
          Seeds = runs.Length
          Diverged = runs |> List.filter (fun r -> status r = Some "diverged") |> List.length
          Failed = runs |> List.filter (fun r -> status r = Some "failed") |> List.length
          Missing = runs |> List.filter (fun r -> match status r with Some("done" | "diverged" | "failed") -> false | _ -> true) |> List.length
          NoValue = runs |> List.filter (fun r -> status r = Some "done") |> List.length |> fun finished -> max 0 (finished - (values.Length - divergedWithValue))
          NoValueText = (match measure with Measure.StepsTo _ -> "not reached" | _ -> "no value") }

    /// "mean ± std" with the number of seeds when not all count, and diverged/failed/missing seeds.
    let statText (s: Stat) =
        let notes =
            [ if s.NoValue > 0 then yield $"{s.NoValue} {s.NoValueText}"
              if s.Diverged > 0 then yield $"{s.Diverged} diverged"
              if s.Failed > 0 then yield $"{s.Failed} failed"
              if s.Missing > 0 then yield $"{s.Missing} not run" ]
        let core =
            match s.Values.Length with
            | 0 -> "-"
            | 1 when s.Seeds = 1 -> fmt s.Mean
            | n -> $"{fmt s.Mean} ± {fmt s.Std}" + (if n < s.Seeds then $" (n={n})" else "")
        if notes.IsEmpty then core else $"""{core} [{String.Join(", ", notes)}]"""

    let lrText (lr: float option) = match lr with Some v -> fmt v | None -> "default"

    let grid (d: ReportData) = Config.effectiveGrid d.Config d.Quick

    /// The grid's learning rates of an optimizer label.
    let lrsOf (d: ReportData) (optimizer: string) =
        let g = grid d
        Config.lrsOf g (g.Optimizers |> List.find (fun o -> o.Label = optimizer))

    /// Whether higher values of a measure are better (a final accuracy).
    let higherIsBetter (m: Measure) = match m with Measure.Final name -> TaskMetrics.maximised name | _ -> false

    /// The learning rate with the best mean of a measure (the lowest; the highest for accuracies),
    /// preferring cells where fewer seeds diverged, failed or are missing.
    let bestLr (d: ReportData) (task: string) (optimizer: string) (measure: Measure) : float option =
        let sign = if higherIsBetter measure then -1.0 else 1.0
        lrsOf d optimizer
        |> List.map (fun lr -> lr, stat d (cell d task optimizer lr) measure)
        |> List.sortBy (fun (_, s) -> s.Values.IsEmpty, s.Diverged + s.Failed + s.Missing, (if s.Values.IsEmpty then 0.0 else sign * s.Mean))
        |> List.tryHead
        |> Option.map fst
        |> Option.defaultWith (fun () -> lrsOf d optimizer |> List.head)

    /// A run's value of a measure for claims: a finished run's value; for steps_to, a finished run
    /// that never reached the threshold counts as steps + 1 (censored at the budget).
    let seedValue (d: ReportData) (r: RunSpec) (m: Measure) : float option =
        match d.Rows.TryFind r.Key |> Option.map (fun x -> x.Status) with
        | Some("done" | "diverged" as status) ->
            match d.Measures.TryFind r.Key |> Option.bind (Map.tryFind m.Name) |> Option.flatten, m with
            | Some v, _ -> Some v
            | None, Measure.StepsTo _ when status = "done" -> Some(float (r.Steps + 1))
            | None, _ -> None
        | _ -> None

    /// The claims' numbers from the database.
    let claimSource (d: ReportData) : ClaimSource =
        let g = grid d
        let finished (r: RunSpec) = match d.Rows.TryFind r.Key with Some x -> x.Status = "done" || x.Status = "diverged" | None -> false
        { Seeds = g.Seeds
          Lrs = lrsOf d
          Value = fun task opt lr seed m ->
              cell d task opt lr |> List.tryFind (fun r -> r.Seed = seed) |> Option.bind (fun r -> seedValue d r m)
          Diverged = fun task opt lr seed ->
              cell d task opt lr |> List.exists (fun r -> r.Seed = seed && (d.Rows.TryFind r.Key |> Option.map (fun x -> x.Status)) = Some "diverged")
          AnyFinished = fun task opt -> d.Runs |> List.exists (fun r -> r.TaskLabel = task && r.OptimizerLabel = opt && finished r)
          BestLr = bestLr d
          HigherIsBetter = higherIsBetter }

    /// The config's claims with their verdicts.
    let claims (d: ReportData) : ClaimResult list = d.Config.Claims |> List.map (Claims.evaluate (claimSource d))

    /// The paper's values for a task and optimizer label (any measure), as "0.42 (final_loss)".
    let paperValuesOf (d: ReportData) (task: string) (optimizer: string) : string list =
        d.Config.Paper
        |> List.filter (fun p -> p.Task = task && p.Optimizer = optimizer)
        |> List.map (fun p -> (match p.Std with Some s -> $"{fmt p.Value} ± {fmt s}" | None -> fmt p.Value) + $" ({p.Measure.Name})")

    /// "mean ± SE (n)" of one side of a claim.
    let summaryText (s: Summary) = if s.N = 0 then "-" else $"{fmt s.Mean} ± {fmt s.Se} (n={s.N})"

    /// The learning rate of one side of a claim, for the tables.
    let claimLrText (c: ClaimResult) (side: ClaimSide) =
        if c.Claim.Sensitivity then "range over lrs" else lrText side.Lr

    /// The paired difference as text: "+0.012 ± 0.003, on 9 of 10 seeds".
    let pairedText (c: ClaimResult) =
        let p = c.Paired
        let diverged =
            [ if c.BetterDiverged > 0 then yield $"{c.Better.Label} diverged on {c.BetterDiverged} seeds where {c.Worse.Label} did not"
              if c.WorseDiverged > 0 then yield $"{c.Worse.Label} diverged on {c.WorseDiverged} seeds where {c.Better.Label} did not" ]
        let pairedPart =
            if p.N = 0 then None
            else
                let sign = if p.Mean >= 0.0 then "+" else ""
                let unpaired = c.Seeds - p.N - c.BetterDiverged - c.WorseDiverged
                Some($"{sign}{fmt p.Mean} ± {fmt p.Se}; holds on {p.Holds} of {p.N} seeds" + (if unpaired > 0 then $" ({unpaired} of {c.Seeds} without a pair)" else ""))
        match Option.toList pairedPart @ diverged with
        | [] -> "-"
        | parts -> String.Join("; ", parts)

    /// The "paper vs ours" lines: every paper value, and every (task, optimizer, measure) that
    /// has none at its best learning rate.
    let comparisons (d: ReportData) : Comparison list =
        let g = grid d
        [ for t in g.Tasks do
            for o in g.Optimizers do
                for m in d.Config.Measures do
                    let papers = d.Config.Paper |> List.filter (fun p -> p.Task = t.Label && p.Optimizer = o.Label && p.Measure = m)
                    let line (p: PaperValue option) (lr: float option) =
                        let lr, best =
                            match lr with
                            | Some v -> Some v, false
                            | None -> let b = bestLr d t.Label o.Label m in b, (lrsOf d o.Label).Length > 1
                        { Task = t.Label; Optimizer = o.Label; Lr = lr; BestLr = best; Measure = m; Paper = p; Ours = stat d (cell d t.Label o.Label lr) m }
                    if papers.IsEmpty then yield line None None
                    else for p in papers -> line (Some p) p.Lr ]

    /// Run counts by status: done, diverged, failed, not run (missing or running).
    let counts (d: ReportData) =
        let st = d.Runs |> List.map (fun r -> d.Rows.TryFind r.Key |> Option.map (fun x -> x.Status) |> Option.defaultValue "missing")
        let c s = st |> List.filter ((=) s) |> List.length
        c "done", c "diverged", c "failed", st.Length - c "done" - c "diverged" - c "failed"

    /// Optimizers of the grid that could not run here for want of a shipped trained model, and
    /// whose runs are indeed missing from the database: (label, why).
    let unbuildable (d: ReportData) : (string * string) list =
        [ for o in (grid d).Optimizers do
            match Config.missingModel o.Name o.Options with
            | Some why when d.Runs |> List.exists (fun r -> r.OptimizerLabel = o.Label && not (d.Rows.ContainsKey r.Key)) -> yield o.Label, why
            | _ -> () ]

    let private safe (s: string) =
        String(s |> Seq.map (fun c -> if Char.IsLetterOrDigit c || c = '-' || c = '_' then c else '_') |> Array.ofSeq)

    /// A figure of the report: file name, caption.
    type Figure = { File: string; Caption: string }

    /// Draw the plots of one task into `dir`; returns the figures made.
    let plots (store: ResultsStore) (d: ReportData) (dir: string) (task: string) : Figure list =
        let g = grid d
        let figures = ResizeArray<Figure>()
        // Each optimizer at its best learning rate, leaving out those where every seed diverged there.
        let best =
            [ for o in g.Optimizers do
                let lr = bestLr d task o.Label Measure.FinalLoss
                if not (stat d (cell d task o.Label lr) Measure.FinalLoss).Values.IsEmpty then yield o.Label, lr ]
        let seriesOf (metric: string) =
            let keys = d.Runs |> List.filter (fun r -> r.TaskLabel = task) |> List.map (fun r -> r.Key)
            let points = store.Metric(keys, metric)
            [ for label, lr in best ->
                let runs = cell d task label lr
                label, lr, runs |> List.choose (fun r -> points.TryFind r.Key) ]
        let draw (metric: string) (allowLog: bool) (file: string) (title: string) (yLabel: string) (caption: string) =
            let series = seriesOf metric |> List.filter (fun (_, _, s) -> not s.IsEmpty)
            if not series.IsEmpty then
                let logScale = allowLog && Plots.canLog (series |> List.collect (fun (_, _, s) -> s))
                let bands = series |> List.choose (fun (label, lr, s) -> Plots.band $"{label} (lr {lrText lr})" logScale s)
                if not bands.IsEmpty then
                    Plots.curves (Path.Combine(dir, file)) title yLabel logScale (if metric = "loss" then ScottPlot.Alignment.LowerLeft else ScottPlot.Alignment.UpperRight) bands
                    figures.Add { File = file; Caption = caption }
        draw "loss" true $"loss-{safe task}.png" $"{task}: training loss" "loss"
            "Loss curves, each optimizer at its best learning rate (lowest mean final loss; optimizers that diverged at every learning rate are left out); band: min to max over seeds."
        draw TaskMetrics.lr false $"lr-{safe task}.png" $"{task}: learning rate" "learning rate"
            "Learning-rate traces (schedules, or the rate a hypergradient optimizer learns), each optimizer at its best learning rate."
        // The config's other metrics (validation loss, test accuracy, distance, ...), where recorded.
        for m in d.Config.Metrics |> List.filter (fun m -> m <> TaskMetrics.lr && not (List.contains m d.Config.FinalOnly)) do
            draw m (m.EndsWith "loss" || m = "distance") $"{safe m}-{safe task}.png" $"{task}: {m}" m
                $"The metric {m} (recorded every {Config.recordEvery g} steps), each optimizer at its best learning rate (by final loss); band: min to max over seeds."
        let heatMeasures = [ Measure.FinalLoss ] @ (if List.contains Measure.MeanLoss d.Config.Measures then [ Measure.MeanLoss ] else [])
        let optimizers = g.Optimizers |> List.map (fun o -> o.Label)
        let lrs = g.Optimizers |> List.collect (fun o -> Config.lrsOf g o) |> List.distinct |> List.sortBy (fun l -> defaultArg l 0.0)
        for m in heatMeasures do
            let stats = Array2D.init optimizers.Length lrs.Length (fun i j ->
                let runs = cell d task optimizers[i] lrs[j]
                if runs.IsEmpty then None else Some(stat d runs m))
            let values = stats |> Array2D.map (fun s -> match s with Some s when not s.Values.IsEmpty -> s.Mean | _ -> nan)
            let notes = stats |> Array2D.map (fun s ->
                match s with
                | None -> "not in grid"
                | Some s when s.Values.IsEmpty && s.Diverged > 0 -> ""
                | Some s when s.Values.IsEmpty && s.Failed > 0 -> "failed"
                | Some s when s.Values.IsEmpty && s.Missing > 0 -> "not run"
                | Some s when s.Values.IsEmpty -> "no value"
                | Some s when s.Diverged > 0 -> $"\n{s.Diverged}/{s.Seeds} div"
                | Some s when s.Missing + s.Failed > 0 -> $"\nn={s.Values.Length}"
                | _ -> "")
            let file = $"heatmap-{safe task}-{m.Name}.png"
            Plots.heatmap (Path.Combine(dir, file)) $"{task}: {m.Name} (mean over seeds); colour: value / column max" optimizers (lrs |> List.map lrText) values notes
            figures.Add
                { File = file
                  Caption = $"Mean {m.Name.Replace('_', ' ')} over seeds, optimizer x learning rate; each column divided by its largest value (infinity norm, as in the thesis, figures 4.5-4.8): the darkest cell of a column is the best there. Red: every seed diverged; grey: not in the grid, not run or failed." }
        List.ofSeq figures

    let private paperText (p: PaperValue option) =
        match p with
        | Some p -> (match p.Std with Some s -> $"{fmt p.Value} ± {fmt s}" | None -> fmt p.Value)
        | None -> "-"

    /// A table of a report page, rendered by `markdownTable` or `htmlTable`: header, rows of cell
    /// texts, the column shown bold (the verdict) and the one shaded in HTML (the paper's numbers).
    type private Table = { Header: string list; Rows: string list list; Bold: int option; Shaded: int option }

    let private table (header: string list) (rows: string list list) = { Header = header; Rows = rows; Bold = None; Shaded = None }

    /// Paper vs ours: every comparison, the paper's number beside ours.
    let private paperTable (d: ReportData) : Table =
        { table [ "task"; "optimizer"; "lr"; "measure"; "paper"; "ours (mean ± std over seeds)"; "where" ]
            [ for c in comparisons d ->
                let where = c.Paper |> Option.map (fun p -> p.Where) |> Option.defaultValue ""
                [ c.Task; c.Optimizer; lrText c.Lr + (if c.BestLr then "*" else ""); c.Measure.Name; paperText c.Paper; statText c.Ours; where ] ]
          with Shaded = Some 4 }

    /// The claims with both sides, the paired difference and the verdict.
    let private claimTable (d: ReportData) : Table =
        { table [ "claim (seed's wording)"; "where"; "task"; "measure"; "better: optimizer, lr, mean ± SE"; "worse: optimizer, lr, mean ± SE"; "paired difference ± SE"; "verdict" ]
            [ for c in claims d ->
                let sideText (s: ClaimSide) = $"{s.Label}, {claimLrText c s}, {summaryText s.Summary}"
                let measure = c.Claim.Measure.Name + (if c.Claim.Sensitivity then " (range over lrs)" else "")
                [ c.Claim.Text; c.Claim.Where; c.Claim.Task; measure; sideText c.Better; sideText c.Worse; pairedText c; c.Verdict.Text ] ]
          with Bold = Some 7 }

    /// Mean and standard error of every measure without a paper number.
    let private errorTable (d: ReportData) : Table =
        table [ "task"; "optimizer"; "lr"; "measure"; "mean ± SE" ]
            [ for c in comparisons d |> List.filter (fun c -> c.Paper.IsNone) ->
                [ c.Task; c.Optimizer; lrText c.Lr + (if c.BestLr then "*" else ""); c.Measure.Name; summaryText (Measures.summary c.Ours.Values) ] ]

    /// One task and measure: optimizer x learning rate.
    let private lrTable (d: ReportData) (g: Grid) (task: string) (m: Measure) : Table =
        let lrs = g.Optimizers |> List.collect (fun o -> Config.lrsOf g o) |> List.distinct |> List.sortBy (fun l -> defaultArg l 0.0)
        table ("optimizer" :: (lrs |> List.map (fun l -> "lr " + lrText l)))
            [ for o in g.Optimizers ->
                o.Label :: (lrs |> List.map (fun lr -> match cell d task o.Label lr with [] -> "" | runs -> statText (stat d runs m))) ]

    let private markdownTable (line: string -> unit) (t: Table) =
        let cellText (s: string) = s.Replace("|", "\\|").Replace("\n", " ")
        let row (cells: string list) = "| " + String.Join(" | ", cells) + " |"
        line (row t.Header)
        line ("|" + String.replicate t.Header.Length " --- |")
        for r in t.Rows do
            line (row (r |> List.mapi (fun i c -> if Some i = t.Bold && c <> "" then $"**{cellText c}**" else cellText c)))

    let private htmlTable (line: string -> unit) (e: string -> string) (t: Table) =
        let th = t.Header |> List.map (fun h -> $"<th>{e h}</th>")
        line ("<table><tr>" + String.Join("", th) + "</tr>")
        for r in t.Rows do
            let td i (c: string) =
                let text = if Some i = t.Bold then $"<b>{e c}</b>" else e c
                if Some i = t.Shaded then $"<td class=\"paper\">{text}</td>" else $"<td>{text}</td>"
            line ("<tr>" + String.Join("", r |> List.mapi td) + "</tr>")
        line "</table>"

    /// The Markdown page.
    let markdown (d: ReportData) (figures: (string * Figure list) list) : string =
        let g = grid d
        let sb = StringBuilder()
        let line (s: string) = sb.AppendLine s |> ignore
        let quick = if d.Quick then " (quick variant)" else ""
        line $"# {d.Config.Name}{quick}"
        line ""
        line $"**Reproduces:** {d.Config.Source}"
        line ""
        if d.Config.Description <> "" then
            line d.Config.Description
            line ""
        let done', diverged, failed, missing = counts d
        let seeds = String.Join(", ", g.Seeds)
        line $"Grid: {g.Tasks.Length} task(s) x {g.Optimizers.Length} optimizer(s), {g.Steps} steps, seeds {seeds}, {g.Dtype}. Runs: {done'} done, {diverged} diverged, {failed} failed, {missing} not run (of {d.Runs.Length})."
        line ""
        for label, why in unbuildable d do
            line $"**Not run here: {label}**: {why}."
            line ""
        let quickFlag = if d.Quick then " --quick" else ""
        line $"Results database: `{d.Db}`. Rerun: `optimizers run CONFIG{quickFlag} --db {d.Db}`; every run's own command line is in the database (`optimizers export --db {d.Db} --format csv`, column `reproduce`)."
        line ""
        line "## Paper vs ours"
        line ""
        line "\"paper\" is the number published in the source (the config's `paper` section; `where` says where it is printed). \"ours\" is the mean ± standard deviation over seeds from this database. A learning rate marked * is the grid's best for that measure (the paper gave none)."
        line ""
        markdownTable line (paperTable d)
        line ""
        line "## Claims"
        line ""
        if d.Config.Claims.IsEmpty then line "The config states no claims of the seed."
        else
            line "Each claim of the seed says that one optimizer beats another on a measure. Per seed (each seed has its own start and, on data tasks, its own minibatch order), the difference is taken so that a positive value supports the claim (a lower loss, a higher accuracy, or for a sensitivity claim a smaller range of the measure over the learning rates); the verdict is \"holds\" when the mean difference over seeds is more than 2 standard errors above 0, \"reversed\" when more than 2 below, else \"not significant\" (docs/configs.md, \"Claims\"). Values are mean ± standard error over seeds."
            line ""
            markdownTable line (claimTable d)
        line ""
        line "## Mean and standard error over seeds"
        line ""
        line "Every measure of every optimizer at its best learning rate for that measure (*) or its only one: mean ± standard error of the mean over seeds (n: seeds with a value)."
        line ""
        markdownTable line (errorTable d)
        line ""
        line "## Results by learning rate"
        for t in g.Tasks do
            for m in d.Config.Measures do
                line ""
                line $"### {t.Label}: {m.Name}"
                line ""
                markdownTable line (lrTable d g t.Label m)
        line ""
        line "## Plots"
        for task, figs in figures do
            line ""
            line $"### {task}"
            for f in figs do
                line ""
                line $"![{f.Caption}]({f.File})"
                line ""
                line $"*{f.Caption}*"
        sb.ToString()

    /// The HTML page (self-contained except for the PNG files next to it).
    let html (d: ReportData) (figures: (string * Figure list) list) : string =
        let g = grid d
        // Escape only what HTML needs (the page is UTF-8, so ± and friends stay readable in the source).
        let e (s: string) = s.Replace("&", "&amp;").Replace("<", "&lt;").Replace(">", "&gt;").Replace("\"", "&quot;")
        let sb = StringBuilder()
        let line (s: string) = sb.AppendLine s |> ignore
        let quick = if d.Quick then " (quick variant)" else ""
        line "<!DOCTYPE html>"
        line "<html lang=\"en\"><head><meta charset=\"utf-8\">"
        line $"<title>{e d.Config.Name}{quick}</title>"
        line "<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}table{border-collapse:collapse;margin:1em 0}th,td{border:1px solid #bbb;padding:4px 8px;text-align:left}th{background:#eee}td.paper{background:#fff7e0}figure{margin:1.5em 0}img{max-width:100%;border:1px solid #ddd}figcaption{font-size:0.9em;color:#555}</style>"
        line "</head><body>"
        line $"<h1>{e d.Config.Name}{quick}</h1>"
        line $"<p><b>Reproduces:</b> {e d.Config.Source}</p>"
        if d.Config.Description <> "" then line $"<p>{e d.Config.Description}</p>"
        let done', diverged, failed, missing = counts d
        let seeds = String.Join(", ", g.Seeds)
        line $"<p>Grid: {g.Tasks.Length} task(s) x {g.Optimizers.Length} optimizer(s), {g.Steps} steps, seeds {seeds}, {e g.Dtype}. Runs: {done'} done, {diverged} diverged, {failed} failed, {missing} not run (of {d.Runs.Length}). Results database: <code>{e d.Db}</code>.</p>"
        for label, why in unbuildable d do
            line $"<p><b>Not run here: {e label}</b>: {e why}.</p>"
        line "<h2>Paper vs ours</h2>"
        line "<p>&ldquo;paper&rdquo; (shaded) is the number published in the source; &ldquo;ours&rdquo; is the mean &plusmn; standard deviation over seeds from this database. A learning rate marked * is the grid&rsquo;s best for that measure.</p>"
        htmlTable line e (paperTable d)
        line "<h2>Claims</h2>"
        if d.Config.Claims.IsEmpty then line "<p>The config states no claims of the seed.</p>"
        else
            line "<p>Per seed, the difference is oriented so that a positive value supports the claim; verdict: &ldquo;holds&rdquo; when the mean difference over seeds exceeds 2 standard errors, &ldquo;reversed&rdquo; when it is below &minus;2 standard errors, else &ldquo;not significant&rdquo;. Values: mean &plusmn; standard error over seeds.</p>"
            htmlTable line e (claimTable d)
        line "<h2>Mean and standard error over seeds</h2>"
        htmlTable line e (errorTable d)
        line "<h2>Results by learning rate</h2>"
        for t in g.Tasks do
            for m in d.Config.Measures do
                line $"<h3>{e t.Label}: {e m.Name}</h3>"
                htmlTable line e (lrTable d g t.Label m)
        line "<h2>Plots</h2>"
        for task, figs in figures do
            line $"<h3>{e task}</h3>"
            for f in figs do
                line $"<figure><img src=\"{e f.File}\" alt=\"{e f.Caption}\"><figcaption>{e f.Caption}</figcaption></figure>"
        line "</body></html>"
        sb.ToString()

    /// The comparison as JSON (for --json).
    let json (d: ReportData) (files: string list) : string =
        use ms = new MemoryStream()
        (
            use w = new Utf8JsonWriter(ms, JsonWriterOptions(Indented = true))
            let num (name: string) (v: float) = if Double.IsNaN v || Double.IsInfinity v then w.WriteNull name else w.WriteNumber(name, v)
            w.WriteStartObject()
            w.WriteString("config", d.Config.Name)
            w.WriteBoolean("quick", d.Quick)
            w.WriteString("db", d.Db)
            let done', diverged, failed, missing = counts d
            w.WriteStartObject "runs"
            w.WriteNumber("total", d.Runs.Length)
            w.WriteNumber("done", done')
            w.WriteNumber("diverged", diverged)
            w.WriteNumber("failed", failed)
            w.WriteNumber("not_run", missing)
            w.WriteEndObject()
            w.WriteStartArray "comparison"
            for c in comparisons d do
                w.WriteStartObject()
                w.WriteString("task", c.Task)
                w.WriteString("optimizer", c.Optimizer)
                match c.Lr with Some v -> w.WriteNumber("lr", v) | None -> w.WriteNull "lr"
                w.WriteBoolean("best_lr", c.BestLr)
                w.WriteString("measure", c.Measure.Name)
                match c.Paper with
                | Some p ->
                    w.WriteNumber("paper", p.Value)
                    match p.Std with Some s -> w.WriteNumber("paper_std", s) | None -> w.WriteNull "paper_std"
                    w.WriteString("paper_where", p.Where)
                | None -> w.WriteNull "paper"
                if c.Ours.Values.IsEmpty then w.WriteNull "ours_mean" else num "ours_mean" c.Ours.Mean
                if c.Ours.Values.IsEmpty then w.WriteNull "ours_std" else num "ours_std" c.Ours.Std
                w.WriteNumber("n", c.Ours.Values.Length)
                w.WriteNumber("seeds", c.Ours.Seeds)
                w.WriteNumber("diverged", c.Ours.Diverged)
                w.WriteNumber("failed", c.Ours.Failed)
                w.WriteNumber("not_run", c.Ours.Missing)
                w.WriteEndObject()
            w.WriteEndArray()
            w.WriteStartArray "files"
            for f in files do w.WriteStringValue f
            w.WriteEndArray()
            w.WriteEndObject()
        )
        Encoding.UTF8.GetString(ms.ToArray())

    let private csvField (s: string) =
        if s.IndexOfAny([| ','; '"'; '\n'; '\r' |]) >= 0 then "\"" + s.Replace("\"", "\"\"") + "\"" else s

    /// One row per run of the grid: task, optimizer, lr, seed, data seed, status and every measure
    /// (empty: no value).
    let perSeedCsv (d: ReportData) : string =
        let sb = StringBuilder()
        let measures = d.Config.Measures
        sb.AppendLine(String.Join(",", [ "task"; "optimizer"; "lr"; "seed"; "data_seed"; "status" ] @ (measures |> List.map (fun m -> m.Name)))) |> ignore
        for r in d.Runs do
            let status = d.Rows.TryFind r.Key |> Option.map (fun x -> x.Status) |> Option.defaultValue "not run"
            let dataSeed = r.TaskOptions |> List.tryFind (fun (n, _) -> n = "data_seed") |> Option.map snd |> Option.defaultValue ""
            let value (m: Measure) =
                match d.Measures.TryFind r.Key |> Option.bind (Map.tryFind m.Name) with
                | Some(Some v) when status = "done" || status = "diverged" -> Output.num v
                | _ -> ""
            let lr = match r.Lr with Some v -> Output.num v | None -> "default"
            sb.AppendLine(String.Join(",", [ r.TaskLabel; r.OptimizerLabel; lr; string r.Seed; dataSeed; status ] @ (measures |> List.map value) |> List.map csvField)) |> ignore
        sb.ToString()

    /// The claims and their verdicts as JSON (claims.json, read by the results index).
    let claimsJson (d: ReportData) : string =
        use ms = new MemoryStream()
        (
            use w = new Utf8JsonWriter(ms, JsonWriterOptions(Indented = true))
            let num (name: string) (v: float) = if Double.IsNaN v || Double.IsInfinity v then w.WriteNull name else w.WriteNumber(name, v)
            let g = grid d
            let done', diverged, failed, missing = counts d
            w.WriteStartObject()
            w.WriteString("config", d.Config.Name)
            w.WriteBoolean("quick", d.Quick)
            w.WriteNumber("steps", g.Steps)
            w.WriteNumber("seeds", g.Seeds.Length)
            w.WriteStartObject "runs"
            w.WriteNumber("total", d.Runs.Length)
            w.WriteNumber("done", done')
            w.WriteNumber("diverged", diverged)
            w.WriteNumber("failed", failed)
            w.WriteNumber("not_run", missing)
            w.WriteEndObject()
            w.WriteStartArray "claims"
            for c in claims d do
                w.WriteStartObject()
                w.WriteString("text", c.Claim.Text)
                w.WriteString("where", c.Claim.Where)
                w.WriteString("task", c.Claim.Task)
                w.WriteString("measure", c.Claim.Measure.Name)
                w.WriteBoolean("sensitivity", c.Claim.Sensitivity)
                for name, s in [ "better", c.Better; "worse", c.Worse ] do
                    w.WriteStartObject name
                    w.WriteString("optimizer", s.Label)
                    w.WriteString("lr", claimLrText c s)
                    w.WriteNumber("n", s.Summary.N)
                    num "mean" s.Summary.Mean
                    num "se" s.Summary.Se
                    w.WriteStartArray "paper"
                    for p in paperValuesOf d c.Claim.Task s.Label do w.WriteStringValue p
                    w.WriteEndArray()
                    w.WriteEndObject()
                w.WriteNumber("paired_n", c.Paired.N)
                num "diff_mean" c.Paired.Mean
                num "diff_se" c.Paired.Se
                w.WriteNumber("holds_on", c.Paired.Holds)
                w.WriteNumber("better_diverged", c.BetterDiverged)
                w.WriteNumber("worse_diverged", c.WorseDiverged)
                w.WriteString("ours", $"{c.Better.Label} {summaryText c.Better.Summary} vs {c.Worse.Label} {summaryText c.Worse.Summary}; difference {pairedText c}")
                w.WriteString("verdict", c.Verdict.Text)
                w.WriteEndObject()
            w.WriteEndArray()
            w.WriteEndObject()
        )
        Encoding.UTF8.GetString(ms.ToArray())

    /// Write report.md, report.html, per-seed.csv, claims.json and the PNGs into `dir`; returns the
    /// files written.
    let write (store: ResultsStore) (d: ReportData) (dir: string) (onTask: string -> unit) : string list =
        Directory.CreateDirectory dir |> ignore
        let figures =
            [ for t in (grid d).Tasks do
                onTask t.Label
                yield t.Label, plots store d dir t.Label ]
        let md = Path.Combine(dir, "report.md")
        let page = Path.Combine(dir, "report.html")
        let csv = Path.Combine(dir, "per-seed.csv")
        let claimsFile = Path.Combine(dir, "claims.json")
        File.WriteAllText(md, markdown d figures)
        File.WriteAllText(page, html d figures)
        File.WriteAllText(csv, perSeedCsv d)
        File.WriteAllText(claimsFile, claimsJson d)
        [ md; page; csv; claimsFile ] @ [ for _, fs in figures do for f in fs -> Path.Combine(dir, f.File) ]
