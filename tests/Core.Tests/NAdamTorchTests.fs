/// Nadam against torch.optim.NAdam (issue 20): 200-step float64 Rosenbrock trajectories from both
/// standard starts, (-1.5, 2) and (-1.2, 1), written by tests/reference/torch_nadam.py with
/// PyTorch 1.13's default (single-tensor) NAdam. Every step's loss and coordinates must agree to
/// 1e-9 (relative), as the other optimizers do with torch.optim; before the fix (the paper's
/// P_t mu_{t+1} in the momentum term instead of torch's P_t mu_t mu_{t+1}) lr0.01_a was 3.1e-4 off.
module Optimizers.Tests.NAdamTorchTests

open System
open System.IO
open TorchSharp
open Expecto
open Optimizers
open Optimizers.Tests.Check

let private dir = Path.Combine(AppContext.BaseDirectory, "reference", "nadam")

let private readCsv (path: string) =
    File.ReadAllLines path |> Array.skip 1 |> Array.filter (fun l -> l.Trim() <> "") |> Array.map (fun l -> l.Split ',')

let private num (s: string) = Double.Parse(s, Globalization.CultureInfo.InvariantCulture)

/// The first (step, column) where `actual` and `expected` rows (loss, x, y) differ by more than
/// 1e-9 relative, as a message; None when they agree.
let private firstDifference (case: string) (actual: float[][]) (expected: float[][]) =
    if actual.Length <> expected.Length then Some $"{case}: {actual.Length} rows, torch has {expected.Length}"
    else
        seq {
            for k in 0 .. expected.Length - 1 do
                for j in 0..2 do
                    let a, e = actual[k][j], expected[k][j]
                    if not (abs (a - e) <= 1e-9 * abs e + 1e-15) then
                        yield sprintf "%s: step %d column %d is %.17g, torch %.17g (relative %.3g)" case k j a e (abs (a - e) / abs e)
        }
        |> Seq.tryHead

[<Tests>]
let tests =
    let manifest = readCsv (Path.Combine(dir, "manifest.csv"))
    testList "nadam vs torch.optim.NAdam" [
        for row in manifest do
            let case, options, start = row[0], row[1], row[2]
            let expected = lazy (readCsv (Path.Combine(dir, case + ".csv")) |> Array.map (fun r -> r[1..] |> Array.map num))
            let startXY = start.Split ';' |> Array.map num
            testCase $"{case} ({options}; start {start})" <| fun () ->
                let rows = Collections.Generic.List<float[]>()
                use _scope = torch.NewDisposeScope()
                let task = Tasks.Synthetic.rosenbrock 1.0 100.0 (Some startXY)
                let p0 = task.Init { Tasks.TaskInit.Default with Dtype = f64 }
                let opts = options.Split ';' |> Array.map Registry.parseAssignment |> List.ofArray
                let opt = Registry.createOptimizer "nadam" opts
                Run.optimize task opt p0 (expected.Value.Length - 1) (fun _ loss p -> let xs = floats p in rows.Add [| loss; xs[0]; xs[1] |]) |> ignore
                match firstDifference case (rows.ToArray()) expected.Value with
                | Some msg -> failtest msg
                | None -> ()
        // What a user runs: the CLI's trace, CSV (step,loss,p0,p1) at full precision.
        testCase "trace --optimizer nadam --lr 0.01 --dtype float64 from (-1.2, 1) equals torch" <| fun () ->
            let code, out, err = cli [ "trace"; "--task"; "rosenbrock"; "--start=-1.2,1"; "--optimizer"; "nadam"; "--lr"; "0.01"; "--steps"; "200"; "--dtype"; "float64" ]
            Expect.equal code 0 $"exit code; stderr: {err}"
            let actual = lines out |> Array.skip 1 |> Array.map (fun l -> (l.Split ',')[1..3] |> Array.map num)
            let expected = readCsv (Path.Combine(dir, "lr0.01_b.csv")) |> Array.map (fun r -> r[1..] |> Array.map num)
            match firstDifference "trace lr0.01_b" actual expected with
            | Some msg -> failtest msg
            | None -> ()
    ]
