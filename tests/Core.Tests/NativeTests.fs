/// The engine: LibTorch loads on this machine (the native fix-up of Directory.Build.targets), and
/// higher-order gradients flow through unrolled optimizer steps of the pure core.
module Optimizers.Tests.NativeTests

open Expecto
open TorchSharp
open Optimizers
open Optimizers.Handcrafted
open Optimizers.Tests.Check

/// Unroll `steps` steps of `opt` on `loss` from x0, keeping the graph (create_graph), and return
/// the loss at the end: a differentiable function of every hyperparameter tensor.
let unrolledLoss (opt: Transformation) (loss: Tensor -> Tensor) (x0: float list) (steps: int) =
    let mutable p = tree1 x0
    let mutable s = opt.Init p
    for _ in 1..steps do
        let x = p["x"]
        let x = if x.requires_grad then x else x.requires_grad_(true)
        let l = loss x
        let g = torch.autograd.grad([| l |], [| x |], retain_graph = true, create_graph = true)
        let p', s' = Transform.step opt (Tree.single "x" g[0]) s (Tree.single "x" x)
        p <- p'
        s <- s'
    loss (p["x"])

let rosen (x: Tensor) = (1.0 - x[0]).square() + 100.0 * (x[1] - x[0].square()).square()

/// d(loss)/d(h) by autograd, where the optimizer is built from the tensor h.
let hypergrad (make: Tensor -> Transformation) (h0: float) loss x0 steps =
    let h = torch.tensor(h0, dtype = f64, requires_grad = true)
    let l = unrolledLoss (make h) loss x0 steps
    let g = torch.autograd.grad([| l |], [| h |])
    g[0].ToDouble()

/// The loss after unrolled steps without a graph.
let unrolledLossNoGrad (opt: Transformation) (loss: Tensor -> Tensor) (x0: float list) (steps: int) =
    let mutable p = tree1 x0
    let mutable s = opt.Init p
    for _ in 1..steps do
        let x = p["x"].detach().requires_grad_(true)
        let g = torch.autograd.grad([| loss x |], [| x |])
        let p', s' = Transform.step opt (Tree.single "x" g[0]) s (Tree.single "x" (x.detach()))
        p <- p'
        s <- s'
    (loss (p["x"])).ToDouble()

/// The same derivative by central finite differences (float64).
let finiteDiff (make: Tensor -> Transformation) (h0: float) loss x0 steps =
    let at (v: float) =
        let h = torch.tensor(v, dtype = f64)
        unrolledLossNoGrad (make h) loss x0 steps
    let d = 1e-6 * max 1.0 (abs h0)
    (at (h0 + d) - at (h0 - d)) / (2.0 * d)

[<Tests>]
let tests =
    testList "native" [
        testCase "LibTorch loads and a tensor can be created" <| fun () ->
            use t = torch.ones(3L)
            Expect.equal (t.sum().ToDouble()) 3.0 "sum of three ones"

        testCase "second-order gradient through two unrolled SGD steps equals the closed form" <| fun () ->
            // f(x) = a/2 x^2; two steps give x2 = x0 (1 - lr a)^2, so
            // L = a/2 x0^2 (1 - lr a)^4 and dL/dlr = -2 a^2 x0^2 (1 - lr a)^3.
            let a, x0, lr = 3.0, 2.0, 0.1
            let make (h: Tensor) = Sgd.create { Sgd.defaults with Lr = Hyper.Learnable h }
            let g = hypergrad make lr (fun x -> 0.5 * a * x.square().sum()) [ x0 ] 2
            let expected = -2.0 * a * a * x0 * x0 * (1.0 - lr * a) ** 3.0
            Expect.floatClose Accuracy.veryHigh g expected "dL/dlr"

        testCase "hypergradients through unrolled Adam steps match finite differences" <| fun () ->
            let loss = rosen
            let x0 = [ -1.5; 2.0 ]
            let lrMake (h: Tensor) = Adam.create { Adam.defaults with Lr = Hyper.Learnable h }
            let b1Make (h: Tensor) = Adam.create { Adam.defaults with Lr = Hyper.Fixed 0.01; Beta1 = Hyper.Learnable h }
            let b2Make (h: Tensor) = Adam.create { Adam.defaults with Lr = Hyper.Fixed 0.01; Beta2 = Hyper.Learnable h }
            for name, make, h0 in [ "lr", lrMake, 0.01; "beta1", b1Make, 0.9; "beta2", b2Make, 0.999 ] do
                let g = hypergrad make h0 loss x0 5
                let fd = finiteDiff make h0 loss x0 5
                Expect.floatClose { absolute = 1e-7; relative = 1e-5 } g fd $"dL/d{name} after 5 Adam steps"
    ]
