/// Optimizer trajectories against values computed independently of the implementation:
/// numbers worked out by hand, a plain-float transcription of the published formulas, and
/// PyTorch's own torch.optim (CSV files written by tests/reference/torch_foundation.py).
module Optimizers.Tests.ReferenceTests

open System
open System.IO
open Expecto
open Optimizers
open Optimizers.Handcrafted
open Optimizers.Tests.Check

/// Adam transcribed from Kingma and Ba's Algorithm 1 with PyTorch's eps placement, on plain
/// floats, for the gradient g(x) = 2x.
let adamByFormula (lr: float) (b1: float) (b2: float) (eps: float) (x0: float[]) (steps: int) =
    let x = Array.copy x0
    let m = Array.zeroCreate x.Length
    let v = Array.zeroCreate x.Length
    [ for t in 1..steps do
        for i in 0 .. x.Length - 1 do
            let g = 2.0 * x[i]
            m[i] <- b1 * m[i] + (1.0 - b1) * g
            v[i] <- b2 * v[i] + (1.0 - b2) * g * g
            let mHat = m[i] / (1.0 - b1 ** float t)
            let vHat = v[i] / (1.0 - b2 ** float t)
            x[i] <- x[i] - lr * mHat / (sqrt vHat + eps)
        yield Array.copy x ]

/// Read a trajectory CSV (step,loss,p0,...) into rows of floats.
let readCsv (text: string) : float[][] =
    text.Split('\n', StringSplitOptions.RemoveEmptyEntries)
    |> Array.skip 1
    |> Array.map (fun line -> line.Split(',') |> Array.map (fun s -> Double.Parse(s, Globalization.CultureInfo.InvariantCulture)))

/// `optimizers trace` run in-process; returns stdout.
let trace (args: string list) =
    use out = new StringWriter()
    use err = new StringWriter()
    let code = Optimizers.Experiments.Cli.run (Array.ofList args) out err
    Expect.equal code 0 $"trace exit code (stderr: {err})"
    out.ToString()

/// (reference file, our trace options) pairs: the same settings as torch_foundation.py.
let torchCases =
    [ "sgd_lr1e-3", [ "--optimizer"; "sgd"; "--lr"; "1e-3" ]
      "sgd_lr1e-4_wd0.1", [ "--optimizer"; "sgd"; "--lr"; "1e-4"; "--opt"; "weight_decay=0.1" ]
      "momentum_lr1e-4", [ "--optimizer"; "momentum"; "--lr"; "1e-4" ]
      "momentum_lr1e-4_damp0.5_wd0.01", [ "--optimizer"; "momentum"; "--lr"; "1e-4"; "--opt"; "dampening=0.5"; "--opt"; "weight_decay=0.01" ]
      "nesterov_lr1e-4", [ "--optimizer"; "nesterov"; "--lr"; "1e-4" ]
      "adam_default", [ "--optimizer"; "adam" ]
      "adam_lr0.01", [ "--optimizer"; "adam"; "--lr"; "0.01" ]
      "adam_lr0.05_b0.8_0.99_eps1e-6_wd0.01",
      [ "--optimizer"; "adam"; "--lr"; "0.05"; "--opt"; "beta1=0.8"; "--opt"; "beta2=0.99"; "--opt"; "eps=1e-6"; "--opt"; "weight_decay=0.01" ] ]

[<Tests>]
let tests =
    testList "reference" [
        testList "by hand" [
            // grad = 2x from x0 = (1, -2); the numbers below are worked out on paper.
            testCase "sgd" <| fun () ->
                let opt = Sgd.create { Sgd.defaults with Lr = Hyper.Fixed 0.1 }
                closeRel 1e-15 (trajectory opt grad2x (tree1 [ 1.0; -2.0 ]) 2 |> Array.concat) [| 0.8; -1.6; 0.64; -1.28 |] "x1, x2"
            testCase "momentum" <| fun () ->
                // b1 = g1 = (2, -4); x1 = (0.8, -1.6); g2 = (1.6, -3.2); b2 = 0.9 b1 + g2 = (3.4, -6.8)
                let opt = Sgd.create { Sgd.momentumDefaults with Lr = Hyper.Fixed 0.1 }
                closeRel 1e-15 (trajectory opt grad2x (tree1 [ 1.0; -2.0 ]) 2 |> Array.concat) [| 0.8; -1.6; 0.46; -0.92 |] "x1, x2"
            testCase "nesterov" <| fun () ->
                // d1 = g1 + 0.9 b1 = (3.8, -7.6); x1 = (0.62, -1.24); g2 = (1.24, -2.48);
                // b2 = (3.04, -6.08); d2 = g2 + 0.9 b2 = (3.976, -7.952); x2 = (0.2224, -0.4448)
                let opt = Sgd.create { Sgd.nesterovDefaults with Lr = Hyper.Fixed 0.1 }
                closeRel 1e-15 (trajectory opt grad2x (tree1 [ 1.0; -2.0 ]) 2 |> Array.concat) [| 0.62; -1.24; 0.2224; -0.4448 |] "x1, x2"
            testCase "momentum with dampening starts its buffer at the gradient" <| fun () ->
                // torch.optim.SGD: b1 = g1 (no dampening on the first step); b2 = 0.9 b1 + 0.5 g2
                // x1 = 1 - 0.1 * 2 = 0.8; g2 = 1.6; b2 = 1.8 + 0.8 = 2.6; x2 = 0.8 - 0.26 = 0.54
                let opt = Sgd.create { Sgd.momentumDefaults with Lr = Hyper.Fixed 0.1; Dampening = Hyper.Fixed 0.5 }
                closeRel 1e-15 (trajectory opt grad2x (tree1 [ 1.0 ]) 2 |> Array.concat) [| 0.8; 0.54 |] "x1, x2"
            testCase "adam's first step is lr times the sign of the gradient (up to eps)" <| fun () ->
                // m1/(1-b1) = g, v1/(1-b2) = g^2: x1 = x0 - lr g / (|g| + eps)
                let opt = Adam.create { Adam.defaults with Lr = Hyper.Fixed 0.1 }
                let x1 = trajectory opt grad2x (tree1 [ 1.0; -2.0 ]) 1 |> List.head
                closeRel 1e-15 x1 [| 1.0 - 0.1 * 2.0 / (2.0 + 1e-8); -2.0 + 0.1 * 4.0 / (4.0 + 1e-8) |] "x1"
            testCase "adam follows the published algorithm for 50 steps" <| fun () ->
                for lr, b1, b2, eps in [ 0.1, 0.9, 0.999, 1e-8; 0.03, 0.5, 0.9, 1e-3 ] do
                    let opt = Adam.create { Adam.defaults with Lr = Hyper.Fixed lr; Beta1 = Hyper.Fixed b1; Beta2 = Hyper.Fixed b2; Eps = eps }
                    let ours = trajectory opt grad2x (tree1 [ 1.0; -2.0; 0.5 ]) 50
                    let formula = adamByFormula lr b1 b2 eps [| 1.0; -2.0; 0.5 |] 50
                    List.iteri2 (fun t a e -> closeRel 1e-13 a e $"lr {lr} b1 {b1}: step {t + 1}") ours formula
        ]

        testList "torch.optim" [
            for name, args in torchCases do
                testCase $"{name}: trace matches PyTorch for 200 steps on rosenbrock (float64)" <| fun () ->
                    let file = Path.Combine(AppContext.BaseDirectory, "reference", name + ".csv")
                    let expected = readCsv (File.ReadAllText file)
                    let ours =
                        trace ([ "trace"; "--task"; "rosenbrock"; "--start"; "-1.5,2"; "--steps"; "200"; "--dtype"; "float64" ] @ args)
                        |> readCsv
                    Expect.equal ours.Length 201 "rows: start and 200 steps"
                    for k in 0..200 do
                        closeRel 1e-9 ours[k] expected[k] $"{name}: step {k} (step, loss, p0, p1)"
        ]
    ]
