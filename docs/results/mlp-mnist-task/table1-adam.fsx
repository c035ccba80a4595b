// HyperAdam's Table 1, Adam column: Adam at the paper's hand-tuned rates on MlpMnist (784-20-10,
// N(0, 0.1^2) weights, pixels in [0, 1], minibatches of 128, 100 steps) for each activation, over
// many initialisations, with several readings of "final loss" side by side (README.md here).
//
//   dotnet build Optimizers.sln -c Release
//   dotnet fsi docs/results/mlp-mnist-task/table1-adam.fsx run DATA [SEEDS]   # one data set
//   dotnet fsi docs/results/mlp-mnist-task/table1-adam.fsx plot              # the figure
//
// DATA is a shipped set (mnist-20k, mnist-subset) or an MNIST folder (data/mnist-full); SEEDS
// defaults to 100. `run` writes results-<DATA>.csv beside this script and prints a table; `plot`
// reads every results-*.csv there, writes results.csv (all rows) and table1-adam.png. Each seed s
// runs in two data orders: "own" (data_seed = 1000 + s: every initialisation sees its own
// minibatch sequence, as every test of the authors' code draws the next 100 batches of one
// shuffled stream) and "shared" (data_seed 0 for every seed: what `evaluate` and `run` give while
// the task's data_seed is one number).
#r "../../../src/Experiments/bin/Release/net10.0/linux-x64/TorchSharp.dll"
#r "../../../src/Experiments/bin/Release/net10.0/linux-x64/Optimizers.Core.dll"
#r "../../../src/Experiments/bin/Release/net10.0/linux-x64/ScottPlot.dll"

open System
open System.IO
open TorchSharp
open Optimizers
open Optimizers.Data
open Optimizers.Tasks

let args = fsi.CommandLineArgs |> Array.skip 1
let mode = if args.Length > 0 then args[0] else "help"
let dataArg = if args.Length > 1 then args[1] else "mnist-20k"
let seeds = if args.Length > 2 then int args[2] else 100
let fileName (data: string) = "results-" + data.Replace('/', '_') + ".csv"
let steps = 100
let activations = [ "sigmoid"; "relu"; "elu"; "tanh" ]
// The paper's tuned rates (ShipengWang/HyperAdam, adamLSTM/test_list.py) and Table 1's Adam column.
let rate = dict [ "sigmoid", 0.03125; "relu", 0.0220971; "elu", 0.0220971; "tanh", 0.0110485 ]
let paper = dict [ "sigmoid", 0.35; "relu", 0.32; "elu", 0.31; "tanh", 0.34 ]
torch.set_num_threads 1

/// One run's readings of the final loss.
type Readings =
    { /// the loss of the final weights on the minibatch of step 100 (what `evaluate` reports as final_loss)
      LastBatch: float
      /// the loss of minibatch 99 at the weights it was computed at (the last point of a loss curve)
      CurveEnd: float
      /// the final weights' mean loss over the 100 minibatches of the run (the authors' code's
      /// val_gd_final_loss)
      RunBatches: float
      /// the final weights' loss on the whole training split
      Train: float
      /// the final weights' loss on the test split
      Test: float }

let runOne (data: ImageSplits) (act: string) (seed: int) (dataSeed: int) (evaluateSplits: bool) =
    let task = Classification.task "mlp-mnist" (Networks.mlp act [ 20 ]) data { Vision.hyperAdamOptions with DataSeed = dataSeed }
    let opt = Registry.createOptimizer "adam" [ ("lr", string rate[act]) ]
    let start = task.Init { TaskInit.Default with Seed = seed }
    let losses = Collections.Generic.List<float>()
    let p, st = Run.optimize task opt start steps (fun _ l _ -> losses.Add l)
    let runBatches =
        use _ = torch.no_grad()
        let batchLoss k =
            use _s = torch.NewDisposeScope()
            (task.Loss k p).ToDouble()
        List.average [ for k in 0 .. steps - 1 -> batchLoss k ]
    let train, test =
        if evaluateSplits then (Task.evaluate task Split.Train p).Loss, (Task.evaluate task Split.Test p).Loss else nan, nan
    Tree.dispose p
    State.dispose st
    Tree.dispose start
    { LastBatch = losses[steps]; CurveEnd = losses[steps - 1]; RunBatches = runBatches; Train = train; Test = test }

let meanSe (xs: float[]) =
    let m = Array.average xs
    let sd = sqrt (xs |> Array.averageBy (fun x -> (x - m) ** 2.0))
    m, sd, sd / sqrt (float xs.Length)

let readings : (string * (Readings -> float)) list =
    [ "last_batch", (fun r -> r.LastBatch); "curve_end", (fun r -> r.CurveEnd); "run_batches", (fun r -> r.RunBatches)
      "train", (fun r -> r.Train); "test", (fun r -> r.Test) ]

let here = __SOURCE_DIRECTORY__
let invariant = Globalization.CultureInfo.InvariantCulture
let header = "data,activation,data_order,reading,mean,std,se,runs,paper,ratio"

if mode = "run" then
    let data = Datasets.mnist (Some dataArg)
    printfn "data %s: %d training images (%s), %d seeds" dataArg data.Train.Count data.Source seeds
    let csv = Path.Combine(here, fileName dataArg)
    use w = new StreamWriter(csv)
    w.WriteLine header
    for act in activations do
        for order in [ "own"; "shared" ] do
            let results =
                [| for s in 0 .. seeds - 1 -> runOne data act s (if order = "own" then 1000 + s else 0) (order = "own") |]
            for reading, f in readings do
                let xs = results |> Array.map f
                if not (Double.IsNaN xs[0]) then
                    let m, sd, se = meanSe xs
                    w.WriteLine(String.Format(invariant, "{0},{1},{2},{3},{4:F4},{5:F4},{6:F4},{7},{8:F2},{9:F3}", dataArg, act, order, reading, m, sd, se, xs.Length, paper[act], m / paper[act]))
                    w.Flush()
                    printfn "  %-8s %-6s %-11s %.4f +- %.4f (se %.4f)  paper %.2f  ours/paper %.3f" act order reading m sd se paper[act] (m / paper[act])
    printfn "wrote %s" csv

// ---- figure: per activation, the paper's value (black bar, with the +-10% band) and ours (mean, 95% CI) ----
if mode = "plot" then
  let rows =
      [ for f in Directory.GetFiles(here, "results-*.csv") |> Array.sort do
          for line in File.ReadAllLines f |> Array.skip 1 do
              let c = line.Split ','
              yield c[0], c[1], c[2], c[3], float c[4], float c[5], float c[6], int c[7] ]
  let dataSets = rows |> List.map (fun (d, _, _, _, _, _, _, _) -> d) |> List.distinct
  File.WriteAllLines(Path.Combine(here, "results.csv"),
        header :: [ for f in Directory.GetFiles(here, "results-*.csv") |> Array.sort do yield! File.ReadAllLines f |> Array.skip 1 ])
  let seeds = rows |> List.map (fun (_, _, _, _, _, _, _, n) -> n) |> List.max
  let series =
      let want =
          [ "mnist-subset", "shared", "last_batch", "mnist-subset (previous default), data_seed 0 for all seeds: last minibatch (issue 17's numbers)"
            "mnist-20k", "shared", "last_batch", "mnist-20k (new default), data_seed 0 for all seeds: last minibatch"
            "mnist-20k", "own", "last_batch", "mnist-20k, own data order per seed: last minibatch"
            "mnist-20k", "own", "run_batches", "mnist-20k, own order: final weights over the run's 100 batches (authors' code)"
            "mnist-subset", "own", "last_batch", "mnist-subset (8,000 training images), own order: last minibatch"
            "data/mnist-full", "own", "last_batch", "full MNIST (55,000), own order per seed: last minibatch" ]
      let given = set dataSets
      [ for d, o, r, label in want do if given.Contains d then yield d, o, r, label ]
  do
      use plt = new ScottPlot.Plot()
      let palette = ScottPlot.Palettes.Category10()
      let width = 0.8
      let k = series.Length
      for i, act in List.indexed activations do
          let x = float i
          let band = plt.Add.Rectangle(x - width / 2.0, x + width / 2.0, paper[act] * 0.9, paper[act] * 1.1)
          band.FillColor <- ScottPlot.Colors.Gray.WithAlpha 0.15
          band.LineWidth <- 0.0f
          let line = plt.Add.Line(x - width / 2.0, paper[act], x + width / 2.0, paper[act])
          line.Color <- ScottPlot.Colors.Black
          line.LineWidth <- 3.0f
          if i = 0 then line.LegendText <- "Table 1 (paper), band: +-10%"
      for j, (d, o, r, label) in List.indexed series do
          let pts =
              [| for i, act in List.indexed activations do
                   match rows |> Seq.tryFind (fun (d', a, o', r', _, _, _, _) -> d' = d && a = act && o' = o && r' = r) with
                   | Some(_, _, _, _, m, _, se, _) -> yield float i - width / 2.0 + width * (float j + 0.5) / float k, m, 1.96 * se
                   | None -> () |]
          let color = palette.GetColor j
          let eb = plt.Add.ErrorBar(pts |> Array.map (fun (x, _, _) -> x), pts |> Array.map (fun (_, y, _) -> y), pts |> Array.map (fun (_, _, e) -> e))
          eb.Color <- color
          eb.LineWidth <- 2.0f
          let mk = plt.Add.Markers(pts |> Array.map (fun (x, _, _) -> x), pts |> Array.map (fun (_, y, _) -> y))
          mk.Color <- color
          mk.MarkerSize <- 8.0f
          mk.LegendText <- label
      plt.Axes.Bottom.SetTicks([| 0.0 .. float (activations.Length - 1) |], activations |> List.map (fun a -> $"{a} (Adam lr {rate[a]})") |> Array.ofList)
      plt.Axes.SetLimits(-0.6, float activations.Length - 0.4, 0.2, 0.52)
      plt.YLabel "final loss after 100 steps (mean over seeds, 95% CI)"
      plt.Title $"MlpMnist, Adam at the paper's tuned rates, {seeds} seeds: ours against HyperAdam's Table 1"
      plt.ShowLegend(ScottPlot.Alignment.UpperRight) |> ignore
      let png = Path.Combine(here, "table1-adam.png")
      plt.SavePng(png, 1150, 720) |> ignore
      printfn "wrote %s" png
