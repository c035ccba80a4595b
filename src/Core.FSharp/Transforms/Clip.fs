namespace Optimizers.Transforms

open TorchSharp
open Optimizers

/// Gradient clipping as transformations: put one first in a chain to clip the raw gradients,
/// e.g. `Combine.chain [ Clip.byGlobalNorm (Hyper.Fixed 1.0) 2.0; Adam.create Adam.defaults ]`.
/// Neither mutates its input; both keep the autograd graph (they can be differentiated through,
/// except at a zero gradient, where a norm has no derivative).
module Clip =

    /// Clip every element to [-c, c] (torch.nn.utils.clip_grad_value_): u <- clamp(u, -c, c).
    /// c must be > 0.
    let byValue (clipValue: Hyper) : Transformation =
        Hyper.checkPositive "clip_by_value" "clip_value" clipValue
        ScaleBy.counted "clip_by_value" (fun t u _ ->
            match Hyper.at t clipValue with
            | HValue.Num c -> Tree.map (fun x -> x.clamp(Scalar.op_Implicit(-c), Scalar.op_Implicit c)) u
            | HValue.Ten c -> Tree.map (fun x -> torch.clamp(x, -c, c)) u)

    /// Scale all updates together so that their global norm is at most maxNorm, exactly as
    /// torch.nn.utils.clip_grad_norm_ (PyTorch 1.13):
    ///   total = || (||u_1||_p, ..., ||u_n||_p) ||_p        (p = normType; p = inf: the largest |element|)
    ///   coef  = min(1, maxNorm / (total + 1e-6)),          u_i <- coef * u_i.
    /// Below the threshold coef is exactly 1 and the updates are unchanged. maxNorm must be > 0
    /// and normType > 0 (or positive infinity).
    let byGlobalNorm (maxNorm: Hyper) (normType: float) : Transformation =
        Hyper.checkPositive "clip_by_global_norm" "max_norm" maxNorm
        Hyper.checkFloat "clip_by_global_norm" "norm_type" (fun v -> v > 0.0) "> 0 (or infinity)" normType
        ScaleBy.counted "clip_by_global_norm" (fun t u _ ->
            if u.Count = 0 then u
            else
                let norms = u.Values |> Array.map (fun x -> torch.linalg.vector_norm(x, normType))
                let total = torch.linalg.vector_norm(torch.stack(norms, 0L), normType)
                let coef =
                    match Hyper.at t maxNorm with
                    | HValue.Num m -> (m / (total + 1e-6)).clamp_max(Scalar.op_Implicit 1.0)
                    | HValue.Ten m -> (m / (total + 1e-6)).clamp_max(Scalar.op_Implicit 1.0)
                Tree.map (fun x -> x * coef) u)

    /// The global norm of a tree (p = normType), as `byGlobalNorm` computes it, as a float.
    let globalNorm (normType: float) (u: Tree) : float =
        if u.Count = 0 then 0.0
        else
            use scope = torch.NewDisposeScope()
            let norms = u.Values |> Array.map (fun x -> torch.linalg.vector_norm(x.detach(), normType))
            torch.linalg.vector_norm(torch.stack(norms, 0L), normType).ToDouble()
