/// Every config in paper-configs/ parses and validates, so that a broken config fails CI (issue 8).
/// Nothing runs: Config.load builds every task and optimizer of the grid once and checks every
/// field, the paper values and the quick section.
module Optimizers.Tests.PaperConfigTests

open System
open System.IO
open System.Text.Json
open Expecto
open Optimizers
open Optimizers.Data
open Optimizers.Experiments
open Optimizers.Tests.Check

let private configFiles () =
    Directory.GetFiles(Path.Combine(repoRoot (), "paper-configs"), "*.json", SearchOption.AllDirectories) |> Array.sort |> List.ofArray

/// A small CIFAR-10 binary set (160 training and 10 test records: a minibatch of 128 must fit)
/// standing in for the real files, so that configs whose data is not on this machine still
/// validate everything else.
let private writeCifar (dir: string) =
    Directory.CreateDirectory dir |> ignore
    let rng = Random 3
    for name, n in [ "data_batch_1.bin", 160; "test_batch.bin", 10 ] do
        let labels = Array.init n (fun i -> byte (i % 10))
        let pixels = Array.init (n * 3072) (fun _ -> byte (rng.Next 256))
        CifarBinary.write (Path.Combine(dir, name)) labels pixels

/// The config's text, with every CIFAR data_dir that does not exist here pointed at `fake`.
let private withFakeCifar (file: string) (fake: string) : string * bool =
    let text = File.ReadAllText file
    use doc = JsonDocument.Parse(text, JsonDocumentOptions(CommentHandling = JsonCommentHandling.Skip, AllowTrailingCommas = true))
    let missing =
        [ for t in doc.RootElement.GetProperty("grid").GetProperty("tasks").EnumerateArray() do
            match t.TryGetProperty "options" with
            | true, o ->
                match o.TryGetProperty "data_dir" with
                | true, d when t.GetProperty("name").GetString().StartsWith "conv-cifar" && not (Directory.Exists(d.GetString())) -> yield d.GetString()
                | _ -> ()
            | _ -> () ]
    let replaced = missing |> List.distinct |> List.fold (fun (s: string) d -> s.Replace(JsonSerializer.Serialize d, JsonSerializer.Serialize fake)) text
    replaced, not missing.IsEmpty

[<Tests>]
let tests =
    testSequenced <| testList "paper-configs" [

        testCase "every config in paper-configs/ parses and validates (no run)" <| fun () ->
            let files = configFiles ()
            Expect.isGreaterThanOrEqual files.Length 10 "the paper configs are there"
            let fake = Path.Combine(Path.GetTempPath(), "optimizers-paper-configs-" + Guid.NewGuid().ToString("N").Substring(0, 12))
            try
                writeCifar fake
                let names =
                    [ for f in files ->
                        let text, faked = withFakeCifar f fake
                        let c =
                            try Config.parse f text
                            with e -> failtestf "%s does not validate: %s" (Path.GetFileName f) e.Message
                        Expect.isNonEmpty (c.Source.Trim()) $"{f}: names its source"
                        Expect.isTrue c.Quick.IsSome $"{f}: has a quick variant"
                        Expect.isNonEmpty (Config.expand c true) $"{f}: the quick variant has runs"
                        if faked then Expect.stringContains c.Description "REQUIRES" $"{f}: says that it needs data files"
                        c.Name ]
                Expect.equal (List.distinct names) names "every config has its own name (and so its own database)"
            finally
                try Directory.Delete(fake, true) with _ -> ()

        testCase "the reproduced tables carry the published numbers as paper values" <| fun () ->
            let root = Path.Combine(repoRoot (), "paper-configs")
            for file, count in [ "hyperadam-table1.json", 16; "hyperadam-table2.json", 12; "hyperadam-table3.json", 24 ] do
                let c = Config.load (Path.Combine(root, file))
                Expect.equal c.Paper.Length count $"{file}: every cell of the table"
                for p in c.Paper do Expect.isNonEmpty p.Where $"{file}: each value says where it is printed"
            let t1 = Config.load (Path.Combine(root, "hyperadam-table1.json"))
            let adam = t1.Paper |> List.filter (fun p -> p.Optimizer = "adam") |> List.map (fun p -> p.Task, p.Lr, p.Value)
            Expect.equal adam
                [ "sigmoid", Some 0.03125, 0.35; "relu", Some 0.0220971, 0.32; "elu", Some 0.0220971, 0.31; "tanh", Some 0.0110485, 0.34 ]
                "Table 1's Adam column, each at the paper's tuned rate"

        testCase "a learned optimizer whose shipped model is missing validates, is skipped with a line, and is reported as not run" <| fun () ->
            match Registry.learnedKinds |> List.tryFind (fun k -> (Optimizers.Learned.LearnedOptimizer.shipped k.Kind).IsNone) with
            | None -> skiptest "every learned kind has a shipped model here"
            | Some k ->
                let dir = Path.Combine(Path.GetTempPath(), "optimizers-missing-model-" + Guid.NewGuid().ToString("N").Substring(0, 12))
                Directory.CreateDirectory dir |> ignore
                try
                    let json =
                        $$"""{ "name": "missing-model", "source": "test",
                               "grid": { "tasks": [ { "name": "rosenbrock" } ],
                                         "optimizers": [ { "name": "adam", "lrs": [0.01] }, { "name": "{{k.Kind}}" } ],
                                         "seeds": [0, 1], "steps": 5 } }"""
                    let file = Path.Combine(dir, "c.json")
                    File.WriteAllText(file, json)
                    Expect.isSome (Config.missingModel k.Kind []) "the model is missing"
                    Expect.isNone (Config.missingModel k.Kind [ "init_seed", "0" ]) "an untrained one needs no file"
                    let db = Path.Combine(dir, "r.db")
                    use out = new StringWriter()
                    use err = new StringWriter()
                    let code = Cli.run [| "run"; file; "--db"; db |] out err
                    Expect.equal code 0 $"skipping is not failing; stderr: {err}"
                    Expect.stringContains (err.ToString()) $"skipping {k.Kind} (2 runs): no trained {k.Kind} is shipped here" "one line says so"
                    Expect.stringContains (out.ToString()) "2 not run (no trained model)" "the summary counts them"
                    use out2 = new StringWriter()
                    let code = Cli.run [| "report"; file; "--db"; db; "--out"; Path.Combine(dir, "report") |] out2 err
                    Expect.equal code 0 "report"
                    let md = File.ReadAllText(Path.Combine(dir, "report", "report.md"))
                    Expect.stringContains md $"**Not run here: {k.Kind}**" "the report says which optimizer did not run, and why"
                finally
                    try Directory.Delete(dir, true) with _ -> ()

        testCase "the demo ends with one line per claim saying whether the paper's ordering held" <| fun () ->
            let name = "demo-test-" + Guid.NewGuid().ToString("N").Substring(0, 8)
            let config = Path.Combine(Path.GetTempPath(), name + ".json")
            File.WriteAllText(config, $$"""
{ "name": "{{name}}", "source": "test",
  "grid": { "tasks": [ { "name": "sum-of-squares", "label": "squares", "options": { "dim": 10 } } ],
            "optimizers": [ { "name": "sgd", "label": "fast", "lrs": [0.1] }, { "name": "sgd", "label": "slow", "lrs": [0.001] } ],
            "seeds": [0, 1, 2], "steps": 20, "dtype": "float64" },
  "measures": ["final_loss"],
  "claims": [ { "text": "fast beats slow", "where": "test", "task": "squares", "better": "fast", "worse": "slow", "measure": "final_loss" },
              { "text": "slow beats fast", "where": "test", "task": "squares", "better": "slow", "worse": "fast", "measure": "final_loss" } ] }""")
            try
                let code, out, err = cli [ "demo"; "--config"; config; "--quiet" ]
                Expect.equal code 0 $"demo; stderr: {err}"
                let last = out.Split('\n', StringSplitOptions.RemoveEmptyEntries) |> Array.map (fun l -> l.Trim()) |> Array.rev |> Array.truncate 2 |> Array.rev
                Expect.stringStarts last[0] "Paper ordering HOLDS in this run: fast beats slow" "the first claim"
                Expect.stringStarts last[1] "Paper ordering REVERSED in this run: slow beats fast" "the second claim"
            finally
                File.Delete config
                for f in [ Path.Combine("results", name + ".db"); Path.Combine("results", name + ".db-wal"); Path.Combine("results", name + ".db-shm") ] do
                    if File.Exists f then File.Delete f
                if Directory.Exists(Path.Combine("reports", name)) then Directory.Delete(Path.Combine("reports", name), true)

        testCase "the demo config runs Adam, Adam-HD and the shipped HyperAdam on MlpMnist" <| fun () ->
            let c = Config.load (Path.Combine(repoRoot (), "paper-configs", Demo.configName))
            Expect.equal [ for o in c.Grid.Optimizers -> o.Name ] [ "adam"; "adam-hd"; "hyperadam" ] "the demo's optimizers"
            Expect.equal [ for t in c.Grid.Tasks -> t.Name, t.Options ] [ "mlp-mnist", [] ] "MlpMnist, default options"
            let hyperadam = c.Grid.Optimizers |> List.find (fun o -> o.Name = "hyperadam")
            Expect.isFalse (hyperadam.Options |> List.exists (fun (n, _) -> n = "file" || n = "init_seed")) "the shipped model, not a file of its own"
    ]
