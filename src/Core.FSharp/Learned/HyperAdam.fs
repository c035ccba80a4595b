namespace Optimizers.Learned

open TorchSharp
open Optimizers

/// Options of HyperAdam.
type HyperAdamOptions =
    { /// The number J of candidate moments (decay-rate pairs).
      J: int
      /// Hidden size of the StateCell's FC and LSTM.
      Hidden: int
      /// Step size alpha.
      Lr: float
      /// Epsilon of the moment field.
      Eps: float }

/// HyperAdam (Wang, Sun and Xu, "HyperAdam: A Learnable Task-Adaptive Adam for Network
/// Training", AAAI 2019; seed 000, Algorithm 2), coordinate-wise and shared across parameters,
/// in the layout of the authors' code (ShipengWang/HyperAdam, AdamLstmAdaWeightOptModel):
///   StateCell:  x_t = ELU(FC(g_t / ||g_t||)), s_t = LSTM(x_t, s_{t-1})          (hidden H)
///   AdamCell:   [beta_t, gamma_t] = sigmoid([n(s_t), n(m_{t-1})] Theta_u + b_u)   (J each;
///               n(.) divides each column by its norm over the coordinates)
///               m_t = beta_t m_{t-1} + (1 - beta_t) g_t,  v_t = gamma_t v_{t-1} + (1 - gamma_t) g_t^2
///               beta-hat_t = beta_t beta-hat_{t-1} + (1 - beta_t), gamma-hat likewise (from 0)
///               m-hat_t = (m_t / (beta-hat_t + eps)) / sqrt(v_t / (gamma-hat_t + eps) + eps)   (moment field)
///   WeightCell: rho_t = ELU(s_t Theta_q + b_q)                                      (weight field)
///   update:     d_t = sum_j rho_t^j m-hat_t^j,   w_t = w_{t-1} - alpha d_t
/// eps = 1e-24 as in the paper. The AdamCell's moments and the update's sum are one autograd
/// function with a hand-written backward (MomentField) for float32 CPU tensors. The gradient is
/// normalised by its Euclidean norm over all coordinates, so the state, and hence the update, is
/// invariant to the gradient's scale.
/// With J = 1, constant decay rates (Theta_u = 0, b_u = logit of the rates) and rho = 1
/// (Theta_q = 0, b_q = 1, ELU(1) = 1) it is Adam with eps inside the square root.
module HyperAdam =

    /// The paper's: J = 20, hidden 20, alpha = 0.005, eps = 1e-24.
    let defaults : HyperAdamOptions = { J = 20; Hidden = 20; Lr = 0.005; Eps = 1e-24 }

    let validate (o: HyperAdamOptions) =
        if o.J < 1 then Tensors.invalidArg "j" $"hyperadam: j = {o.J} is invalid; it must be >= 1"
        if o.Hidden < 1 then Tensors.invalidArg "hidden" $"hyperadam: hidden = {o.Hidden} is invalid; it must be >= 1"
        Hyper.checkFloat "hyperadam" "lr" (fun v -> v > 0.0) "> 0" o.Lr
        Hyper.checkFloat "hyperadam" "eps" (fun v -> v > 0.0) "> 0" o.Eps

    let fields : Field<HyperAdamOptions> list =
        [ Field.integer "j" (fun o -> o.J) (fun o v -> { o with J = v }) "number J of candidate moments (decay-rate pairs)"
          Field.integer "hidden" (fun o -> o.Hidden) (fun o v -> { o with Hidden = v }) "hidden size of the StateCell's FC and LSTM"
          Field.number "lr" (fun o -> o.Lr) (fun o v -> { o with Lr = v }) "step size alpha"
          Field.number "eps" (fun o -> o.Eps) (fun o v -> { o with Eps = v }) "epsilon of the moment field" ]

    /// Fresh Theta: Glorot-uniform kernels and zero biases (TensorFlow's defaults, as the authors').
    let initTheta (o: HyperAdamOptions) (seed: int) : Tree =
        validate o
        let j, h = o.J, o.Hidden
        let gen = LearnedOptimizer.generator seed
        Tree.ofSeq
            [ "state.fc.w", Cells.glorot gen 1 h
              "state.fc.b", Cells.zeros h
              "state.lstm.kernel", Cells.glorot gen (2 * h) (4 * h)
              "state.lstm.bias", Cells.zeros (4 * h)
              "adam.kernel", Cells.glorot gen (h + j) (2 * j)
              "adam.bias", Cells.zeros (2 * j)
              "weight.w", Cells.glorot gen h j
              "weight.b", Cells.zeros j ]

    /// Theta at which HyperAdam is Adam at rate `lr` with decay rates `beta1`, `beta2`, up to a
    /// perturbation of size `noise`: every candidate's rates are the constants (b_u = their logits)
    /// and every weight is lr / (alpha J) (b_q; ELU is the identity there), so the J terms sum to
    /// Adam's step. The kernels are fresh ones from `seed` (Theta_u's as drawn, since the column
    /// normalisation already makes its inputs small; Theta_q's scaled by `noise`): with noise = 0
    /// and Theta_u = 0 it is Adam exactly, and a small noise breaks the symmetry between the J
    /// candidates so that meta-training can move them apart. A start at tuned Adam for meta-training.
    let adamTheta (o: HyperAdamOptions) (seed: int) (lr: float) (beta1: float) (beta2: float) (noise: float) : Tree =
        let j = o.J
        let check name v = Hyper.checkFloat "hyperadam" name (fun v -> v > 0.0 && v < 1.0) "in (0, 1)" v
        check "beta1" beta1
        check "beta2" beta2
        Hyper.checkFloat "hyperadam" "lr" (fun v -> v > 0.0) "> 0" lr
        Hyper.checkFloat "hyperadam" "noise" (fun v -> v >= 0.0) ">= 0" noise
        let logit (p: float) = log (p / (1.0 - p))
        let weight = lr / (o.Lr * float j)
        initTheta o seed
        |> Tree.mapi (fun name x ->
            match name with
            | "adam.kernel" when noise = 0.0 -> torch.zeros_like x
            | "adam.bias" -> torch.tensor(Array.append (Array.create j (float32 (logit beta1))) (Array.create j (float32 (logit beta2))))
            | "weight.w" -> x * noise
            | "weight.b" -> torch.ones_like x * weight
            | _ -> x)

    /// The HyperAdam optimizer that Theta defines.
    let create (o: HyperAdamOptions) (theta: Tree) : Transformation =
        validate o
        let j, h, alpha, eps = o.J, o.Hidden, o.Lr, o.Eps
        let expect name (shape: int list) =
            let t = theta[name]
            if t.shape <> (shape |> List.map int64 |> Array.ofList) then
                Tensors.invalidArg "theta" $"hyperadam: meta-parameter '{name}' has shape {t.shape}, expected {shape} for j = {j}, hidden = {h}"
        expect "state.lstm.kernel" [ 2 * h; 4 * h ]
        expect "adam.kernel" [ h + j; 2 * j ]
        expect "weight.w" [ h; j ]
        let name = "hyperadam"
        let init (p: Tree) =
            let n = Tree.numel p
            let dtype = p.Values[0].dtype
            let z (cols: int) = torch.zeros([| n; int64 cols |], dtype = dtype)
            State.withSlots name [ "cells", Tree.ofSeq [ "h", z h; "c", z h; "m", z j; "v", z j; "beta_hat", z j; "gamma_hat", z j ] ]
        let update (g: Tree) (s: State) (p: Tree) =
            let cells = s.Slot "cells"
            let dtype = p.Values[0].dtype
            let th (name: string) = theta[name].``to``(dtype)
            let gFlat = (Cells.flatten g).unsqueeze(1L)                           // [p, 1]
            let gNorm = gFlat * torch.rsqrt(gFlat.square().sum() + 1e-32)          // g / ||g||
            let x = Tensors.elu (Cells.linear (th "state.fc.w") (th "state.fc.b") gNorm) 1.0
            let hNew, cNew = Cells.lstm (th "state.lstm.kernel") (th "state.lstm.bias") 1.0 x (cells["h"], cells["c"])
            let adamIn = torch.cat([| hNew; cells["m"] |], 1L)
            let z = Cells.normalizedLinear 1e-16 (th "adam.kernel") (th "adam.bias") adamIn
            let q = Cells.linear (th "weight.w") (th "weight.b") hNew
            let r = MomentField.apply eps gFlat cells["m"] cells["v"] cells["beta_hat"] cells["gamma_hat"] z q
            let d = r.D
            let u = LearnedOptimizer.toUpdates p (d * -alpha)
            u,
            { s with
                Count = s.Count + 1
                Slots = Map.ofList [ "cells", Tree.ofSeq [ "h", hNew; "c", cNew; "m", r.M; "v", r.V; "beta_hat", r.BetaHat; "gamma_hat", r.GammaHat ] ] }
        Transform.create name init update

    let registration : LearnedRegistration<HyperAdamOptions> =
        { Kind = "hyperadam"
          Summary = "HyperAdam: J Adams with learned decay rates, combined by learned weights"
          Source = "Wang, Sun and Xu, AAAI 2019 (seed 000)"
          Defaults = defaults
          Fields = fields
          Validate = validate
          InitTheta = initTheta
          Create = create }

    let kind : LearnedKind = LearnedRegistration.kind registration
