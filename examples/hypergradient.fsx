// A hypergradient experiment (Baydin et al. 2018): Adam against Adam-HD, whose learning rate
// learns by gradient descent on its hypergradient, on the MNIST MLP (784-20-10 sigmoid, batch
// 128, the shipped MNIST set), from several initial learning rates alpha_0. Adam-HD should
// move a poor alpha_0 towards a better one and so depend less on it.
//
// Build first (the script loads the built output, whose libLibTorchSharp.so carries the GLIBCXX
// fix; a `#r "nuget: TorchSharp-cpu"` would load the unpatched one), then from the repository root:
//   dotnet fsi build.fsx build
//   dotnet fsi examples/hypergradient.fsx [steps, default 300] [hypergrad_lr, default 1e-5]
#r "MnistMlp/bin/Release/net10.0/linux-x64/TorchSharp.dll"
#r "MnistMlp/bin/Release/net10.0/linux-x64/Optimizers.Core.dll"

open System
open TorchSharp
open Optimizers
open Optimizers.Tasks

let args = fsi.CommandLineArgs |> Array.skip 1
let steps = if args.Length > 0 then int args[0] else 300
let hypergradLr = if args.Length > 1 then args[1] else "1e-5"
let task = Registry.createTask "mlp-mnist" []
let start = task.Init TaskInit.Default

/// Train from the same start with the same batches; the mean loss of the last tenth of the steps
/// and the final state.
let train (name: string) (alpha0: float) =
    let options = [ "lr", string alpha0 ] @ (if name = "adam-hd" then [ ("hypergrad_lr", hypergradLr) ] else [])
    let opt = Registry.createOptimizer name options
    let losses = ResizeArray<float>()
    let p, s = Run.optimize task opt start steps (fun _ loss _ -> losses.Add loss)
    let tail = losses |> Seq.skip (losses.Count - max 1 (losses.Count / 10)) |> Seq.average
    let lr = match State.watch "lr" s with [ _, t ] -> t.ToDouble() | _ -> alpha0
    Tree.dispose p
    State.dispose s
    tail, lr

printfn "MNIST MLP, %d steps; Adam-HD with hypergrad_lr = %s. Mean training loss over the last %d steps:" steps hypergradLr (max 1 (steps / 10))
printfn "%10s  %10s  %10s  %16s" "alpha_0" "Adam" "Adam-HD" "Adam-HD's alpha"
for alpha0 in [ 1e-4; 1e-3; 1e-2 ] do
    let adam, _ = train "adam" alpha0
    let hd, alpha = train "adam-hd" alpha0
    if Double.IsNaN adam || Double.IsNaN hd then failwithf "a run diverged at alpha_0 = %g" alpha0
    printfn "%10g  %10.4f  %10.4f  %16.6g" alpha0 adam hd alpha
