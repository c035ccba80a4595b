/// Optimizer trajectories against PyTorch's own torch.optim: 200-step float64 Rosenbrock runs,
/// written by the scripts in tests/reference/ (PyTorch 1.13):
///   foundation: SGD, momentum, Nesterov and Adam through `optimizers trace`
///               (torch_foundation.py -> reference/*.csv)
///   catalog:    the hand-designed catalog of issue 3 (torch_catalog.py -> reference/catalog/)
///   nadam:      Nadam against torch.optim.NAdam from both standard starts, (-1.5, 2) and (-1.2, 1),
///               with PyTorch's default (single-tensor) NAdam (torch_nadam.py -> reference/nadam/).
///               Before the fix (the paper's P_t mu_{t+1} in the momentum term instead of torch's
///               P_t mu_t mu_{t+1}) lr0.01_a was 3.1e-4 off.
/// Every step's loss and coordinates must agree to 1e-9 (relative).
module Optimizers.Tests.TorchTests

open System
open System.IO
open TorchSharp
open Expecto
open Optimizers
open Optimizers.Tests.Check

/// The rows of a CSV text without its header, as fields.
let private csvRows (text: string) : string[][] = lines text |> Array.skip 1 |> Array.map (fun l -> l.Split ',')

/// The rows of a reference CSV file, as fields.
let private csvFile (path: string) = csvRows (File.ReadAllText path)

let private referenceDir = Path.Combine(AppContext.BaseDirectory, "reference")

/// Run a registry optimizer on float64 Rosenbrock from `start`; rows (loss, x, y) for steps 0..n.
let private rosenbrockRows (name: string) (options: (string * string) list) (start: float[]) (n: int) : float[][] =
    let rows = Collections.Generic.List<float[]>()
    use _scope = torch.NewDisposeScope()
    let task = Tasks.Synthetic.rosenbrock 1.0 100.0 (Some start)
    let p0 = task.Init { Tasks.TaskInit.Default with Dtype = f64 }
    let opt = Registry.createOptimizer name options
    Run.optimize task opt p0 n (fun _ loss p -> let xs = floats p in rows.Add [| loss; xs[0]; xs[1] |]) |> ignore
    rows.ToArray()

/// The first (step, column) where `actual` and `expected` rows (loss, x, y) are not within
/// Tol.tight, as a message; None when they agree.
let private firstDifference (case: string) (actual: float[][]) (expected: float[][]) =
    if actual.Length <> expected.Length then Some $"{case}: {actual.Length} rows, torch has {expected.Length}"
    else
        seq {
            for k in 0 .. expected.Length - 1 do
                for j in 0..2 do
                    let a, e = actual[k][j], expected[k][j]
                    if not (isClose Tol.tight a e) then
                        yield sprintf "%s: step %d column %d is %.17g, torch %.17g (relative error %.3g)" case k j a e (abs (a - e) / abs e)
        }
        |> Seq.tryHead

let private expectSameRows (case: string) (actual: float[][]) (expected: float[][]) =
    match firstDifference case actual expected with
    | Some msg -> failtest msg
    | None -> ()

/// (reference file, our trace options) pairs: the same settings as torch_foundation.py.
let private foundationCases =
    [ "sgd_lr1e-3", [ "--optimizer"; "sgd"; "--lr"; "1e-3" ]
      "sgd_lr1e-4_wd0.1", [ "--optimizer"; "sgd"; "--lr"; "1e-4"; "--opt"; "weight_decay=0.1" ]
      "momentum_lr1e-4", [ "--optimizer"; "momentum"; "--lr"; "1e-4" ]
      "momentum_lr1e-4_damp0.5_wd0.01", [ "--optimizer"; "momentum"; "--lr"; "1e-4"; "--opt"; "dampening=0.5"; "--opt"; "weight_decay=0.01" ]
      "nesterov_lr1e-4", [ "--optimizer"; "nesterov"; "--lr"; "1e-4" ]
      "adam_default", [ "--optimizer"; "adam" ]
      "adam_lr0.01", [ "--optimizer"; "adam"; "--lr"; "0.01" ]
      "adam_lr0.05_b0.8_0.99_eps1e-6_wd0.01",
      [ "--optimizer"; "adam"; "--lr"; "0.05"; "--opt"; "beta1=0.8"; "--opt"; "beta2=0.99"; "--opt"; "eps=1e-6"; "--opt"; "weight_decay=0.01" ] ]

let private foundationTests =
    testList "foundation" [
        for name, args in foundationCases do
            testCase $"{name}: trace matches PyTorch for 200 steps on rosenbrock (float64)" <| fun () ->
                let expected = csvFile (Path.Combine(referenceDir, name + ".csv")) |> Array.map (Array.map parseFloat)
                let ours =
                    cliOk ([ "trace"; "--task"; "rosenbrock"; "--start"; "-1.5,2"; "--steps"; "200"; "--dtype"; "float64" ] @ args)
                    |> csvRows |> Array.map (Array.map parseFloat)
                Expect.equal ours.Length 201 "rows: start and 200 steps"
                for k in 0..200 do
                    closeRel 1e-9 ours[k] expected[k] $"{name}: step {k} (step, loss, p0, p1)"
    ]

let private catalogTests =
    let dir = Path.Combine(referenceDir, "catalog")
    let manifest = csvFile (Path.Combine(dir, "manifest.csv"))
    testList "catalog" [
        for row in manifest do
            let case, name, options, source = row[0], row[1], row[2], row[3]
            testCase $"{case} ({source})" <| fun () ->
                let expected = csvFile (Path.Combine(dir, case + ".csv")) |> Array.map (fun r -> r[1..] |> Array.map parseFloat)
                let opts = if options = "" then [] else options.Split ';' |> Array.map Registry.parseAssignment |> List.ofArray
                let actual = rosenbrockRows name opts rosenStart (expected.Length - 1)
                // CATALOG_VERBOSE=1 prints how the relative error grows along the run.
                if Environment.GetEnvironmentVariable "CATALOG_VERBOSE" = "1" then
                    let mutable worst = 0.0
                    let growth = Collections.Generic.List<string>()
                    for k in 0 .. expected.Length - 1 do
                        for j in 0..2 do
                            let a, e = actual[k][j], expected[k][j]
                            worst <- max worst (abs (a - e) / max (abs e) 1e-300)
                        if k % 50 = 0 then growth.Add(sprintf "%d:%.1e" k worst)
                    printfn "torch %-18s max relative error %.3g (running max by step: %s)" case worst (String.Join(" ", growth))
                expectSameRows case actual expected
    ]

let private nadamTests =
    let dir = Path.Combine(referenceDir, "nadam")
    let manifest = csvFile (Path.Combine(dir, "manifest.csv"))
    testList "nadam vs torch.optim.NAdam" [
        for row in manifest do
            let case, options, start = row[0], row[1], row[2]
            let expected = lazy (csvFile (Path.Combine(dir, case + ".csv")) |> Array.map (fun r -> r[1..] |> Array.map parseFloat))
            let startXY = start.Split ';' |> Array.map parseFloat
            testCase $"{case} ({options}; start {start})" <| fun () ->
                let opts = options.Split ';' |> Array.map Registry.parseAssignment |> List.ofArray
                let actual = rosenbrockRows "nadam" opts startXY (expected.Value.Length - 1)
                expectSameRows case actual expected.Value
        // What a user runs: the CLI's trace, CSV (step,loss,p0,p1) at full precision.
        testCase "trace --optimizer nadam --lr 0.01 --dtype float64 from (-1.2, 1) equals torch" <| fun () ->
            let code, out, err = cli [ "trace"; "--task"; "rosenbrock"; "--start=-1.2,1"; "--optimizer"; "nadam"; "--lr"; "0.01"; "--steps"; "200"; "--dtype"; "float64" ]
            Expect.equal code 0 $"exit code; stderr: {err}"
            let actual = csvRows out |> Array.map (fun r -> r[1..3] |> Array.map parseFloat)
            let expected = csvFile (Path.Combine(dir, "lr0.01_b.csv")) |> Array.map (fun r -> r[1..] |> Array.map parseFloat)
            expectSameRows "trace lr0.01_b" actual expected
    ]

[<Tests>]
let tests = testList "torch.optim" [ foundationTests; catalogTests; nadamTests ]
