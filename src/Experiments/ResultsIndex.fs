namespace Optimizers.Experiments

open System
open System.IO
open System.Text
open System.Text.Json

/// One row of the results index: a claim of a config and what its committed report says.
type IndexRow =
    { Config: string
      Text: string
      Where: string
      /// The paper's numbers for the two optimizers (from the config's `paper` section), if any.
      Paper: string
      Ours: string
      Verdict: string
      /// The report, relative to the index ("" when not run).
      Link: string }

/// docs/results/README.md: one row per claim of every paper config, generated from the configs
/// (the claims' wording) and the committed reports' claims.json (ours and the verdict). Nothing
/// in it is written by hand.
module ResultsIndex =

    let private options = JsonDocumentOptions(CommentHandling = JsonCommentHandling.Skip, AllowTrailingCommas = true)

    let private str (e: JsonElement) (name: string) =
        match e.TryGetProperty name with
        | true, v when v.ValueKind = JsonValueKind.String -> v.GetString()
        | _ -> ""

    /// The configs of a directory (top level, sorted): (file, name, source, claims as JSON elements
    /// cloned out of their document, paper values).
    let private configs (dir: string) =
        [ for f in Directory.GetFiles(dir, "*.json") |> Array.sort do
            use doc = JsonDocument.Parse(File.ReadAllText f, options)
            let root = doc.RootElement
            let list (name: string) =
                match root.TryGetProperty name with
                | true, v when v.ValueKind = JsonValueKind.Array -> [ for x in v.EnumerateArray() -> x.Clone() ]
                | _ -> []
            yield f, str root "name", str root "source", list "claims", list "paper" ]

    /// The paper's numbers for a claim's two optimizers on its task: "hyperadam 0.42, adam 0.65 (final_loss)".
    let private paperText (paper: JsonElement list) (claim: JsonElement) =
        let task = str claim "task"
        let number (e: JsonElement) (name: string) =
            match e.TryGetProperty name with
            | true, v when v.ValueKind = JsonValueKind.Number -> Some(v.GetDouble())
            | _ -> None
        // A printed number names its rate when the paper gives one; it belongs to the claim only at the claim's rate.
        let rateMatches (p: JsonElement) (side: string) =
            match number p "lr", Option.orElse (number claim "lr") (number claim $"{side}_lr") with
            | Some a, Some b -> a = b
            | _ -> true
        let valuesOf (side: string) =
            let label = str claim side
            paper
            |> List.filter (fun p -> str p "task" = task && str p "optimizer" = label && rateMatches p side)
            |> List.map (fun p -> $"""{label} {p.GetProperty("value").GetRawText()} ({str p "measure"})""")
        match valuesOf "better" @ valuesOf "worse" with
        | [] -> "(no number printed)"
        | xs -> String.Join("; ", xs)

    /// The rows of the index and the configs without claims (name, status).
    let rows (configsDir: string) (resultsDir: string) : IndexRow list * (string * string) list =
        let all = configs configsDir
        let rows =
            [ for _, name, _, claims, paper in all do
                let committed = Path.Combine(resultsDir, name, "claims.json")
                let results =
                    if File.Exists committed then
                        use doc = JsonDocument.Parse(File.ReadAllText committed)
                        let quick = match doc.RootElement.TryGetProperty "quick" with | true, v -> v.ValueKind = JsonValueKind.True | _ -> false
                        Some(quick, [ for c in doc.RootElement.GetProperty("claims").EnumerateArray() -> c.Clone() ])
                    else None
                for i, claim in List.indexed claims do
                    let text = str claim "text"
                    let row verdict ours link =
                        { Config = name; Text = text; Where = str claim "where"; Paper = paperText paper claim; Ours = ours; Verdict = verdict; Link = link }
                    match results with
                    | None -> yield row "not run yet" "-" ""
                    | Some(quick, rs) ->
                        let link = $"{name}/report.md"
                        match List.tryItem i rs with
                        | Some r when str r "text" = text ->
                            let q = if quick then " (quick variant only)" else ""
                            yield row (str r "verdict" + q) (str r "ours") link
                        | _ -> yield row "stale: the report predates this claim; rerun `optimizers report --all`" "-" link ]
        let without =
            [ for _, name, _, claims, _ in all do
                if claims.IsEmpty then
                    let status = if File.Exists(Path.Combine(resultsDir, name, "report.md")) then $"[report]({name}/report.md)" else "not run yet"
                    yield name, status ]
        rows, without

    /// The index page.
    let markdown (configsDir: string) (resultsDir: string) : string =
        let rows, without = rows configsDir resultsDir
        let sb = StringBuilder()
        let line (s: string) = sb.AppendLine s |> ignore
        let cell (s: string) = s.Replace("|", "\\|").Replace("\n", " ")
        line "# Results: every claim of the seeds, paper against ours"
        line ""
        line "Generated by `optimizers report --all` from the configs in `paper-configs/` (the claims' wording, where the seed states them, and the paper's printed numbers) and the committed reports under `docs/results/<config>/` (ours and the verdict, from each report's `claims.json`). Do not edit by hand; rerun the command."
        line ""
        line "Verdict rule (docs/configs.md, \"Claims\"): per seed, the difference between the two optimizers oriented so that a positive value supports the claim; \"holds\" when its mean over seeds is more than 2 standard errors above 0, \"reversed\" when more than 2 below, else \"not significant\"; \"not run yet\" when the config has no committed full run."
        line ""
        line "Before a \"reversed\" verdict is accepted, the optimizers' formulas are checked against the seed's text and the config's settings against the papers' reference code; what was checked for each is in [reversed-verdicts.md](reversed-verdicts.md) (written by hand)."
        line ""
        let counts = rows |> List.countBy (fun r -> r.Verdict.Split(" (")[0])
        line ("Claims: " + String.Join(", ", counts |> List.map (fun (v, n) -> $"{n} {v}")) + $" (of {rows.Length}).")
        line ""
        line "| config | claim (seed's wording) | where | paper's numbers | ours (mean ± SE over seeds; paired difference) | verdict | report |"
        line "| --- | --- | --- | --- | --- | --- | --- |"
        for r in rows do
            let link = if r.Link = "" then "-" else $"[report]({r.Link})"
            line $"| {cell r.Config} | {cell r.Text} | {cell r.Where} | {cell r.Paper} | {cell r.Ours} | **{cell r.Verdict}** | {link} |"
        line ""
        line "## Configs without claims"
        line ""
        if without.IsEmpty then line "None."
        else
            line "| config | report |"
            line "| --- | --- |"
            for name, status in without do line $"| {cell name} | {status} |"
        sb.ToString()

    /// Write `resultsDir/README.md`; returns its path.
    let write (configsDir: string) (resultsDir: string) : string =
        Directory.CreateDirectory resultsDir |> ignore
        let path = Path.Combine(resultsDir, "README.md")
        File.WriteAllText(path, markdown configsDir resultsDir)
        path
