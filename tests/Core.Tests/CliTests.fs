/// The experiment host's command line (src/Experiments/Cli.fs), run in-process: output contracts
/// and exit codes of trace and list, and of the schedule options and the lr-range-test verb. The
/// verbs of the experiment host (run, sweep, merge, report) are in HostTests.fs; generated bad
/// input to every verb in BadInputTests.fs.
module Optimizers.Tests.CliTests

open System
open System.IO
open System.Text.Json
open Expecto
open Optimizers.Tests.Check

[<Tests>]
let tests =
    testList "cli" [
        testCase "trace prints step,loss,p0,p1 with step 0 the start" <| fun () ->
            let code, out, _ = cli [ "trace"; "--task"; "rosenbrock"; "--start"; "-1.5,2"; "--optimizer"; "adam"; "--lr"; "0.01"; "--steps"; "3" ]
            Expect.equal code 0 "exit code"
            let rows = lines out
            Expect.equal rows[0] "step,loss,p0,p1" "header"
            Expect.equal rows.Length 5 "header, start and 3 steps"
            Expect.equal rows[1] "0,12.5,-1.5,2" "the start, with its loss (1 + 2.5)^2 + 100 (2 - 2.25)^2 = 12.5"

        testCase "negative coordinates work spaced or with =" <| fun () ->
            let _, a, _ = cli [ "trace"; "--task"; "rosenbrock"; "--start"; "-1.5,-2"; "--optimizer"; "sgd"; "--steps"; "1" ]
            let _, b, _ = cli [ "trace"; "--task"; "rosenbrock"; "--start=-1.5,-2"; "--optimizer"; "sgd"; "--steps"; "1" ]
            Expect.equal (lines a).[1] "0,1812.5,-1.5,-2" "start"
            Expect.equal a b "same output"

        testCase "sum-of-squares draws its start from the seed, deterministically" <| fun () ->
            let run seed = cli [ "trace"; "--task"; "sum-of-squares"; "--dim"; "3"; "--seed"; string seed; "--optimizer"; "sgd"; "--steps"; "2"; "--dtype"; "float64" ]
            let _, a, _ = run 7
            let _, b, _ = run 7
            let _, c, _ = run 8
            Expect.equal a b "same seed, same trace"
            Expect.notEqual a c "another seed, another start"
            Expect.equal (lines a).[0] "step,loss,p0,p1,p2" "header"
            let row = (lines a).[1]
            let start = row.Split(',') |> Array.skip 2 |> Array.map float
            Expect.all start (fun x -> x >= -10.0 && x < 10.0) "start in U(-10, 10)"

        testCase "json output is one object with the trajectory" <| fun () ->
            let code, out, _ = cli [ "trace"; "--task"; "rosenbrock"; "--start"; "0,0"; "--optimizer"; "nesterov"; "--steps"; "2"; "--format"; "json"; "--dtype"; "float64" ]
            Expect.equal code 0 "exit code"
            use doc = JsonDocument.Parse out
            let traj = doc.RootElement.GetProperty("trajectory")
            Expect.equal (traj.GetArrayLength()) 3 "start and 2 steps"
            Expect.equal (traj[0].GetProperty("loss").GetDouble()) 1.0 "loss at the origin"
            Expect.equal (doc.RootElement.GetProperty("optimizer").GetString()) "nesterov" "optimizer"

        testCase "float32 and float64 differ only by rounding" <| fun () ->
            let run dtype = cli [ "trace"; "--task"; "rosenbrock"; "--start"; "-1.5,2"; "--optimizer"; "adam"; "--lr"; "0.01"; "--steps"; "20"; "--dtype"; dtype ]
            let _, a, _ = run "float32"
            let _, b, _ = run "float64"
            let last (s: string) = let row = lines s |> Array.last in row.Split(',') |> Array.map float
            closeAll { Abs = 1e-4; Rel = 1e-4 } (last a) (last b) "last row"

        testCase "bad input exits with 2 and one line listing what is valid" <| fun () ->
            let t = [ "trace"; "--task"; "rosenbrock" ]
            expectBadInput (t @ [ "--optimizer"; "adamz" ]) "unknown optimizer 'adamz'; valid: sgd, momentum, nesterov, adam"
            expectBadInput (t @ [ "--optimizer"; "adam"; "--opt"; "betas=1" ]) "unknown option 'betas'; valid options: lr, beta1"
            expectBadInput (t @ [ "--optimizer"; "adam"; "--opt"; "beta1" ]) "not of the form name=value"
            expectBadInput (t @ [ "--optimizer"; "adam"; "--opt"; "beta2=1.5" ]) "beta2 = 1.5 is invalid; it must be in [0, 1)"
            expectBadInput (t @ [ "--optimizer"; "sgd"; "--lr"; "-1" ]) "lr = -1 is invalid"
            expectBadInput (t @ [ "--optimizer"; "sgd"; "--dtype"; "int8" ]) "unknown dtype 'int8'; valid: float32, float64"
            expectBadInput (t @ [ "--optimizer"; "sgd"; "--format"; "xml" ]) "unknown format 'xml'; valid: csv, json"
            expectBadInput (t @ [ "--optimizer"; "sgd"; "--start"; "1,2,3" ]) "the start has 3 coordinates, the task has 2"
            expectBadInput (t @ [ "--optimizer"; "sgd"; "--start"; "1,x" ]) "start = '1,x' is not a list of numbers"
            expectBadInput [ "trace"; "--task"; "rosen"; "--optimizer"; "sgd" ] "unknown task 'rosen'; valid: rosenbrock, sum-of-squares"
            expectBadInput [ "trace"; "--task"; "sum-of-squares"; "--dim"; "0"; "--optimizer"; "sgd" ] "dim = 0 is invalid"

        testCase "argument errors exit with 2" <| fun () ->
            let code, _, err = cli [ "trace"; "--optimizer"; "adam" ]
            Expect.equal code 2 "missing --task"
            Expect.stringContains err "--task" "names the missing argument"
            let code, _, _ = cli [ "frobnicate" ]
            Expect.equal code 2 "unknown verb"

        testCase "a diverging trace exits with 1 after the rows it computed" <| fun () ->
            let code, out, err = cli [ "trace"; "--task"; "rosenbrock"; "--start"; "-1.5,2"; "--optimizer"; "sgd"; "--lr"; "1"; "--steps"; "50"; "--dtype"; "float64" ]
            Expect.equal code 1 "exit code"
            Expect.stringContains err "diverged at step" "the message"
            Expect.isGreaterThan (lines out).Length 2 "rows before the divergence"

        testCase "help and list exit with 0" <| fun () ->
            let code, out, _ = cli [ "--help" ]
            Expect.equal code 0 "--help"
            Expect.stringContains out "trace" "help lists trace"
            let code, out, _ = cli [ "list" ]
            Expect.equal code 0 "list"
            for name in [ "sgd"; "momentum"; "nesterov"; "adam"; "rosenbrock"; "sum-of-squares"; "beta1" ] do
                Expect.stringContains out name "list names it"

        testCase "trace --schedule applies the schedule to lr and prints it" <| fun () ->
            let code, out, err = cli (words "trace --task sum-of-squares --dim 1 --start 1 --optimizer sgd --lr 0.25 --steps 4 --dtype float64 --schedule step --sched-opt step_size=2 --sched-opt gamma=0.5")
            Expect.equal code 0 err
            let rows = out.Trim().Split('\n') |> Array.map (fun l -> l.Trim().Split ',')
            Expect.equal rows[0] [| "step"; "loss"; "p0"; "lr" |] "header"
            // lr 0.25, 0.25, 0.125, 0.125: x <- (1 - 2 lr) x: 1, 0.5, 0.25, 0.1875, 0.140625
            let xs = rows[1..] |> Array.map (fun r -> float r[2])
            let lrs = rows[1..] |> Array.map (fun r -> float r[3])
            closeRel 1e-15 xs [| 1.0; 0.5; 0.25; 0.1875; 0.140625 |] "trajectory"
            closeRel 0.0 lrs [| 0.25; 0.25; 0.125; 0.125; 0.0625 |] "lr column"

        testCase "trace --schedule in JSON, on a wrapper, with the run's length as default" <| fun () ->
            let code, out, err = cli (words "trace --task rosenbrock --start=-1.5,2 --optimizer lookahead --opt inner=sgd --opt momentum=0.9 --lr 1e-3 --steps 10 --schedule cosine --format json")
            Expect.equal code 0 err
            use doc = JsonDocument.Parse out
            let root = doc.RootElement
            Expect.equal (root.GetProperty("schedule").GetString()) "cosine" "schedule recorded"
            let rows = root.GetProperty("trajectory").EnumerateArray() |> Seq.toArray
            Expect.equal rows.Length 11 "start and 10 steps"
            closeTo Tol.tight (rows[0].GetProperty("lr").GetDouble()) 1e-3 "lr at 0"
            closeTo Tol.tight (rows[10].GetProperty("lr").GetDouble()) 0.0 "lr at t_max = steps"

        testCase "bad schedule input exits with 2 and says why" <| fun () ->
            let cases =
                [ "trace --task rosenbrock --optimizer sgd --schedule nope", "unknown schedule 'nope'"
                  "trace --task rosenbrock --optimizer sgd --schedule step", "step_size is required"
                  "trace --task rosenbrock --optimizer sgd --schedule step --sched-opt step_size=0", "step_size = 0"
                  "trace --task rosenbrock --optimizer sgd --sched-opt gamma=0.5", "without a schedule"
                  "trace --task rosenbrock --optimizer sgd --schedule cosine --sched-opt tmax=3", "unknown option 'tmax'"
                  "trace --task rosenbrock --optimizer lookahead --opt inner=adam --opt momentum=0.9", "unknown option 'momentum'" ]
            for args, message in cases do
                let code, _, err = cli (words args)
                Expect.equal code 2 $"exit code of: {args}"
                Expect.stringContains err message $"error of: {args}"

        testCase "lr-range-test prints the sweep and the suggestion (CSV and JSON)" <| fun () ->
            let code, out, err = cli (words "lr-range-test --task sum-of-squares --dim 10 --optimizer sgd --min-lr 1e-4 --max-lr 10 --steps 60")
            Expect.equal code 0 err
            let lines = out.Trim().Split('\n') |> Array.map (fun l -> l.Trim())
            Expect.equal lines[0] "step,lr,loss,smoothed_loss" "header"
            Expect.isTrue (lines |> Array.exists (fun l -> l.StartsWith "# suggested_lr: ")) "a suggestion line"
            Expect.isTrue (lines |> Array.exists (fun l -> l.StartsWith "# stop: ")) "a stop line"
            let code, out, err = cli (words "lr-range-test --task sum-of-squares --dim 10 --optimizer momentum --min-lr 1e-4 --max-lr 10 --steps 60 --format json")
            Expect.equal code 0 err
            use doc = JsonDocument.Parse out
            let root = doc.RootElement
            Expect.isGreaterThan (root.GetProperty("points").GetArrayLength()) 10 "points"
            let lr = root.GetProperty("suggested_lr").GetDouble()
            Expect.isTrue (lr > 1e-4 && lr < 10.0) $"suggested lr {lr} inside the sweep"

        testCase "lr-range-test --plot writes a PNG" <| fun () ->
            let path = Path.Combine(Path.GetTempPath(), $"lr-range-{Guid.NewGuid()}.png")
            try
                let code, _, err = cli (words $"lr-range-test --task sum-of-squares --dim 5 --optimizer sgd --min-lr 1e-3 --max-lr 10 --steps 40 --plot {path}")
                Expect.equal code 0 err
                let bytes = File.ReadAllBytes path
                Expect.equal bytes[0..3] [| 0x89uy; byte 'P'; byte 'N'; byte 'G' |] "PNG signature"
            finally File.Delete path

        testCase "bad lr-range-test input exits with 2" <| fun () ->
            let cases =
                [ "lr-range-test --task sum-of-squares --optimizer sgd --opt lr=0.1", "sweeps the learning rate"
                  "lr-range-test --task sum-of-squares --optimizer sgd --min-lr 1 --max-lr 0.1", "max_lr"
                  "lr-range-test --task sum-of-squares --optimizer sgd --format xml", "unknown format"
                  "lr-range-test --task sum-of-squares --optimizer nope", "unknown optimizer"
                  "lr-range-test --optimizer sgd", "task" ]
            for args, message in cases do
                let code, _, err = cli (words args)
                Expect.equal code 2 $"exit code of: {args}"
                Expect.stringContains err message $"error of: {args}"

        testCase "list shows the schedules and lookahead" <| fun () ->
            let code, out, _ = cli (words "list")
            Expect.equal code 0 "exit code"
            for s in [ "Learning-rate schedules"; "one-cycle"; "sgdr"; "warmup-cosine"; "lookahead" ] do
                Expect.stringContains out s $"lists {s}"
    ]
