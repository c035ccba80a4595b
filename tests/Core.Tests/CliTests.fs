/// The experiment host's command line, run in-process: output contracts and exit codes.
module Optimizers.Tests.CliTests

open System
open System.IO
open System.Text.Json
open Expecto
open Optimizers.Tests.Check


/// Bad input: exit code 2 and a one-line message containing `part`.
let expectBadInput (args: string list) (part: string) =
    let code, _, err = cli args
    Expect.equal code 2 $"exit code for {args}"
    Expect.stringContains err part "the message"
    Expect.equal (lines err).Length 1 $"one line: {err}"

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
            Array.iter2 (fun x y -> Expect.floatClose { absolute = 1e-4; relative = 1e-4 } x y "last row") (last a) (last b)

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
    ]
