/// `--jobs N` (issue 20): runs in worker processes, never an abort of the whole sweep. Under GC
/// stress (a tiny gen-0 budget, so the GC and the finalizer run all the time) every run of a
/// small grid with ELU networks (the op whose Scalars were freed under it) finishes, as often as
/// it is tried; a worker that aborts fails its run with the reason, the other runs go on, and the
/// next invocation redoes it.
module Optimizers.Tests.JobsTests

open System
open System.IO
open Expecto
open Microsoft.Data.Sqlite
open Optimizers.Tests.Check

let private writeConfig (dir: string) (name: string) =
    let path = Path.Combine(dir, name + ".json")
    File.WriteAllText(
        path,
        """{"name": "NAME", "source": "issue 20 test",
  "grid": {"tasks": [{"name": "mlp-mnist", "label": "elu", "options": {"activation": "elu", "width": 8} },
                     {"name": "rosenbrock"}],
           "optimizers": [{"name": "adam"}, {"name": "nadam"}],
           "lrs": [0.01], "seeds": [0, 1, 2], "steps": 6, "record_every": 1} }""".Replace("NAME", name))
    path

let private statuses (db: string) =
    use c = new SqliteConnection($"Data Source={db};Pooling=False")
    c.Open()
    use cmd = c.CreateCommand()
    cmd.CommandText <- "SELECT spec, status, error FROM runs ORDER BY run_key"
    use r = cmd.ExecuteReader()
    [ while r.Read() do yield r.GetString 0, r.GetString 1, (if r.IsDBNull 2 then "" else r.GetString 2) ]

[<Tests>]
let tests =
    testSequenced <| testList "jobs" [
        testCase "run --jobs 2 (twice) and --jobs 4 under GC stress: every run done, no abort" <| fun () ->
            let dir = tempDir "jobs"
            let before = Environment.GetEnvironmentVariable "DOTNET_GCgen0size"
            try
                // Inherited by the worker processes: a 64 KB gen-0 budget, a GC every few allocations.
                Environment.SetEnvironmentVariable("DOTNET_GCgen0size", "0x10000")
                let config = writeConfig dir "jobs-gc"
                for i, jobs in [ 1, 2; 2, 2; 3, 4 ] do
                    let db = Path.Combine(dir, $"r{i}.db")
                    let code, _, err = cli [ "run"; config; "--db"; db; "--jobs"; string jobs; "--quiet" ]
                    Expect.equal code 0 $"--jobs {jobs} (try {i}) exit code; stderr: {err}"
                    let runs = statuses db
                    Expect.equal runs.Length 12 "all 12 runs recorded"
                    for spec, status, error in runs do
                        Expect.equal status "done" $"{spec}: {error}"
                // The same numbers as one job in this process.
                let one = Path.Combine(dir, "one.db")
                Environment.SetEnvironmentVariable("DOTNET_GCgen0size", before)
                let code, _, err = cli [ "run"; config; "--db"; one; "--quiet" ]
                Expect.equal code 0 $"--jobs 1: {err}"
                let loss (db: string) =
                    use c = new SqliteConnection($"Data Source={db};Pooling=False")
                    c.Open()
                    use cmd = c.CreateCommand()
                    cmd.CommandText <- "SELECT run_key, final_loss FROM runs ORDER BY run_key"
                    use r = cmd.ExecuteReader()
                    [ while r.Read() do yield r.GetString 0, r.GetDouble 1 ]
                Expect.equal (loss (Path.Combine(dir, "r3.db"))) (loss one) "worker processes give the numbers of one in-process job, bit for bit"
            finally
                Environment.SetEnvironmentVariable("DOTNET_GCgen0size", before)
                SqliteConnection.ClearAllPools()
                Directory.Delete(dir, true)

        testCase "a worker that aborts fails its run with the reason; the others finish; a rerun redoes it" <| fun () ->
            let dir = tempDir "jobs"
            try
                let config = writeConfig dir "jobs-abort"
                let db = Path.Combine(dir, "r.db")
                Environment.SetEnvironmentVariable("OPTIMIZERS_WORKER_ABORT_AT", "jobs-abort:4")
                let code, _, err =
                    try cli [ "run"; config; "--db"; db; "--jobs"; "2"; "--quiet" ]
                    finally Environment.SetEnvironmentVariable("OPTIMIZERS_WORKER_ABORT_AT", null)
                Expect.equal code 1 $"a failed run is exit 1; stderr: {err}"
                let errLines = lines err
                Expect.equal errLines.Length 1 $"one line for the failed run: {err}"
                Expect.stringContains errLines[0] "died (exit 134, SIGABRT)" "says how the worker died"
                let runs = statuses db
                Expect.equal runs.Length 12 "every run recorded"
                let failed = runs |> List.filter (fun (_, s, _) -> s = "failed")
                Expect.equal failed.Length 1 "exactly the aborted run failed"
                Expect.equal (runs |> List.filter (fun (_, s, _) -> s = "done")).Length 11 "the other runs finished"
                let code, _, err = cli [ "run"; config; "--db"; db; "--jobs"; "2"; "--quiet" ]
                Expect.equal code 0 $"the rerun redoes it; stderr: {err}"
                for spec, status, error in statuses db do
                    Expect.equal status "done" $"{spec}: {error}"
            finally
                SqliteConnection.ClearAllPools()
                Directory.Delete(dir, true)
    ]
