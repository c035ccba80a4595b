/// The experiment host (issue 8): configs, the results database, resuming, kill -9, shards and
/// merge, reports and exit codes, through the CLI in-process (and once as a child process).
module Optimizers.Tests.HostTests

open System
open System.Diagnostics
open System.IO
open System.Text.Json
open System.Threading
open Expecto
open Optimizers.Tests.Check
open Microsoft.Data.Sqlite
open Optimizers.Experiments


let private write (dir: TempDir) (name: string) (json: string) =
    let p = dir.File name
    File.WriteAllText(p, json)
    p

/// A small config: 2 tasks x 2 optimizers x 2 learning rates x 2 seeds = 16 runs of `steps` steps.
let private tinyConfig (name: string) (steps: int) =
    $$"""
{
  "name": "{{name}}",
  "source": "test: a tiny grid",
  "grid": {
    "tasks": [ { "name": "rosenbrock" }, { "name": "sum-of-squares", "label": "squares", "options": { "dim": 10 } } ],
    "optimizers": [ { "name": "sgd" }, { "name": "adam", "schedule": { "name": "cosine" } } ],
    "lrs": [0.01, 0.001],
    "seeds": [0, 1],
    "steps": {{steps}},
    "dtype": "float64"
  },
  "metrics": ["lr", "distance"],
  "measures": ["final_loss", "mean_loss", "steps_to:1", "final:distance"],
  "paper": [ { "task": "rosenbrock", "optimizer": "adam", "lr": 0.01, "measure": "final_loss", "value": 0.5, "std": 0.1, "where": "Table 0 (made up for the test)" } ],
  "quick": { "steps": 10, "seeds": [0] }
}
"""

let private store (path: string) = new ResultsStore(path)

/// Runs of a database, sorted by key: (key, status, final loss, mean loss, diverged step).
let private runSummary (db: string) =
    use s = store db
    s.Runs() |> List.map (fun r -> r.Key, r.Status, r.FinalLoss, r.MeanLoss, r.DivergedStep) |> List.sortBy (fun (k, _, _, _, _) -> k)

let private metricRows (db: string) =
    use s = store db
    s.AllMetrics None |> List.sort

/// The built `optimizers` executable next to the test assembly (an Exe project reference copies it).
let private executable () =
    let dir = AppContext.BaseDirectory
    let host = Path.Combine(dir, "optimizers")
    let dll = Path.Combine(dir, "optimizers.dll")
    if File.Exists host then host, []
    elif File.Exists dll then "dotnet", [ dll ]
    else failwith $"the optimizers executable was not found in {dir}"

let private countDone (db: string) =
    try
        use c = new SqliteConnection($"Data Source={db};Mode=ReadOnly;Pooling=False")
        c.Open()
        use cmd = c.CreateCommand()
        cmd.CommandText <- "SELECT count(*) FROM runs WHERE status = 'done'"
        Convert.ToInt32(cmd.ExecuteScalar())
    with _ -> 0

let private expectBadConfig (dir: TempDir) (json: string) (part: string) =
    let config = write dir $"bad-{Guid.NewGuid():N}.json" json
    let db = dir.File $"bad-{Guid.NewGuid():N}.db"
    let code, _, err = cli [ "run"; config; "--db"; db; "--quiet" ]
    Expect.equal code 2 $"exit code for a config that should fail with '{part}'; stderr: {err}"
    Expect.stringContains err part "the message names the field"
    Expect.equal (lines err).Length 1 $"one line: {err}"
    Expect.isFalse (File.Exists db) "validated before anything ran: no database"

[<Tests>]
let tests =
    testSequenced <| testList "host" [

        testCase "a tiny config runs to a report" <| fun () ->
            use dir = new TempDir("host")
            let config = write dir "tiny.json" (tinyConfig "tiny" 40)
            let db = dir.File "tiny.db"
            let code, out, err = cli [ "run"; config; "--db"; db; "--jobs"; "2"; "--json" ]
            Expect.equal code 0 $"run exit code; stderr: {err}"
            use doc = JsonDocument.Parse out
            let root = doc.RootElement
            Expect.equal (root.GetProperty("total").GetInt32()) 16 "16 runs"
            Expect.equal (root.GetProperty("done").GetInt32() + root.GetProperty("diverged").GetInt32()) 16 "all finished"
            Expect.equal (root.GetProperty("report").GetProperty("comparison").GetArrayLength()) 16 "2 tasks x 2 optimizers x 4 measures"
            let reportDir = dir.File "report"
            let code, out, err = cli [ "report"; "--db"; db; "--out"; reportDir ]
            Expect.equal code 0 $"report exit code; stderr: {err}"
            let md = File.ReadAllText(Path.Combine(reportDir, "report.md"))
            Expect.stringContains md "| rosenbrock | adam | 0.01 | final_loss | 0.5 ± 0.1 |" "paper next to ours"
            Expect.stringContains md "Table 0 (made up for the test)" "where the paper prints it"
            Expect.stringContains (File.ReadAllText(Path.Combine(reportDir, "report.html"))) "<td class=\"paper\">0.5 ± 0.1</td>" "html"
            for f in [ "loss-rosenbrock.png"; "lr-rosenbrock.png"; "distance-rosenbrock.png"; "heatmap-rosenbrock-final_loss.png"; "heatmap-squares-mean_loss.png"; "loss-squares.png" ] do
                let p = Path.Combine(reportDir, f)
                Expect.isTrue (File.Exists p) $"{f} written"
                Expect.isGreaterThan (FileInfo(p).Length) 5000L $"{f} is a picture"
                Expect.stringContains md $"]({f})" $"{f} linked from the page"
            Expect.equal (lines out).Length 14 "report prints the files it wrote: 2 pages, the per-seed CSV, claims.json, 5 plots per task (loss, lr, distance, 2 heat maps)"
            // Export: one CSV row per run with the command line that reproduces it.
            let code, csv, _ = cli [ "export"; "--db"; db; "--format"; "csv" ]
            Expect.equal code 0 "export exit code"
            let rows = lines csv
            Expect.equal rows.Length 17 "header and 16 runs"
            Expect.stringContains rows[0] "run_key,config,task" "header"
            Expect.stringContains csv "optimizers compare --tasks" "reproducing command line"
            let code, json, _ = cli [ "export"; "--db"; db; "--format"; "json"; "--table"; "metrics" ]
            Expect.equal code 0 "export metrics exit code"
            use m = JsonDocument.Parse json
            let rows = [ for r in m.RootElement.EnumerateArray() -> r.GetProperty("run_key").GetString(), r.GetProperty("name").GetString() ]
            use s = store db
            for r in s.Runs() do
                let count name = rows |> List.filter ((=) (r.Key, name)) |> List.length
                if r.Status = "done" then
                    Expect.equal (count "loss") 41 $"{r.Key}: the loss at steps 0..40"
                    Expect.equal (count "distance") 41 $"{r.Key}: the task's metric too"
                // sgd keeps no learning rate and has no schedule: nothing to record.
                Expect.equal (count "lr" > 0) (r.Optimizer = "adam") $"{r.Key}: lr recorded where there is a schedule"

        testCase "rerunning a config skips finished runs; a recorded command line reproduces its run" <| fun () ->
            use dir = new TempDir("host")
            let config = write dir "tiny.json" (tinyConfig "tiny" 20)
            let db = dir.File "tiny.db"
            let code, _, _ = cli [ "run"; config; "--db"; db; "--quiet" ]
            Expect.equal code 0 "first run"
            let before = runSummary db
            let code, out, _ = cli [ "run"; config; "--db"; db; "--json" ]
            Expect.equal code 0 "second run"
            use doc = JsonDocument.Parse out
            Expect.equal (doc.RootElement.GetProperty("skipped").GetInt32()) 16 "all 16 skipped"
            Expect.equal (doc.RootElement.GetProperty("done").GetInt32()) 0 "none run again"
            Expect.equal (runSummary db) before "results unchanged"
            use s = store db
            let runs = s.Runs()
            Expect.all runs (fun r -> r.Attempts = 1) "each run ran once"
            // The quick variant: other keys (fewer steps), in the same database.
            let code, out, _ = cli [ "run"; config; "--db"; db; "--quick"; "--json" ]
            Expect.equal code 0 "quick run"
            use q = JsonDocument.Parse out
            Expect.equal (q.RootElement.GetProperty("total").GetInt32()) 8 "quick: one seed"
            Expect.equal (q.RootElement.GetProperty("skipped").GetInt32()) 0 "quick runs are new"
            // The reproduce command of one run, run alone into another database, gives the same run.
            let run = runs |> List.find (fun r -> r.Optimizer = "adam" && r.Task = "rosenbrock")
            Expect.stringStarts run.Reproduce "optimizers compare " "a compare command"
            let args = (run.Reproduce.Substring "optimizers ".Length).Split(' ') |> List.ofArray
            let other = dir.File "alone.db"
            let code, _, err = cli (args @ [ "--db"; other; "--quiet" ])
            Expect.equal code 0 $"the recorded command runs; stderr: {err}"
            match runSummary other with
            | [ (key, status, final, _, _) ] ->
                Expect.equal key run.Key "same run key"
                Expect.equal status "done" "done"
                Expect.equal final run.FinalLoss "same final loss"
            | other -> failtest $"one run expected, got {other.Length}"

        testCase "kill -9 during a sweep, then a rerun completes it with no duplicate and no lost run" <| fun () ->
            use dir = new TempDir("host")
            let config = write dir "long.json" """
{ "name": "long", "source": "test: runs long enough to be killed",
  "grid": { "tasks": [ { "name": "rosenbrock" } ], "optimizers": [ { "name": "adam" }, { "name": "momentum" } ],
            "lrs": [0.001], "seeds": [0, 1, 2, 3], "steps": 1000, "record_every": 10 } }
"""
            let db = dir.File "long.db"
            let file, pre = executable ()
            let psi = ProcessStartInfo(file, pre @ [ "run"; config; "--db"; db; "--quiet"; "--threads"; "1" ], WorkingDirectory = dir.Path, UseShellExecute = false)
            use child = Process.Start psi
            let sw = Stopwatch.StartNew()
            while countDone db < 2 && not child.HasExited && sw.Elapsed.TotalSeconds < 40.0 do Thread.Sleep 20
            Expect.isFalse child.HasExited "the sweep was still running when killed"
            child.Kill true // SIGKILL
            child.WaitForExit()
            let partial = runSummary db
            Expect.isLessThan (partial |> List.filter (fun (_, s, _, _, _) -> s = "done") |> List.length) 8 "killed mid-sweep"
            let code, out, err = cli [ "run"; config; "--db"; db; "--json" ]
            Expect.equal code 0 $"rerun exit code; stderr: {err}"
            use doc = JsonDocument.Parse out
            Expect.isGreaterThanOrEqual (doc.RootElement.GetProperty("skipped").GetInt32()) 2 "finished runs skipped"
            let final = runSummary db
            Expect.equal final.Length 8 "8 runs, no duplicate"
            Expect.all final (fun (_, s, _, _, _) -> s = "done") "every run done"
            let metrics = metricRows db
            for key, _, _, _, _ in final do
                let n = metrics |> List.filter (fun (k, name, _, _) -> k = key && name = "loss") |> List.length
                Expect.equal n 101 $"run {key}: losses at steps 0, 10, ..., 1000 exactly once"

        testCase "shards then merge equal the unsharded sweep" <| fun () ->
            use dir = new TempDir("host")
            let config = write dir "tiny.json" (tinyConfig "tiny" 15)
            let whole = dir.File "whole.db"
            let code, _, _ = cli [ "sweep"; config; "--db"; whole; "--quiet"; "--jobs"; "2" ]
            Expect.equal code 0 "unsharded, two runs at a time (the shards run one at a time)"
            let shards =
                [ for i in 0 .. 2 ->
                    let db = dir.File $"shard{i}.db"
                    let code, _, err = cli [ "sweep"; config; "--shard"; $"{i}/3"; "--db"; db; "--quiet" ]
                    Expect.equal code 0 $"shard {i}; stderr: {err}"
                    db ]
            let sizes = shards |> List.map (fun db -> (runSummary db).Length)
            Expect.equal sizes [ 6; 5; 5 ] "16 runs split 6 + 5 + 5"
            let keys = shards |> List.collect (fun db -> runSummary db |> List.map (fun (k, _, _, _, _) -> k))
            Expect.equal (List.distinct keys).Length 16 "the shards are disjoint"
            let merged = dir.File "merged.db"
            let code, out, err = cli ([ "merge"; merged ] @ shards @ [ "--json" ])
            Expect.equal code 0 $"merge; stderr: {err}"
            use doc = JsonDocument.Parse out
            let inputs = [ for i in doc.RootElement.GetProperty("inputs").EnumerateArray() -> i.GetProperty("runs_taken").GetInt32(), i.GetProperty("seed_conflicts").GetInt32() ]
            Expect.equal inputs [ 6, 0; 5, 0; 5, 0 ] "every run taken once; every seed gives the same start in every shard"
            Expect.equal (runSummary merged) (runSummary whole) "same runs and results"
            Expect.equal (metricRows merged) (metricRows whole) "same metrics"
            // Merging again changes nothing.
            let code, _, _ = cli ([ "merge"; merged ] @ shards @ [ "--quiet" ])
            Expect.equal code 0 "merge again"
            Expect.equal (metricRows merged) (metricRows whole) "idempotent"
            expectBadInput [ "merge"; merged ] "merge needs an output and at least one input"
            expectBadInput [ "sweep"; config; "--shard"; "3/3" ] "shard: '3/3' is invalid"

        testCase "malformed configs exit with 2 and name the field" <| fun () ->
            use dir = new TempDir("host")
            let good = tinyConfig "tiny" 5
            let bad (from: string) (into: string) =
                Expect.stringContains good from "the test edits an existing part"
                good.Replace(from, into)
            expectBadConfig dir (bad "{ \"name\": \"adam\"" "{ \"name\": \"adamz\"")
                "grid.optimizers[1].name: unknown optimizer 'adamz'; valid: sgd, momentum, nesterov, adam"
            expectBadConfig dir (bad "{ \"name\": \"rosenbrock\" }" "{ \"name\": \"rosen\" }")
                "grid.tasks[0].name: unknown task 'rosen'; valid: rosenbrock, sum-of-squares"
            expectBadConfig dir (bad "\"steps\": 5" "\"steps\": \"5\"") "grid.steps: expected a whole number, got the string \"5\""
            expectBadConfig dir (bad "\"seeds\": [0, 1]," "") "grid.seeds: missing field"
            expectBadConfig dir (bad "\"steps\": 5" "\"stepz\": 5") "grid.stepz: unknown field 'stepz'; valid: tasks, optimizers"
            expectBadConfig dir (bad "{ \"name\": \"sgd\" }" "{ \"name\": \"sgd\", \"options\": { \"betas\": 1 } }")
                "grid.optimizers[0].options.betas: sgd: unknown option 'betas'; valid options: lr, momentum"
            expectBadConfig dir (bad "{ \"name\": \"sgd\" }" "{ \"name\": \"sgd\", \"options\": { \"momentum\": \"high\" } }")
                "grid.optimizers[0].options.momentum: sgd: option momentum expects a number, got the string \"high\""
            expectBadConfig dir (bad "{ \"name\": \"sgd\" }" "{ \"name\": \"sgd\", \"options\": { \"nesterov\": 1 } }")
                "grid.optimizers[0].options.nesterov: sgd: option nesterov expects true or false"
            expectBadConfig dir (bad "\"options\": { \"dim\": 10 }" "\"options\": { \"dim\": 0 }")
                "grid.tasks[1].options.dim: sum-of-squares: dim = 0 is invalid"
            expectBadConfig dir (bad "\"lrs\": [0.01, 0.001]" "\"lrs\": [0.01, -0.1]") "grid.lrs[1]: learning rate -0.1 is invalid"
            expectBadConfig dir (bad "\"name\": \"cosine\"" "\"name\": \"cosinus\"") "grid.optimizers[1].schedule.name: unknown schedule 'cosinus'"
            expectBadConfig dir (bad "\"measures\": [\"final_loss\"" "\"measures\": [\"last_loss\"") "measures[0]: unknown measure 'last_loss'; valid: final_loss"
            expectBadConfig dir (bad "\"metrics\": [\"lr\", \"distance\"]" "\"metrics\": [\"accuracy\"]") "metrics[0]: unknown metric 'accuracy'; valid: lr, param_norm, distance"
            expectBadConfig dir (bad "\"optimizer\": \"adam\", \"lr\": 0.01" "\"optimizer\": \"adamw\", \"lr\": 0.01")
                "paper[0].optimizer: unknown optimizer label 'adamw'; valid: sgd, adam"
            expectBadConfig dir (bad "\"source\": \"test: a tiny grid\"," "") "source: missing field"
            expectBadConfig dir (bad "\"grid\": {" "\"grid\": {,") "not valid JSON at line 5"
            // --quick on a config without a quick section, and a missing file.
            let noQuick = write dir "noquick.json" (bad ",\n  \"quick\": { \"steps\": 10, \"seeds\": [0] }" "")
            let code, _, err = cli [ "run"; noQuick; "--quick"; "--db"; dir.File "nq.db" ]
            Expect.equal code 2 "exit code"
            Expect.stringContains err "quick: config 'tiny' has no quick section" "message"
            let code, _, err = cli [ "run"; dir.File "missing.json" ]
            Expect.equal code 2 "missing config"
            Expect.stringContains err "not found" "message"

        testCase "a diverging run is marked diverged and the sweep goes on" <| fun () ->
            use dir = new TempDir("host")
            let config = write dir "div.json" """
{ "name": "div", "source": "test: one learning rate diverges",
  "grid": { "tasks": [ { "name": "rosenbrock", "options": { "start": [-1.5, 2] } } ], "optimizers": [ { "name": "sgd" } ],
            "lrs": [1, 0.0001], "seeds": [0], "steps": 50, "dtype": "float64" } }
"""
            let db = dir.File "div.db"
            let code, out, err = cli [ "run"; config; "--db"; db ]
            Expect.equal code 0 $"diverging is a result, not a failure; stderr: {err}"
            Expect.stringContains out "1 done, 1 diverged, 0 failed" "summary"
            Expect.stringContains err "diverged" "progress line names it"
            use s = store db
            let runs = s.Runs() |> List.sortBy (fun r -> r.Lr)
            Expect.equal (runs |> List.map (fun r -> r.Status)) [ "done"; "diverged" ] "statuses by lr"
            let d = List.last runs
            Expect.isSome d.DivergedStep "the step is recorded"
            Expect.isNone d.FinalLoss "no final loss"
            Expect.stringContains d.Error "loss = " "the loss that diverged"
            let code, out, _ = cli [ "run"; config; "--db"; db; "--json" ]
            Expect.equal code 0 "rerun"
            use doc = JsonDocument.Parse out
            Expect.equal (doc.RootElement.GetProperty("skipped").GetInt32()) 2 "a diverged run is finished, not redone"

        testCase "a failing run is marked failed, the others still run, exit code 1; a rerun retries it" <| fun () ->
            use dir = new TempDir("host")
            let config = write dir "fail.json" """
{ "name": "fail", "source": "test: a metric that throws on rosenbrock",
  "grid": { "tasks": [ { "name": "rosenbrock" }, { "name": "sum-of-squares", "options": { "dim": 3 } } ], "optimizers": [ { "name": "sgd" } ],
            "lrs": [0.0001], "seeds": [0], "steps": 20 },
  "metrics": ["boom"] }
"""
            let db = dir.File "fail.db"
            let own = TaskMetrics.forTask "rosenbrock" |> List.filter (fun m -> not (TaskMetrics.generic |> List.exists (fun g -> g.Name = m.Name)))
            let boom : TaskMetrics.Metric = { Name = "boom"; Doc = "fails at step 5"; Compute = fun _ _ -> failwith "boom" }
            TaskMetrics.register "rosenbrock" (own @ [ boom ])
            try
                let code, _, err = cli [ "run"; config; "--db"; db; "--quiet" ]
                Expect.equal code 1 "a run failed"
                Expect.stringContains err "failed: Exception: boom" "the error is printed"
                let code, _, _ = cli [ "run"; config; "--db"; db; "--quiet" ]
                Expect.equal code 1 "it fails again"
            finally
                TaskMetrics.register "rosenbrock" own
            use s = store db
            let runs = s.Runs() |> List.sortBy (fun r -> r.Task)
            Expect.equal [ for r in runs -> r.Task, r.Status, r.Attempts ] [ "rosenbrock", "failed", 2; "sum-of-squares", "done", 1 ] "failed runs are retried, done ones not"
            Expect.stringContains (List.head runs).Error "boom" "the error is stored"

        testCase "compare runs a grid from flags; every verb has help" <| fun () ->
            use dir = new TempDir("host")
            let db = dir.File "cmp.db"
            let code, out, err =
                cli [ "compare"; "--tasks"; "rosenbrock,sum-of-squares"; "--task-opt"; "dim=5"; "--optimizers"; "sgd,adam"; "--opt"; "beta1=0.8"
                      "--lrs"; "0.01,0.001"; "--seeds"; "0,1"; "--steps"; "10"; "--db"; db; "--json" ]
            Expect.equal code 0 $"compare; stderr: {err}"
            use doc = JsonDocument.Parse out
            Expect.equal (doc.RootElement.GetProperty("total").GetInt32()) 16 "2 x 2 x 2 x 2"
            use s = store db
            let adam = s.Runs() |> List.find (fun r -> r.Optimizer = "adam" && r.Task = "sum-of-squares")
            Expect.stringContains adam.OptimizerOptions "\"beta1\":\"0.8\"" "--opt goes to the optimizers that have it"
            Expect.stringContains adam.TaskOptions "\"dim\":\"5\"" "--task-opt goes to the tasks that have it"
            let code, _, err = cli [ "compare"; "--tasks"; "rosenbrock"; "--optimizers"; "sgd"; "--opt"; "beta1=0.8"; "--db"; db ]
            Expect.equal code 2 "an option no optimizer has"
            Expect.stringContains err "--opt beta1: none of the optimizers sgd has an option 'beta1'" "message"
            for verb in [ "run"; "compare"; "sweep"; "merge"; "report"; "export" ] do
                let code, out, _ = cli [ verb; "--help" ]
                Expect.equal code 0 $"{verb} --help"
                Expect.stringContains out $"optimizers {verb}" $"{verb} usage"
            let code, out, _ = cli [ "--help" ]
            Expect.equal code 0 "--help"
            for verb in [ "run"; "compare"; "sweep"; "merge"; "report"; "export" ] do
                Expect.stringContains out verb $"top-level help lists {verb}"
    ]
