namespace Optimizers.Experiments

open System
open TorchSharp
open Optimizers
open Optimizers.Handcrafted

/// Issue 15's unroll measurements for `bench`: differentiating through T steps of Adam, the work a
/// hypergradient of lr or beta1 does. The problem is the quadratic 0.5 sum a p^2 with fixed
/// positive curvatures a; its gradient a p is computed as a tensor op from the parameters, so the
/// graph runs through every step's gradient as it does in meta-training. lr and beta1 are 0-d
/// tensors that require grad; the meta-loss is the quadratic at the last step. `step` is
/// Transform.step with the differentiable fused step on, or Transform.stepOps (op by op).
module Unroll =

    /// The parameters and curvatures (float32, seeded) of `sizes`.
    let problem (seed: int) (sizes: int[]) : Tree * Tree =
        use gen = new torch.Generator(uint64 seed)
        let names = sizes |> Array.mapi (fun i _ -> $"t{i}")
        let make (f: Tensor -> Tensor) =
            { Names = names
              Values = sizes |> Array.map (fun n -> (f (torch.randn([| int64 n |], generator = gen))).DetachFromDisposeScope()) }
        make (fun x -> Tensors.mulNum x 0.1), make (fun x -> Tensors.addNum (x.abs ()) 0.1)

    /// Adam (torch.optim.Adam's defaults) with lr and beta1 as the given tensors.
    let adam (lr: Tensor) (beta1: Tensor) : Transformation =
        Adam.create { Adam.defaults with Lr = Hyper.Learnable lr; Beta1 = Hyper.Learnable beta1 }

    /// The meta-loss of one unroll of `horizon` steps from `start` (graph recorded).
    let metaLoss (step: Transformation -> Tree -> State -> Tree -> Tree * State) (opt: Transformation) (curvature: Tree) (start: Tree) (horizon: int) : Tensor =
        let mutable p = start
        let mutable s = opt.Init start
        for _ in 1 .. horizon do
            let g = Tree.map2 (fun (a: Tensor) (x: Tensor) -> a * x) curvature p
            let p', s' = step opt g s p
            p <- p'
            s <- s'
        Array.map2 (fun (a: Tensor) (x: Tensor) -> (a * x * x).sum ()) curvature.Values p.Values
        |> Array.reduce Tensors.add
        |> fun l -> Tensors.mulNum l 0.5

    /// One unroll as a timed step: forward alone, or forward and backward (the hypergradients of lr
    /// and beta1 accumulate into their .grad, cleared each time). Its graph and outputs are freed
    /// with its DisposeScope, then the allocator guard runs, as after a meta-iteration.
    let once (step: Transformation -> Tree -> State -> Tree -> Tree * State) (backward: bool) (lr: Tensor) (beta1: Tensor)
             (curvature: Tree) (start: Tree) (horizon: int) : unit -> unit =
        let opt = adam lr beta1
        fun () ->
            do
                use _ = torch.NewDisposeScope()
                use _ = torch.enable_grad ()
                let loss = metaLoss step opt curvature start horizon
                if backward then
                    loss.backward ()
                    for h in [ lr; beta1 ] do
                        if not (isNull h.grad) then h.grad.zero_ () |> ignore
            Memory.afterStep ()

    /// The hyperparameter leaves of an unroll: lr = 1e-3, beta1 = 0.9 (float32, requiring grad).
    let leaves () : Tensor * Tensor =
        torch.tensor(1e-3f, requires_grad = true).DetachFromDisposeScope(), torch.tensor(0.9f, requires_grad = true).DetachFromDisposeScope()

    /// The hypergradients (lr, beta1) of one unroll, for checking that the forms agree.
    let hypergradients (step: Transformation -> Tree -> State -> Tree -> Tree * State) (curvature: Tree) (start: Tree) (horizon: int) : float * float * float =
        let lr, beta1 = leaves ()
        try
            use _ = torch.NewDisposeScope()
            use _ = torch.enable_grad ()
            let loss = metaLoss step (adam lr beta1) curvature start horizon
            loss.backward ()
            loss.ToDouble(), lr.grad.ToDouble(), beta1.grad.ToDouble()
        finally
            lr.Dispose()
            beta1.Dispose()
