namespace Optimizers.Meta

open TorchSharp
open Optimizers
open Optimizers.Tasks

/// The meta-training tricks of Lv, Jiang and Li (ICML 2017), used by RNNprop and HyperAdam.
module Tricks =

    /// Random scaling: f_c(w) = f(c * w) with c = exp(U(-r, r)) per coordinate, drawn once per
    /// optimizee instance from `seed`; the start is w_0 / c so that c * w starts where f's
    /// own start is. An optimizer trained on many such f_c cannot rely on one gradient scale.
    let randomScaling (r: float) (seed: int) (task: Task) : Task =
        let coefficients (like: Tree) =
            let rng = System.Random(seed)
            like |> Tree.map (fun x ->
                let c = Array.init (int (x.numel())) (fun _ -> exp (r * (2.0 * rng.NextDouble() - 1.0)))
                torch.tensor(c, dtype = x.dtype, device = x.device).reshape(x.shape))
        let mutable cached : Tree option = None
        let coeffs (like: Tree) =
            match cached with
            | Some c -> c
            | None ->
                let c = coefficients like |> Tree.map (fun t -> t.DetachFromDisposeScope())
                cached <- Some c
                c
        { task with
            Name = task.Name + "+scaled"
            Init = fun ti -> let w0 = task.Init ti in Tree.map2 (fun w c -> w / c) w0 (coeffs w0)
            Loss = fun step p -> task.Loss step (Tree.map2 (fun w c -> w * c) p (coeffs p)) }

    /// Combination with a convex function: F(w, z) = f(w) + (1/k) ||z - lambda||^2 over an extra
    /// k-dimensional parameter "convex.z" (starting at 0), with lambda ~ N(0, 1) drawn from `seed`.
    let convexTerm (k: int) (seed: int) (task: Task) : Task =
        let rng = System.Random(seed)
        let lambda = Array.init k (fun _ ->
            let u1, u2 = 1.0 - rng.NextDouble(), rng.NextDouble()
            sqrt (-2.0 * log u1) * cos (2.0 * System.Math.PI * u2))
        let name = "convex.z"
        { task with
            Name = task.Name + "+convex"
            Init = fun ti ->
                let w0 = task.Init ti
                Tree.ofSeq (Seq.append (Tree.toSeq w0) [ name, torch.zeros([| int64 k |], dtype = ti.Dtype, device = ti.Device) ])
            Loss = fun step p ->
                let inner = { Names = p.Names[.. p.Count - 2]; Values = p.Values[.. p.Count - 2] }
                let z = p[name]
                let l = torch.tensor(lambda, dtype = z.dtype, device = z.device)
                task.Loss step inner + (z - l).square().sum() / float k }
