namespace Optimizers.Transforms

open System
open TorchSharp
open Optimizers

/// The Adam family's moment scalings (Adam, AMSGrad, Adamax, Nadam, RAdam, AdaBound, SWATS),
/// all on the one pair of moving averages below.
module Moments =

    let private num (v: float) = HValue.Num v

    /// The first moving average of the Adam family (and RMSProp's centred mean):
    ///   m_t = b1 m_{t-1} + (1 - b1) g_t
    let first (b1: HValue) (m: Tree) (g: Tree) : Tree =
        Tree.map2 (fun m g -> Tensors.add (b1 * m) ((1.0 - b1) * g)) m g

    /// The second moving average, in the operation order of every fused kernel:
    ///   v_t = b2 v_{t-1} + (1 - b2) (g_t g_t)
    let second (b2: HValue) (v: Tree) (g: Tree) : Tree =
        Tree.map2 (fun v g -> Tensors.add (b2 * v) ((1.0 - b2) * (g * g))) v g

    /// Both averages over a state's "exp_avg" and "exp_avg_sq" slots.
    let both (b1: HValue) (b2: HValue) (s: State) (g: Tree) : Tree * Tree =
        first b1 (s.Slot "exp_avg") g, second b2 (s.Slot "exp_avg_sq") g

    /// Adam's moment scaling (Kingma and Ba 2015, in torch.optim.Adam's operation order):
    ///   m_t = b1 m_{t-1} + (1 - b1) g_t,   v_t = b2 v_{t-1} + (1 - b2) g_t^2
    ///   out = (m_t / (1 - b1^t)) / (sqrt(v_t) / sqrt(1 - b2^t) + eps)
    /// With epsRoot > 0 the denominator is sqrt(v_t / (1 - b2^t) + epsRoot) + eps (optax's
    /// eps_root), whose derivative stays finite at v = 0 when meta-differentiating.
    let adam (beta1: Hyper) (beta2: Hyper) (eps: float) (epsRoot: float) : Transformation =
        let name = "scale_by_adam"
        let init p = State.withSlots name [ "exp_avg", Tree.zerosLike p; "exp_avg_sq", Tree.zerosLike p ]
        let update (u: Tree) (s: State) (_: Tree) =
            let t = s.Count + 1
            let b1 = Hyper.at s.Count beta1
            let b2 = Hyper.at s.Count beta2
            let bc1 = 1.0 - HValue.pow t b1
            let bc2 = 1.0 - HValue.pow t b2
            let m', v' = both b1 b2 s u
            let out =
                Tree.map2 (fun m v ->
                    let denom =
                        if epsRoot = 0.0 then Tensors.addNum (v.sqrt() / HValue.sqrt bc2) eps
                        else Tensors.addNum (Tensors.safeSqrt epsRoot (v / bc2)) eps
                    (m / denom) / bc1) m' v'
            out, { s with Count = t; Slots = Map.ofList [ "exp_avg", m'; "exp_avg_sq", v' ] }
        Transform.create name init update

    /// Adamax's scaling (Kingma and Ba 2015, sec. 7.1; torch.optim.Adamax):
    ///   m_t = b1 m_{t-1} + (1 - b1) g_t,   u_t = max(b2 u_{t-1}, |g_t| + eps)
    ///   out = (m_t / u_t) / (1 - b1^t)
    let adamax (beta1: Hyper) (beta2: Hyper) (eps: float) : Transformation =
        let name = "scale_by_adamax"
        let init (p: Tree) = State.withSlots name [ "exp_avg", Tree.zerosLike p; "exp_inf", Tree.zerosLike p ]
        let update (u: Tree) (s: State) (_: Tree) =
            let t = s.Count + 1
            let b1 = Hyper.at s.Count beta1
            let b2 = Hyper.at s.Count beta2
            let bc1 = 1.0 - HValue.pow t b1
            let m' = first b1 (s.Slot "exp_avg") u
            let inf' = Tree.map2 (fun n g -> torch.maximum(b2 * n, Tensors.addNum (g.abs()) eps)) (s.Slot "exp_inf") u
            let out = Tree.map2 (fun m n -> (m / n) / bc1) m' inf'
            out, { s with Count = t; Slots = Map.ofList [ "exp_avg", m'; "exp_inf", inf' ] }
        Transform.create name init update

    /// AMSGrad's scaling (Reddi et al., ICLR 2018): Adam's moments with the running maximum of
    /// the second moment, vmax_t = max(vmax_{t-1}, v_t).
    ///   debias = true (torch.optim.Adam with amsgrad=True):
    ///       out = (m_t / (1 - b1^t)) / (sqrt(vmax_t) / sqrt(1 - b2^t) + eps)
    ///   debias = false (Reddi et al.'s Algorithm 2, the lecture seed 003's form):
    ///       out = m_t / (sqrt(vmax_t) + eps)
    /// epsRoot > 0 puts a constant inside the square root as in Moments.adam.
    let amsgrad (beta1: Hyper) (beta2: Hyper) (eps: float) (epsRoot: float) (debias: bool) : Transformation =
        let name = "scale_by_amsgrad"
        let init (p: Tree) =
            State.withSlots name [ "exp_avg", Tree.zerosLike p; "exp_avg_sq", Tree.zerosLike p; "max_exp_avg_sq", Tree.zerosLike p ]
        let update (u: Tree) (s: State) (_: Tree) =
            let t = s.Count + 1
            let b1 = Hyper.at s.Count beta1
            let b2 = Hyper.at s.Count beta2
            let m', v' = both b1 b2 s u
            let vmax' = Tree.map2 (fun a b -> torch.maximum(a, b)) (s.Slot "max_exp_avg_sq") v'
            let out =
                if debias then
                    let bc1 = 1.0 - HValue.pow t b1
                    let bc2 = 1.0 - HValue.pow t b2
                    Tree.map2 (fun m v ->
                        let denom =
                            if epsRoot = 0.0 then Tensors.addNum (v.sqrt() / HValue.sqrt bc2) eps
                            else Tensors.addNum (Tensors.safeSqrt epsRoot (v / bc2)) eps
                        (m / denom) / bc1) m' vmax'
                else
                    Tree.map2 (fun m v -> m / Tensors.addNum (Tensors.safeSqrt epsRoot v) eps) m' vmax'
            out, { s with Count = t; Slots = Map.ofList [ "exp_avg", m'; "exp_avg_sq", v'; "max_exp_avg_sq", vmax' ] }
        Transform.create name init update

    /// AdaBound's bounds on the effective learning rate at step t >= 1 (Luo et al., ICLR 2019,
    /// reference implementation): final * (1 - 1 / (gamma t + 1)) and final * (1 + 1 / (gamma t)).
    /// Both tend to `final`: the lower from below, the upper from above.
    let adaboundBounds (finalLr: HValue) (gamma: HValue) (t: int) : HValue * HValue =
        let tt = num (float t)
        finalLr * (1.0 - num 1.0 / (gamma * tt + num 1.0)), finalLr * (num 1.0 + num 1.0 / (gamma * tt))

    /// AdaBound's (and AMSBound's) clipped step, transcribing the reference implementation
    /// (github.com/Luolc/AdaBound, adabound.py):
    ///   m_t, v_t as Adam (vmax_t = max(vmax_{t-1}, v_t) for AMSBound),  d_t = sqrt(v_t) + eps
    ///   eta_t = lr sqrt(1 - b2^t) / (1 - b1^t) / d_t,  clipped into adaboundBounds (final_lr lr_t / lr_0) gamma t
    ///   out = eta_t * m_t   (a descent step: the caller negates it)
    /// The learning rate is inside the clip, because the bounds are absolute learning rates.
    /// final_lr follows a scheduled lr by lr_t / lr_0 as the reference does under a scheduler.
    let adabound (lr: Hyper) (beta1: Hyper) (beta2: Hyper) (finalLr: Hyper) (gamma: Hyper) (eps: float) (amsbound: bool) : Transformation =
        let name = "scale_by_adabound"
        let init (p: Tree) =
            State.withSlots name
                [ yield "exp_avg", Tree.zerosLike p
                  yield "exp_avg_sq", Tree.zerosLike p
                  if amsbound then yield "max_exp_avg_sq", Tree.zerosLike p ]
        let update (u: Tree) (s: State) (_: Tree) =
            let k = s.Count
            let t = k + 1
            let b1 = Hyper.at k beta1
            let b2 = Hyper.at k beta2
            let a = Hyper.at k lr
            let m', v' = both b1 b2 s u
            let vmax' = if amsbound then Some(Tree.map2 (fun a b -> torch.maximum(a, b)) (s.Slot "max_exp_avg_sq") v') else None
            let bc1 = 1.0 - HValue.pow t b1
            let bc2 = 1.0 - HValue.pow t b2
            let stepSize = a * HValue.sqrt bc2 / bc1
            let lo, hi = adaboundBounds (Hyper.at k finalLr * a / Hyper.at 0 lr) (Hyper.at k gamma) t
            let out =
                Tree.map2 (fun m v -> (ScaleBy.divInto stepSize (Tensors.addNum (v.sqrt()) eps) |> ScaleBy.clampH lo hi) * m) m' (defaultArg vmax' v')
            let slots =
                [ yield "exp_avg", m'
                  yield "exp_avg_sq", v'
                  match vmax' with Some x -> yield "max_exp_avg_sq", x | None -> () ]
            out, { s with Count = t; Slots = Map.ofList slots }
        Transform.create name init update

    /// RAdam's length of the approximated simple moving average at step t (Liu et al., ICLR 2020):
    ///   rho_inf = 2 / (1 - b2) - 1,   rho_t = rho_inf - 2 t b2^t / (1 - b2^t)
    let radamRho (b2: HValue) (t: int) : HValue * HValue =
        let rhoInf = num 2.0 / (1.0 - b2) - num 1.0
        rhoInf, rhoInf - num (2.0 * float t) * HValue.pow t b2 / (1.0 - HValue.pow t b2)

    /// RAdam's scaling (Liu et al., ICLR 2020; torch.optim.RAdam):
    ///   m_t, v_t as Adam,  mhat_t = m_t / (1 - b1^t)
    ///   rho_t > threshold:  r_t = sqrt((rho_t - 4)(rho_t - 2) rho_inf / ((rho_inf - 4)(rho_inf - 2) rho_t))
    ///                       out = mhat_t * (sqrt(1 - b2^t) / (sqrt(v_t) + eps)) * r_t
    ///   otherwise:          out = mhat_t   (un-rectified: bias-corrected momentum SGD)
    let radam (beta1: Hyper) (beta2: Hyper) (eps: float) (threshold: float) : Transformation =
        let name = "scale_by_radam"
        let init (p: Tree) = State.withSlots name [ "exp_avg", Tree.zerosLike p; "exp_avg_sq", Tree.zerosLike p ]
        let update (u: Tree) (s: State) (_: Tree) =
            let t = s.Count + 1
            let b1 = Hyper.at s.Count beta1
            let b2 = Hyper.at s.Count beta2
            let m', v' = both b1 b2 s u
            let bc1 = 1.0 - HValue.pow t b1
            let bc2 = 1.0 - HValue.pow t b2
            let rhoInf, rhoT = radamRho b2 t
            let out =
                if HValue.toFloat rhoT > threshold then
                    let rect =
                        HValue.sqrt ((rhoT - num 4.0) * (rhoT - num 2.0) * rhoInf
                                     / ((rhoInf - num 4.0) * (rhoInf - num 2.0) * rhoT))
                    Tree.map2 (fun m v ->
                        let adaptive = (v.sqrt() + eps).reciprocal() * HValue.sqrt bc2
                        (m / bc1) * adaptive * rect) m' v'
                else Tree.map (fun m -> m / bc1) m'
            out, { s with Count = t; Slots = Map.ofList [ "exp_avg", m'; "exp_avg_sq", v' ] }
        Transform.create name init update

    /// Nadam's momentum schedule (Dozat 2016; torch.optim.NAdam): mu_t = b1 (1 - 0.5 * 0.96^(t psi)).
    let nadamMu (b1: HValue) (momentumDecay: float) (t: int) : HValue =
        b1 * (num 1.0 - num 0.5 * num (Math.Pow(0.96, float t * momentumDecay)))

    /// Nadam's scaling (Dozat, ICLR workshop 2016), as torch.optim.NAdam computes it with its
    /// default single-tensor code (PyTorch 1.13, Debian's python3-torch, which the reference
    /// trajectories in tests/reference come from):
    ///   mu_t as nadamMu,  P_t = P_{t-1} mu_t (P_0 = 1, the state scalar "mu_product")
    ///   m_t, v_t as Adam,  d_t = sqrt(v_t / (1 - b2^t)) + eps
    ///   out = (1 - mu_t) / (1 - P_t) * g_t / d_t + mu_{t+1} / (1 - P_t mu_t mu_{t+1}) * m_t / d_t
    /// The momentum term's product is P_t mu_t mu_{t+1} (torch's `mu_product_next = mu_product *
    /// mu * mu_next` after `mu_product *= mu`), not the paper's P_t mu_{t+1}: PyTorch 2.0 changed
    /// it to P_t mu_{t+1} (pytorch/pytorch#92699; 1.13's foreach code already had it). The two
    /// differ only while P_t is not negligible (the first few dozen steps), but that moves a
    /// 200-step Rosenbrock trajectory by about 3e-4 (relative).
    let nadam (beta1: Hyper) (beta2: Hyper) (eps: float) (momentumDecay: float) : Transformation =
        let name = "scale_by_nadam"
        let init (p: Tree) =
            { State.withSlots name [ "exp_avg", Tree.zerosLike p; "exp_avg_sq", Tree.zerosLike p ] with
                Scalars = Map.ofList [ "mu_product", ScaleBy.scalarLike p 1.0 ] }
        let update (u: Tree) (s: State) (_: Tree) =
            let t = s.Count + 1
            let b1 = Hyper.at s.Count beta1
            let b2 = Hyper.at s.Count beta2
            let bc2 = 1.0 - HValue.pow t b2
            let mu = nadamMu b1 momentumDecay t
            let muNext = nadamMu b1 momentumDecay (t + 1)
            let prev = s.Scalar "mu_product"
            // Numbers stay numbers unless a hyperparameter (or the stored product) carries a graph.
            let prevH = if prev.requires_grad then HValue.Ten prev else HValue.Num(prev.ToDouble())
            let prod = prevH * mu
            let prodNext = prod * mu * muNext
            let m', v' = both b1 b2 s u
            let c1 = (num 1.0 - mu) / (num 1.0 - prod)
            let c2 = muNext / (num 1.0 - prodNext)
            let out =
                Tree.map3 (fun g m v ->
                    let d = (v / bc2).sqrt() + eps
                    c1 * g / d + c2 * m / d) u m' v'
            let prodT =
                match prod with
                | HValue.Num x -> torch.tensor(x, dtype = prev.dtype, device = prev.device)
                | HValue.Ten x -> x
            out, { s with Count = t; Slots = Map.ofList [ "exp_avg", m'; "exp_avg_sq", v' ]; Scalars = Map.ofList [ "mu_product", prodT ] }
        Transform.create name init update

    /// The sum over a tree of element-wise products, as a 0-d tensor.
    let private dot (a: Tree) (b: Tree) : Tensor =
        if a.Count = 0 then torch.tensor(0.0, dtype = torch.ScalarType.Float64)
        else
            Array.map2 (fun (x: Tensor) (y: Tensor) -> (x * y).sum()) a.Values b.Values
            |> Array.reduce (fun x y -> x + y)

    /// SWATS (Keskar and Socher 2017, Algorithm 1): Adam until the switch, then SGD with momentum
    /// at the learning rate Adam's steps imply. With k the step (from 1):
    ///   Adam phase:  m_k, a_k as Adam;  s_k = lr sqrt(1 - b2^k) / (1 - b1^k) * m_k / (sqrt(a_k) + eps)
    ///                out = s_k (the descent step, p_k = -s_k in the paper);  when s_k . g_k <> 0:
    ///                gamma_k = (s_k . s_k) / (s_k . g_k),   lambda_k = b2 lambda_{k-1} + (1 - b2) gamma_k
    ///                switch when k > 1 and |lambda_k / (1 - b2^k) - gamma_k| < switchEps:
    ///                Lambda = lambda_k / (1 - b2^k), the SGD buffer starts from 0
    ///   SGD phase:   v_k = b1 v_{k-1} + g_k,   out = (1 - b1) Lambda v_k
    /// The projection and the switch are global (dot products over all parameters), as in the
    /// paper's algorithm. Scalars of the state: "lambda", "sgd_lr" (Lambda), "switch_step" (the k
    /// at which it switched, 0 while in the Adam phase).
    let swats (lr: Hyper) (beta1: Hyper) (beta2: Hyper) (eps: float) (switchEps: float) : Transformation =
        let name = "scale_by_swats"
        let init (p: Tree) =
            { State.withSlots name [ "exp_avg", Tree.zerosLike p; "exp_avg_sq", Tree.zerosLike p; "momentum_buffer", Tree.zerosLike p ] with
                Scalars = Map.ofList [ "lambda", ScaleBy.scalarLike p 0.0; "sgd_lr", ScaleBy.scalarLike p 0.0; "switch_step", ScaleBy.scalarLike p 0.0 ] }
        let update (u: Tree) (s: State) (_: Tree) =
            let k = s.Count + 1
            let b1 = Hyper.at s.Count beta1
            let b2 = Hyper.at s.Count beta2
            let switched = (s.Scalar "switch_step").ToDouble() > 0.0
            if switched then
                let sgdLr = s.Scalar "sgd_lr"
                let buf' = Tree.map2 (fun v g -> b1 * v + g) (s.Slot "momentum_buffer") u
                let out = Tree.map (fun v -> (1.0 - b1) * sgdLr * v) buf'
                out, { s with Count = k; Slots = s.Slots.Add("momentum_buffer", buf') }
            else
                let a = Hyper.at s.Count lr
                let m', v' = both b1 b2 s u
                let bc1 = 1.0 - HValue.pow k b1
                let bc2 = 1.0 - HValue.pow k b2
                let stepSize = a * HValue.sqrt bc2 / bc1
                let out = Tree.map2 (fun m v -> stepSize * m / (v.sqrt() + eps)) m' v'
                let slots = s.Slots.Add("exp_avg", m').Add("exp_avg_sq", v')
                let sg = dot out u
                if sg.ToDouble() = 0.0 then out, { s with Count = k; Slots = slots }
                else
                    let gamma = dot out out / sg
                    let lambda' = b2 * s.Scalar "lambda" + (1.0 - b2) * gamma
                    let estimate = lambda' / bc2
                    let doSwitch = k > 1 && abs (estimate.ToDouble() - gamma.ToDouble()) < switchEps
                    let scalars =
                        s.Scalars.Add("lambda", lambda')
                        |> fun m ->
                            if doSwitch then m.Add("sgd_lr", estimate).Add("switch_step", torch.tensor(float k, dtype = torch.ScalarType.Float64, device = estimate.device))
                            else m
                    out, { s with Count = k; Slots = slots; Scalars = scalars }
        Transform.create name init update
