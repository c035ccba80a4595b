// Milliseconds per T = 20 unroll of Adam and of SGD with momentum on sum(a x^2) over 1M float32
// parameters in TENSORS tensors (2 threads): forward alone and forward + backward to the learning
// rate, with the differentiable fused steps (Transform.fuseGradients) and op by op (stepOps);
// medians of 6 runs after 2. Build first, then from the repository root:
//   dotnet build src/Experiments -c Release && dotnet fsi bench/fused-unroll.fsx TENSORS
// It loads the built output of src/Experiments (whose libLibTorchSharp.so carries the fix-up).
#r "../src/Experiments/bin/Release/net10.0/linux-x64/TorchSharp.dll"
#r "../src/Experiments/bin/Release/net10.0/linux-x64/Optimizers.Core.dll"
open System
open System.Diagnostics
open TorchSharp
open Optimizers
open Optimizers.Handcrafted
torch.set_num_threads 2
let n, tensors, T = 1_000_000, int (fsi.CommandLineArgs.[1]), 20
let a = [| for _ in 1 .. tensors -> torch.rand([| int64 (n / tensors) |]) + 0.1f |]
let p0 = [| for _ in 1 .. tensors -> torch.randn([| int64 (n / tensors) |]) |]
let run (name: string) (make: Tensor -> Transformation) (stepFn: Transformation -> Tree -> State -> Tree -> Tree * State) (backward: bool) =
    let times = Collections.Generic.List<float>()
    for rep in 1 .. 8 do
        use _ = torch.NewDisposeScope()
        let lr = torch.tensor(0.01, dtype = torch.ScalarType.Float64, requires_grad = true)
        let opt = make lr
        let t0 = Stopwatch.GetTimestamp()
        let mutable p = Tree.ofSeq [ for i in 0 .. tensors - 1 -> $"t{i}", p0[i] ]
        let mutable s = opt.Init p
        for _ in 1 .. T do
            let g = { Names = p.Names; Values = Array.map2 (fun (x: Tensor) (ai: Tensor) -> 2.0f * ai * x) p.Values a }
            let p', s' = stepFn opt g s p
            p <- p'
            s <- s'
        let loss = Array.map2 (fun (x: Tensor) (ai: Tensor) -> (ai * x * x).sum()) p.Values a |> Array.reduce (+)
        if backward then torch.autograd.grad([| loss |], [| lr |]) |> ignore
        if rep > 2 then times.Add(Stopwatch.GetElapsedTime(t0).TotalMilliseconds)
        Memory.trim ()
    let m = times |> Seq.sort |> Seq.item (times.Count / 2)
    printfn "%-40s %s  %8.1f ms" name (if backward then "fwd+bwd" else "fwd    ") m
let adam (lr: Tensor) = Adam.create { Adam.defaults with Lr = Hyper.Learnable lr }
let sgdm (lr: Tensor) = Sgd.create { Sgd.momentumDefaults with Lr = Hyper.Learnable lr }
for name, make in [ "adam", adam; "sgd-momentum", sgdm ] do
    let fused (t: Transformation) g s p =
        Transform.fuseGradients <- true
        try Transform.step t g s p finally Transform.fuseGradients <- false
    for label, f in [ "fused (fuseGradients)", fused; "op by op (stepOps)", Transform.stepOps ] do
        run $"{name} {label}" make f false
        run $"{name} {label}" make f true
