// Adam-HD (adam lop, global rate) on sum(a x^2) over 1M float32 parameters in TENSORS tensors
// (THREADS threads, default 2), with the differentiable fused step (Transform.fuseGradients: one hypergradient call,
// the rates' 0-d ops, AdamGrad.applyWithDirection per tensor) and op by op (stepOps):
//   step:   milliseconds per 100 steps with a graph (hypergrad_lr a tensor requiring grad), each
//           from the same parameters and state, its graph freed at once;
//   unroll: milliseconds per T = 20 unroll, forward alone and forward + backward to hypergrad_lr.
// Medians of 6 runs after 2. Build first, then from the repository root:
//   dotnet build src/Experiments -c Release && dotnet fsi bench/hd-fused-unroll.fsx TENSORS [THREADS]
#r "../src/Experiments/bin/Release/net10.0/linux-x64/TorchSharp.dll"
#r "../src/Experiments/bin/Release/net10.0/linux-x64/Optimizers.Core.dll"
open System
open System.Diagnostics
open TorchSharp
open Optimizers
open Optimizers.Hypergradient
torch.set_num_threads (if fsi.CommandLineArgs.Length > 2 then int fsi.CommandLineArgs.[2] else 2)
let n, tensors = 1_000_000, int (fsi.CommandLineArgs.[1])
let a = [| for _ in 1 .. tensors -> torch.rand([| int64 (n / tensors) |]) + 0.1f |]
let p0 = [| for _ in 1 .. tensors -> torch.randn([| int64 (n / tensors) |]) |]
let make (beta: Tensor) = Hd.create { Hd.forModel AdamOp AdamLop with Lr = 0.01; HypergradLr = Hyper.Learnable beta }
let grad (p: Tree) = { Names = p.Names; Values = Array.map2 (fun (x: Tensor) (ai: Tensor) -> 2.0f * ai * x) p.Values a }
let median (name: string) (what: string) (body: unit -> unit) =
    let times = Collections.Generic.List<float>()
    for rep in 1 .. 8 do
        let t0 = Stopwatch.GetTimestamp()
        body ()
        if rep > 2 then times.Add(Stopwatch.GetElapsedTime(t0).TotalMilliseconds)
        Memory.trim ()
    printfn "%-28s %-26s %8.1f ms" name what (times |> Seq.sort |> Seq.item (times.Count / 2))
let fused (t: Transformation) g s p =
    Transform.fuseGradients <- true
    try Transform.step t g s p finally Transform.fuseGradients <- false
for label, stepFn in [ "fused (fuseGradients)", fused; "op by op (stepOps)", Transform.stepOps ] do
    // a state after 3 steps (nonzero direction and moments), then 100 steps from it
    let beta = torch.tensor(1e-7, dtype = torch.ScalarType.Float64, requires_grad = true)
    let opt = make beta
    let start = Tree.ofSeq [ for i in 0 .. tensors - 1 -> $"t{i}", p0[i].clone().requires_grad_(true) ]
    let s = using (torch.no_grad ()) (fun _ -> Seq.fold (fun s _ -> Transform.stepOps opt (grad start) s start |> snd) (opt.Init start) [ 1 .. 3 ])
    let g = using (torch.no_grad ()) (fun _ -> grad start)
    median label "100 steps with a graph" (fun () ->
        for _ in 1 .. 100 do
            use _ = torch.NewDisposeScope()
            stepFn opt g s start |> ignore)
    for backward in [ false; true ] do
        median label (if backward then "T = 20 unroll fwd+bwd" else "T = 20 unroll fwd") (fun () ->
            use _ = torch.NewDisposeScope()
            let beta = torch.tensor(1e-7, dtype = torch.ScalarType.Float64, requires_grad = true)
            let opt = make beta
            let mutable p = Tree.ofSeq [ for i in 0 .. tensors - 1 -> $"t{i}", p0[i] ]
            let mutable s = opt.Init p
            for _ in 1 .. 20 do
                let p', s' = stepFn opt (grad p) s p
                p <- p'
                s <- s'
            let loss = Array.map2 (fun (x: Tensor) (ai: Tensor) -> (ai * x * x).sum()) p.Values a |> Array.reduce (+)
            if backward then torch.autograd.grad([| loss |], [| beta |]) |> ignore)
