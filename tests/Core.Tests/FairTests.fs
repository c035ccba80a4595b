/// The fair measure (issue 16): each seed its own minibatch order, low-noise measures, claims
/// with verdicts from paired differences over seeds, and the results index.
module Optimizers.Tests.FairTests

open System
open System.IO
open System.Text.Json
open Expecto
open TorchSharp
open Optimizers
open Optimizers.Tasks
open Optimizers.Tests.Check
open Optimizers.Experiments

let private write (path: string) (text: string) =
    Directory.CreateDirectory(Path.GetDirectoryName path) |> ignore
    File.WriteAllText(path, text)
    path

/// Sum of squares (no noise): SGD at 0.1 beats SGD at 0.001 on every seed after 20 steps, and
/// "sgd-copy" is the very same runs as "fast" under another label (difference exactly 0).
let private claimsConfig (name: string) (seeds: string) =
    $$"""
{
  "name": "{{name}}",
  "source": "test: claims constructed to hold, to be reversed and to be not significant",
  "grid": {
    "tasks": [ { "name": "sum-of-squares", "label": "squares", "options": { "dim": 10 } } ],
    "optimizers": [
      { "name": "sgd", "label": "fast", "lrs": [0.1] },
      { "name": "sgd", "label": "slow", "lrs": [0.001] },
      { "name": "sgd", "label": "sgd-copy", "lrs": [0.1] }
    ],
    "seeds": {{seeds}},
    "steps": 20,
    "dtype": "float64"
  },
  "measures": ["final_loss", "mean_last:5"],
  "paper": [ { "task": "squares", "optimizer": "fast", "measure": "final_loss", "value": 0.125, "where": "made up for the test" } ],
  "claims": [
    { "text": "fast beats slow", "where": "constructed to hold", "task": "squares", "better": "fast", "worse": "slow", "measure": "final_loss" },
    { "text": "slow beats fast", "where": "constructed to be reversed", "task": "squares", "better": "slow", "worse": "fast", "measure": "mean_last:5" },
    { "text": "a copy beats itself", "where": "constructed to be not significant", "task": "squares", "better": "sgd-copy", "worse": "fast", "measure": "final_loss" }
  ]
}
"""

let private verdicts (claimsJson: string) =
    use doc = JsonDocument.Parse(File.ReadAllText claimsJson)
    [ for c in doc.RootElement.GetProperty("claims").EnumerateArray() -> c.GetProperty("text").GetString(), c.GetProperty("verdict").GetString() ]

let private source (better: float list) (worse: float list) : ClaimSource =
    let seeds = List.init better.Length id
    { Seeds = seeds
      Lrs = fun _ -> [ Some 0.1 ]
      Value = fun _ opt _ seed _ -> Some((if opt = "b" then better else worse)[seed])
      Diverged = fun _ _ _ _ -> false
      AnyFinished = fun _ _ -> true
      BestLr = fun _ _ _ -> Some 0.1
      HigherIsBetter = fun m -> Report.higherIsBetter m }

let private claim (m: Measure) =
    { Text = "b beats w"; Where = ""; Task = "t"; Better = "b"; Worse = "w"; Measure = m; BetterLr = None; WorseLr = None; Sensitivity = false }

[<Tests>]
let tests =
    testSequenced <| testList "fair measure" [

        testCase "the verdict rule: 2 standard errors of the paired difference, oriented by the measure" <| fun () ->
            let v b w m = (Claims.evaluate (source b w) (claim m)).Verdict
            // Differences 0.1 +- a little on every seed: holds; the other way round: reversed.
            Expect.equal (v [ 1.0; 2.0; 3.0; 4.0 ] [ 1.1; 2.12; 3.09; 4.1 ] Measure.FinalLoss) Verdict.Holds "lower loss on every seed"
            Expect.equal (v [ 1.1; 2.12; 3.09; 4.1 ] [ 1.0; 2.0; 3.0; 4.0 ] Measure.FinalLoss) Verdict.Reversed "higher loss on every seed"
            // An accuracy: higher is better, so the same numbers flip.
            Expect.equal (v [ 1.1; 2.12; 3.09; 4.1 ] [ 1.0; 2.0; 3.0; 4.0 ] (Measure.Final "test_top1")) Verdict.Holds "higher accuracy on every seed"
            // Differences +0.3, -0.2, +0.1, -0.25: mean -0.0125, SE about 0.12: not significant.
            let r = Claims.evaluate (source [ 1.0; 2.0; 3.0; 4.0 ] [ 1.3; 1.8; 3.1; 3.75 ]) (claim Measure.FinalLoss)
            Expect.equal r.Verdict Verdict.NotSignificant "mixed signs"
            Expect.equal r.Paired.Holds 2 "holds on 2 of 4 seeds"
            closeTo Tol.high r.Paired.Mean -0.0125 "mean paired difference"
            let d = [ 0.3; -0.2; 0.1; -0.25 ]
            let sd = sqrt ((d |> List.sumBy (fun x -> (x + 0.0125) ** 2.0)) / 3.0)
            closeTo Tol.high r.Paired.Se (sd / 2.0) "standard error of the mean difference"
            // One seed is never enough.
            Expect.equal (v [ 1.0 ] [ 2.0 ] Measure.FinalLoss) Verdict.NotSignificant "one seed"
            // A diverged run (no value) loses to a finished one: NaN stands for divergence here.
            let diverging (better: float list) (worse: float list) =
                { source better worse with
                    Value = fun _ opt _ seed _ -> let x = (if opt = "b" then better else worse)[seed] in if Double.IsNaN x then None else Some x
                    Diverged = fun _ opt _ seed -> Double.IsNaN((if opt = "b" then better else worse)[seed]) }
            let dv b w = Claims.evaluate (diverging b w) (claim Measure.FinalLoss)
            Expect.equal (dv [ nan; nan; nan ] [ 1.0; 2.0; 3.0 ]).Verdict Verdict.Reversed "the claimed better diverged on every seed, the other finished"
            Expect.equal (dv [ nan; nan; nan ] [ 1.0; 2.0; 3.0 ]).BetterDiverged 3 "counted"
            Expect.equal (dv [ 1.0; 2.0; 3.0 ] [ nan; nan; nan ]).Verdict Verdict.Holds "the other diverged on every seed"
            Expect.equal (dv [ 1.0; 2.0; nan ] [ 1.1; 2.1; 3.0 ]).Verdict Verdict.NotSignificant "the paired seeds for the claim, the diverged one against"
            Expect.equal (dv [ 1.0; 2.0; 3.0; 4.0 ] [ 1.1; 2.12; 3.09; nan ]).Verdict Verdict.Holds "paired seeds for the claim and the other diverged"
            Expect.equal (dv [ nan; 2.0 ] [ nan; 2.5 ]).Verdict Verdict.NotSignificant "both diverged on a seed: no pair there, one paired seed is not enough"
            Expect.equal (dv [ nan; 1.0; 1.0 ] [ 1.0; nan; 1.2 ]).Verdict Verdict.NotSignificant "divergence on both sides"
            // A sensitivity claim: per seed, the range over the learning rates; the smaller wins.
            let src =
                { source [ 0.0 ] [ 0.0 ] with
                    Seeds = [ 0; 1; 2 ]
                    Lrs = fun _ -> [ Some 0.1; Some 0.01 ]
                    Value = fun _ opt lr seed _ ->
                        let spread = if opt = "b" then 1.0 else 5.0
                        Some(float seed + (if lr = Some 0.1 then 0.0 else spread + 0.1 * float seed)) }
            let s = Claims.evaluate src { claim (Measure.StepsTo 0.5) with Sensitivity = true }
            Expect.equal s.Verdict Verdict.Holds "b's range over learning rates is smaller on every seed"
            for (_, got), want in List.zip s.Better.Values [ 1.0; 1.1; 1.2 ] do
                closeTo Tol.high got want "b's per-seed ranges"

        testCase "each seed draws its own minibatch order unless the config pins data_seed" <| fun () ->
            let config (pin: string) =
                Config.parse "test" $$"""
{ "name": "order", "source": "test",
  "grid": { "tasks": [ { "name": "lstm-sine", "options": { "batch_size": 8, "hidden": 4 {{pin}} } } ],
            "optimizers": [ { "name": "sgd" } ], "lrs": [0.1], "seeds": [0, 1], "steps": 2 } }"""
            let firstBatchLoss (r: RunSpec) =
                let task = Registry.createTask r.Task r.TaskOptions
                // The same parameters for both runs: only the minibatch differs.
                let p = task.Init { TaskInit.Default with Seed = 0; Dtype = torch.float64 }
                use l = task.Loss 0 p
                let v = l.ToDouble()
                Tree.dispose p
                v
            match Config.expand (config "") false with
            | [ a; b ] ->
                Expect.contains a.TaskOptions ("data_seed", "0") "seed 0's data seed"
                Expect.contains b.TaskOptions ("data_seed", "1") "seed 1's data seed"
                Expect.notEqual (firstBatchLoss a) (firstBatchLoss b) "two seeds, two different first minibatches"
                // The evaluation sets are fixed: the same parameters score the same on both.
                let trainLoss (r: RunSpec) =
                    let m = TaskMetrics.forTask r.Task |> List.find (fun m -> m.Name = "train_loss")
                    let task = Registry.createTask r.Task r.TaskOptions
                    let p = task.Init { TaskInit.Default with Seed = 0; Dtype = torch.float32 }
                    let v = m.Compute r.TaskOptions p
                    Tree.dispose p
                    v
                Expect.equal (trainLoss a) (trainLoss b) "one fixed evaluation set for every seed"
            | rs -> failtest $"expected 2 runs, got {rs.Length}"
            match Config.expand (config ", \"data_seed\": 7") false with
            | [ a; b ] ->
                Expect.contains a.TaskOptions ("data_seed", "7") "pinned"
                Expect.contains b.TaskOptions ("data_seed", "7") "pinned"
                Expect.equal (firstBatchLoss a) (firstBatchLoss b) "a pinned data_seed: the same minibatches for every seed"
            | rs -> failtest $"expected 2 runs, got {rs.Length}"
            // Tasks without minibatches keep their options (and run keys).
            let c = Config.parse "test" """{ "name": "n", "source": "t", "grid": { "tasks": [ { "name": "rosenbrock" } ], "optimizers": [ { "name": "sgd" } ], "seeds": [3], "steps": 2 } }"""
            Expect.isEmpty (Config.expand c false).Head.TaskOptions "no data_seed where there are no minibatches"

        testCase "a Lookahead run is measured at its slow weights, whatever step it stops at" <| fun () ->
            // k = 5: steps 5, 6 and 9 share the slow weights of the synchronisation at step 5, so
            // their final distance is the same; plain SGD moves on (lecture-lookahead's Ranger, k = 6,
            // was judged 4 fast steps after its last synchronisation before this).
            let config (steps: int) =
                Config.parse "test" $$"""
{ "name": "la", "source": "test",
  "grid": { "tasks": [ { "name": "sum-of-squares", "options": { "dim": 3 } } ],
            "optimizers": [ { "name": "lookahead", "options": { "inner": "sgd", "k": 5 } }, { "name": "sgd" } ],
            "lrs": [0.1], "seeds": [0], "steps": {{steps}} },
  "measures": ["final:distance"] }"""
            let distances steps =
                Config.expand (config steps) false
                |> List.map (fun r ->
                    let o = Runner.execute r None ignore
                    Expect.equal o.Status "done" $"{r.OptimizerLabel} ran"
                    r.OptimizerLabel, o.Measures |> List.pick (fun (n, v) -> if n = "final:distance" then v else None))
                |> Map.ofList
            let d5, d6, d9, d10 = distances 5, distances 6, distances 9, distances 10
            Expect.equal d6["lookahead"] d5["lookahead"] "lookahead at step 6 = at its synchronisation at 5"
            Expect.equal d9["lookahead"] d5["lookahead"] "and at step 9"
            Expect.isLessThan d6["sgd"] d5["sgd"] "sgd keeps descending"
            Expect.isLessThan d10["lookahead"] d9["lookahead"] "the next synchronisation moves the slow weights"

        testCase "evaluate runs each seed on its own data order, the same for every optimizer, and scores the fixed sets" <| fun () ->
            let options = [ "batch_size", "8"; "hidden", "4" ]
            let rows = Evaluation.run (Registry.createSeededTask "lstm-sine" options) [ "sgd:lr=0.1"; "adam:lr=0.01" ] 3 [ 0; 1 ] Optimizers.Data.Split.Train torch.float64 None
            // The same run by hand, on the task with data_seed = seed.
            let byHand (optimizer: Transformation) (seed: int) =
                let task = Registry.createTask "lstm-sine" (options @ [ "data_seed", string seed ])
                let start = task.Init { TaskInit.Default with Seed = seed; Dtype = torch.float64 }
                let mutable last = nan
                let p, st = Run.optimize task optimizer start 3 (fun _ l _ -> last <- l)
                let train = (Task.evaluate task Optimizers.Data.Split.Train p).Loss
                Tree.dispose p; State.dispose st; Tree.dispose start
                last, train
            for row, optimizer in List.zip rows [ Registry.createOptimizer "sgd" [ "lr", "0.1" ]; Registry.createOptimizer "adam" [ "lr", "0.01" ] ] do
                Expect.equal (row.Runs |> List.map (fun r -> r.Seed)) [ 0; 1 ] "both seeds"
                for r in row.Runs do
                    let last, train = byHand optimizer r.Seed
                    closeTo Tol.high r.Final last $"{row.Optimizer} seed {r.Seed}: the last minibatch of data_seed {r.Seed}"
                    closeTo Tol.high r.SplitLoss.Value train $"{row.Optimizer} seed {r.Seed}: the training split after the last step"
            // A pinned data_seed is kept: both seeds then see seed 0's minibatches.
            let pinned = Evaluation.run (Registry.createSeededTask "lstm-sine" (options @ [ "data_seed", "0" ])) [ "sgd:lr=0.1" ] 3 [ 1 ] Optimizers.Data.Split.Train torch.float64 None
            let unpinned = rows.Head.Runs |> List.find (fun r -> r.Seed = 1)
            Expect.notEqual pinned.Head.Runs.Head.Final unpinned.Final "seed 1 with data_seed pinned to 0 sees other minibatches"
            // evaluate --validation: meta-train's validation optimizees, scored on the validation split.
            let code, out, err = cli [ "evaluate"; "--task"; "lstm-sine"; "--task-opt"; "batch_size=8"; "--task-opt"; "hidden=4"; "--optimizer"; "sgd:lr=0.1"; "--steps"; "3"; "--seeds"; "2"; "--validation"; "--dtype"; "float64"; "--format"; "runs" ]
            Expect.equal code 0 $"evaluate --validation ({err})"
            let lines = out.Split('\n', StringSplitOptions.RemoveEmptyEntries) |> Array.map (fun l -> l.Trim())
            Expect.equal lines[0] "optimizer,seed,final_loss,mean_loss,validation_loss" "the split's loss is named"
            Expect.equal [ for l in lines[1..] -> l.Split(',')[1] ] [ "-1001"; "-1002" ] "meta-train's validation seeds"
            let sgd = Registry.createOptimizer "sgd" [ "lr", "0.1" ]
            let vs = float (lines[1].Split(',')[4])
            let expected = Optimizers.Meta.MetaTrain.validationLoss (Registry.createSeededTask "lstm-sine" options -1001) sgd torch.float64 -1001 3
            closeTo Tol.medium vs expected "the loss meta-train's validation reads"

        testCase "meta-training draws each episode's and each validation seed's data order from its own seed" <| fun () ->
            let seen = Collections.Concurrent.ConcurrentBag<int>()
            let task (seed: int) =
                seen.Add seed
                Registry.createTask "lstm-sine" [ "batch_size", "4"; "hidden", "3"; "data_seed", string seed ]
            let s =
                { Kind = Optimizers.Learned.HyperAdam.kind; KindOptions = [ "j", "2"; "hidden", "3" ]; Task = task; InitTheta = None
                  Horizon = 4; Window = 2; Episodes = 3; MetaLr = 1e-3; MetaLrFinal = 1e-3
                  RandomScaling = None; ConvexTerm = None; ResetRange = None; Objective = Optimizers.Meta.MetaObjective.MeanLoss
                  ValidateEvery = 3; ValidationSeeds = [ -1001; -1002 ]; ValidationSplit = Optimizers.Data.Split.Validation; CheckpointDir = None; CheckpointEvery = 100
                  Seed = 2; Dtype = torch.float32 } : Optimizers.Meta.MetaSettings
            let r = Optimizers.Meta.MetaTrain.train s ignore
            let seeds = Set.ofSeq seen
            Expect.isTrue (Set.isSubset (Set.ofList [ -1001; -1002 ]) seeds) $"validation seeds: {seeds}"
            Expect.isGreaterThanOrEqual (seeds.Count - 2) 3 $"three episodes, three data orders: {seeds}"
            // Validation on a data-driven task is the loss on the validation split after the horizon.
            let v = snd r.Validations.Head
            let opt = s.Kind.Create (Optimizers.Learned.LearnedOptimizer.values s.Kind s.KindOptions) r.Last.Theta
            let expected = [ -1001; -1002 ] |> List.averageBy (fun vs -> Optimizers.Meta.MetaTrain.validationLoss (task vs) opt s.Dtype vs s.Horizon)
            closeTo Tol.medium v expected "the mean validation-split loss after the horizon"
            // --validation-split train selects on the training split's loss instead (what Table 1's claims read)
            let onTrain = Optimizers.Meta.MetaTrain.meanValidationLoss { s with ValidationSplit = Optimizers.Data.Split.Train } opt
            let expectedTrain = [ -1001; -1002 ] |> List.averageBy (fun vs -> Optimizers.Meta.MetaTrain.validationLossOn Optimizers.Data.Split.Train (task vs) opt s.Dtype vs s.Horizon)
            closeTo Tol.medium onTrain expectedTrain "the mean training-split loss after the horizon"
            Expect.notEqual onTrain (Optimizers.Meta.MetaTrain.meanValidationLoss s opt) "another split, another number"

        testCase "mean_last:K is the mean loss of the last K steps; train_loss only at the last step" <| fun () ->
            use dir = new TempDir("fair")
            let config =
                write (dir.File "ml.json") """
{ "name": "ml", "source": "test",
  "grid": { "tasks": [ { "name": "lstm-sine", "options": { "batch_size": 8, "hidden": 4 } } ],
            "optimizers": [ { "name": "adam" } ], "lrs": [0.01], "seeds": [0, 1], "steps": 12, "record_every": 1 },
  "measures": ["final_loss", "mean_last:4", "final:train_loss"] }"""
            let db = dir.File "ml.db"
            let code, _, err = cli [ "run"; config; "--db"; db; "--quiet" ]
            Expect.equal code 0 $"run; stderr: {err}"
            use store = new ResultsStore(db)
            let runs = store.Runs()
            Expect.equal runs.Length 2 "two runs"
            let measures = store.Measures(runs |> List.map (fun r -> r.Key))
            for r in runs do
                let losses = store.Metric([ r.Key ], "loss")[r.Key] |> List.ofArray |> List.sortBy fst |> List.map snd
                Expect.equal losses.Length 13 "the loss at steps 0..12"
                let expected = losses |> List.skip 9 |> List.average
                closeTo Tol.high (measures[r.Key]["mean_last:4"]).Value expected "mean of the losses at steps 9..12"
                let train = store.Metric([ r.Key ], "train_loss")[r.Key] |> List.ofArray
                Expect.equal (train |> List.map fst) [ 12 ] "the evaluation set is scored at the last step only"
                closeTo Tol.high (measures[r.Key]["final:train_loss"]).Value (snd train.Head) "final:train_loss"
            Expect.notEqual runs[0].TaskOptions runs[1].TaskOptions "each seed its own data_seed in the run's options"

        testCase "claims get verdicts in the report; report --all writes the index" <| fun () ->
            use dir = new TempDir("fair")
            let configs = dir.File "configs"
            let results = dir.File "results"
            let dbs = dir.File "dbs"
            let ran = write (Path.Combine(configs, "ran.json")) (claimsConfig "ran" "[0, 1, 2, 3]")
            write (Path.Combine(configs, "later.json")) ((claimsConfig "later" "[0, 1]").Replace("fast beats slow", "not run: fast beats slow")) |> ignore
            write (Path.Combine(configs, "plain.json")) """{ "name": "plain", "source": "t", "grid": { "tasks": [ { "name": "rosenbrock" } ], "optimizers": [ { "name": "sgd" } ], "seeds": [0], "steps": 2 } }""" |> ignore
            let code, _, err = cli [ "run"; ran; "--db"; Path.Combine(dbs, "ran.db"); "--quiet" ]
            Expect.equal code 0 $"run; stderr: {err}"
            let code, out, err = cli [ "report"; "--all"; "--configs"; configs; "--out"; results; "--db-dir"; dbs ]
            Expect.equal code 0 $"report --all; stderr: {err}"
            Expect.stringContains out (Path.Combine(results, "README.md")) "prints the index it wrote"
            let report = Path.Combine(results, "ran")
            Expect.equal (verdicts (Path.Combine(report, "claims.json")))
                [ "fast beats slow", "holds"; "slow beats fast", "reversed"; "a copy beats itself", "not significant" ] "the three verdicts"
            let md = File.ReadAllText(Path.Combine(report, "report.md"))
            Expect.stringContains md "holds on 4 of 4 seeds" "paired difference with the number of seeds"
            Expect.stringContains md "**reversed**" "verdict in the report"
            let csv = lines (File.ReadAllText(Path.Combine(report, "per-seed.csv")))
            Expect.equal csv[0] "task,optimizer,lr,seed,data_seed,status,final_loss,mean_last:5" "per-seed CSV header"
            Expect.equal csv.Length 13 "header and 3 optimizers x 4 seeds"
            Expect.isFalse (Directory.Exists(Path.Combine(results, "later"))) "no database: no report"
            let index = File.ReadAllText(Path.Combine(results, "README.md"))
            let row (text: string) = lines index |> Array.find (fun l -> l.StartsWith "| ran |" && l.Contains $"| {text} |")
            Expect.stringContains (row "fast beats slow") "**holds**" "ran: holds"
            Expect.stringContains (row "fast beats slow") "[report](ran/report.md)" "linked"
            Expect.stringContains (row "fast beats slow") "fast 0.125 (final_loss)" "the paper's number, labelled"
            Expect.stringContains (row "slow beats fast") "**reversed**" "ran: reversed"
            Expect.stringContains (row "a copy beats itself") "**not significant**" "ran: not significant"
            let later = lines index |> Array.find (fun l -> l.StartsWith "| later | not run: fast beats slow |")
            Expect.stringContains later "**not run yet**" "no results: not run yet, no verdict"
            Expect.stringContains index "| plain | not run yet |" "configs without claims listed"
            // Rerun: the same index.
            let code, _, _ = cli [ "report"; "--all"; "--configs"; configs; "--out"; results; "--db-dir"; dbs; "--quiet" ]
            Expect.equal code 0 "report --all again"
            Expect.equal (File.ReadAllText(Path.Combine(results, "README.md"))) index "the index is a function of the configs and the results"

        testCase "the committed index docs/results/README.md is what report --all makes of the committed results" <| fun () ->
            let root = repoRoot ()
            let configs, results = Path.Combine(root, "paper-configs"), Path.Combine(root, "docs", "results")
            let committed = File.ReadAllText(Path.Combine(results, "README.md"))
            Expect.equal (ResultsIndex.markdown configs results) committed "rerun `optimizers report --all` (or dotnet fsi build.fsx results) after changing claims or results"
            Expect.isFalse (committed.Contains "stale:") "every committed report's claims match its config's"

        testCase "malformed claims exit with 2 and name the field" <| fun () ->
            use dir = new TempDir("fair")
            let bad (claim: string) (part: string) =
                let json = (claimsConfig "bad" "[0, 1]").Replace("""{ "text": "fast beats slow", "where": "constructed to hold", "task": "squares", "better": "fast", "worse": "slow", "measure": "final_loss" }""", claim)
                let config = write (dir.File $"bad-{Guid.NewGuid():N}.json") json
                let code, _, err = cli [ "run"; config; "--db"; dir.File "bad.db"; "--quiet" ]
                Expect.equal code 2 $"exit code for {claim}; stderr: {err}"
                Expect.stringContains err part "the message names the field"
            bad """{ "text": "x", "task": "squares", "better": "fast", "worse": "nope", "measure": "final_loss" }""" "claims[0].worse: unknown optimizer label 'nope'"
            bad """{ "text": "x", "task": "squares", "better": "fast", "worse": "slow", "measure": "min_loss" }""" "claims[0].measure: 'min_loss' is not among the config's measures"
            bad """{ "text": "x", "task": "squares", "better": "fast", "worse": "slow", "measure": "final_loss", "lr": 0.5 }""" "claims[0].lr: learning rate 0.5 is not in the grid for 'fast'"
            bad """{ "text": "x", "task": "squares", "better": "fast", "worse": "slow", "measure": "final_loss", "sensitivity": true }""" "claims[0].sensitivity: 'fast' runs at one learning rate only"
            bad """{ "task": "squares", "better": "fast", "worse": "slow", "measure": "final_loss" }""" "claims[0].text: missing field"
    ]
