namespace Optimizers.Experiments

open System
open TorchSharp
open Optimizers
open Optimizers.Handcrafted

/// An optimizer whose hyperparameters an unroll differentiates: its name, its hyperparameters'
/// names and starting values (float32 0-d tensors that require grad), and the optimizer made with them.
type UnrollSubject = { Name: string; Hypers: (string * float32) list; Make: Tensor list -> Transformation }

/// Issue 15's unroll measurements for `bench`: differentiating through T steps of an optimizer,
/// the work a hypergradient of its lr or beta1 does. The problem is the quadratic 0.5 sum a p^2
/// with fixed positive curvatures a; its gradient a p is computed as a tensor op from the
/// parameters, so the graph runs through every step's gradient as it does in meta-training. The
/// hyperparameters are 0-d tensors that require grad; the meta-loss is the quadratic at the last
/// step. `step` is Transform.step (the differentiable fused step) or Transform.stepOps (op by op).
module Unroll =

    /// The parameters and curvatures (float32, seeded) of `sizes`.
    let problem (seed: int) (sizes: int[]) : Tree * Tree =
        use gen = new torch.Generator(uint64 seed)
        let names = sizes |> Array.mapi (fun i _ -> $"t{i}")
        let make (f: Tensor -> Tensor) =
            { Names = names
              Values = sizes |> Array.map (fun n -> (f (torch.randn([| int64 n |], generator = gen))).DetachFromDisposeScope()) }
        make (fun x -> Tensors.mulNum x 0.1), make (fun x -> Tensors.addNum (x.abs ()) 0.1)

    /// Adam (torch.optim.Adam's defaults) with lr and beta1 learnt.
    let adam : UnrollSubject =
        { Name = "adam"; Hypers = [ "lr", 1e-3f; "beta1", 0.9f ]
          Make = fun hs -> Adam.create { Adam.defaults with Lr = Hyper.Learnable hs[0]; Beta1 = Hyper.Learnable hs[1] } }

    /// An HD optimizer over `model` (hypergradient descent on its global rate alpha_0 = 1e-3 by SGD)
    /// with hypergrad_lr learnt from `beta`.
    let private hd (name: string) (model: Hypergradient.ModelOptimizer) (beta: float32) : UnrollSubject =
        { Name = name; Hypers = [ "hypergrad_lr", beta ]
          Make = fun hs -> Hypergradient.Hd.create { Hypergradient.Hd.forModel model Hypergradient.SgdLop with HypergradLr = Hyper.Learnable hs[0] } }

    /// Adam-HD (Adam whose global rate learns by SGD on the hypergradient; alpha_0 = 1e-3) with
    /// hypergrad_lr learnt.
    let adamHd : UnrollSubject = hd "adam-hd" Hypergradient.AdamOp 1e-7f

    /// SGD-HD and SGDN-HD with hypergrad_lr learnt, from 1e-9: their hypergradient g_t . g_{t-1}
    /// is about 2.4e4 on this problem's 1M parameters (a^2 x^2 summed), so the reference code's
    /// 1e-3 (for MNIST's gradients) would throw the rate past stability in one step.
    let sgdHd, sgdnHd = hd "sgd-hd" Hypergradient.SgdOp 1e-9f, hd "sgdn-hd" Hypergradient.SgdnOp 1e-9f

    let subjects = [ adam; adamHd; sgdHd; sgdnHd ]

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

    /// One unroll as a timed step: forward alone, or forward and backward (the hypergradients
    /// accumulate into the leaves' .grad, cleared each time). Its graph and outputs are freed
    /// with its DisposeScope, then the allocator guard runs, as after a meta-iteration.
    let once (step: Transformation -> Tree -> State -> Tree -> Tree * State) (backward: bool) (subject: UnrollSubject) (hypers: Tensor list)
             (curvature: Tree) (start: Tree) (horizon: int) : unit -> unit =
        let opt = subject.Make hypers
        fun () ->
            do
                use _ = torch.NewDisposeScope()
                use _ = torch.enable_grad ()
                let loss = metaLoss step opt curvature start horizon
                if backward then
                    loss.backward ()
                    for h in hypers do
                        if not (isNull h.grad) then h.grad.zero_ () |> ignore
            Memory.afterStep ()

    /// The hyperparameter leaves of an unroll of `subject` (float32, requiring grad, outside any scope).
    let leaves (subject: UnrollSubject) : Tensor list =
        subject.Hypers |> List.map (fun (_, v) -> torch.tensor(v, requires_grad = true).DetachFromDisposeScope())

    /// The hypergradients of one unroll (in the order of subject.Hypers), for checking that the forms agree.
    let hypergradients (step: Transformation -> Tree -> State -> Tree -> Tree * State) (subject: UnrollSubject) (curvature: Tree) (start: Tree) (horizon: int) : float list =
        let hs = leaves subject
        try
            use _ = torch.NewDisposeScope()
            use _ = torch.enable_grad ()
            let loss = metaLoss step (subject.Make hs) curvature start horizon
            loss.backward ()
            hs |> List.map (fun h -> h.grad.ToDouble())
        finally
            for h in hs do h.Dispose()
