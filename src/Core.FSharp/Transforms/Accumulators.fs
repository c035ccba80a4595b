namespace Optimizers.Transforms

open TorchSharp
open Optimizers

/// Adagrad's and RMSProp's scalings: a per-coordinate accumulator of squared gradients.
module Accumulators =

    /// Adagrad's accumulator (Duchi et al. 2011; torch.optim.Adagrad):
    ///   s_t = s_{t-1} + g_t^2 with s_0 = initialAccumulator,   out = g_t / (sqrt(s_t) + eps)
    let adagrad (initialAccumulator: float) (eps: float) : Transformation =
        let name = "scale_by_adagrad"
        let init (p: Tree) = State.withSlots name [ "sum", Tree.map (fun x -> torch.full_like(x, Scalar.op_Implicit initialAccumulator)) p ]
        let update (u: Tree) (s: State) (_: Tree) =
            let sum' = Tree.map2 (fun a g -> Tensors.add a (g * g)) (s.Slot "sum") u
            let out = Tree.map2 (fun g a -> g / Tensors.addNum (a.sqrt()) eps) u sum'
            out, { s with Count = s.Count + 1; Slots = Map.ofList [ "sum", sum' ] }
        Transform.create name init update

    /// RMSProp's scaling (Hinton et al. 2012; torch.optim.RMSprop):
    ///   v_t = a v_{t-1} + (1 - a) g_t^2
    ///   centered: gbar_t = a gbar_{t-1} + (1 - a) g_t,  d_t = sqrt(v_t - gbar_t^2) + eps
    ///   otherwise d_t = sqrt(v_t) + eps;   out = g_t / d_t
    let rmsprop (alpha: Hyper) (eps: float) (centered: bool) : Transformation =
        let name = "scale_by_rms"
        let init (p: Tree) =
            State.withSlots name
                [ yield "square_avg", Tree.zerosLike p
                  if centered then yield "grad_avg", Tree.zerosLike p ]
        let update (u: Tree) (s: State) (_: Tree) =
            let a = Hyper.at s.Count alpha
            let sq' = Moments.second a (s.Slot "square_avg") u
            let slots, avg =
                if centered then
                    let ga' = Moments.first a (s.Slot "grad_avg") u
                    [ "square_avg", sq'; "grad_avg", ga' ], Tree.map2 (fun v m -> Tensors.addNum ((Tensors.sub v (m * m)).sqrt()) eps) sq' ga'
                else [ "square_avg", sq' ], Tree.map (fun v -> Tensors.addNum (v.sqrt()) eps) sq'
            Tree.map2 (fun g d -> g / d) u avg, { s with Count = s.Count + 1; Slots = Map.ofList slots }
        Transform.create name init update
