namespace Optimizers.Handcrafted

open TorchSharp
open Optimizers
open Optimizers.Transforms

/// The history matrices of "Learning to Optimize With Normalized Inputs" (thesis seed 004,
/// chapter 3): H_x and H_gradL, each [n, k], one row per coordinate of all parameters flattened
/// in tree order, one column per remembered step (k Timesteps) or per timescale (k Momentums).
/// For k Timesteps the oldest step is column 0 and the newest column k - 1, the layout of the
/// thesis's Table 3.1. Shared by MNG and the learned optimizers of chapter 3.
module History =

    /// All tensors of a tree as one flat vector, in tree order.
    let flatten (t: Tree) : Tensor = torch.cat(t.Values |> Array.map (fun x -> x.reshape(-1L)), 0L)

    /// A flat vector cut back into the shapes of `like`.
    let unflatten (like: Tree) (flat: Tensor) : Tree =
        let sizes = like.Values |> Array.map (fun x -> x.numel())
        let parts = flat.split(sizes, 0L)
        { Names = like.Names; Values = Array.map2 (fun (p: Tensor) (x: Tensor) -> p.reshape(x.shape)) parts like.Values }

    /// An [n, k] matrix of zeros for the parameters `p` (the shape of a history before step 0).
    let zeros (p: Tree) (k: int) : Tensor =
        let first = p.Values[0]
        torch.zeros([| Tree.numel p; int64 k |], dtype = first.dtype, device = first.device)

    /// populate(): every column set to v (thesis Algorithm 1, lines 3-4).
    let populate (k: int) (v: Tensor) : Tensor = v.unsqueeze(1L).repeat(1L, int64 k)

    /// updateHistory() of k Timesteps: drop the oldest column, append v as the newest
    /// (Algorithm 1, lines 11-14).
    let push (h: Tensor) (v: Tensor) : Tensor =
        let k = h.shape[1]
        if k = 1L then v.unsqueeze(1L)
        else torch.cat([| h.narrow(1L, 1L, k - 1L); v.unsqueeze(1L) |], 1L)

    /// updateHistory() of k Momentums (Algorithm 3): m . H + (1 - m) . v, with m the row of k
    /// timescales.
    let decay (m: Tensor) (h: Tensor) (v: Tensor) : Tensor = m * h + (1.0 - m) * v.unsqueeze(1L)

    /// Each row divided by its infinity norm (the largest magnitude in the row), so every entry
    /// is in [-1, 1] (Algorithm 1, lines 17-18). A row of zeros stays zero.
    let normalizeInf (h: Tensor) : Tensor =
        h / h.abs().amax([| 1L |], keepdim = true).clamp_min(Tensors.scalar 1e-30)

    /// x_ref = (max + min) / 2 and x_diff = max - min of each row of H_x (eqs. 3.1, 3.2).
    let refAndDiff (hx: Tensor) : Tensor * Tensor =
        let hi = hx.amax([| 1L |])
        let lo = hx.amin([| 1L |])
        (hi + lo) / 2.0, hi - lo

    /// x_from - dx * (x_diff + eta_min): the update of Algorithm 1 line 24 (x_from = x_ref) and
    /// of eq. 3.5 (x_from = x_t), with the sign of the algorithms (see Mng).
    let shoot (from: Tensor) (dx: Tensor) (diff: Tensor) (etaMin: HValue) : Tensor =
        let reach =
            match etaMin with
            | HValue.Num v -> diff + v
            | HValue.Ten t -> diff + t
        from - dx * reach

/// Options of MNG.
type MngOptions =
    { /// Number of remembered steps k (the thesis: 5 on the toy problems, 10 on MNIST).
      K: int
      /// The minimum learning rate eta_min added to x_diff (eq. 3.4); a schedule or a tensor too.
      EtaMin: Hyper
      /// Use only the gradients' signs instead of the infinity-normalised gradients (Figure 3.4).
      SignOnly: bool }

/// MNG, the Mean Normalized Gradient (Shahid, "Learning to Optimize Deep Neural Networks",
/// master's thesis, Freiburg 2017 (seed 004), section 3.4.1, Algorithm 1). Coordinate-wise, with
/// k-step histories H_x of the parameters and H_g of the gradients:
///   step 0:   H_x <- populate(x_0), H_g <- populate(g_0)        (every column the same)
///   step t>0: H_x <- push(H_x, x_t), H_g <- push(H_g, g_t)      (drop the oldest)
///   H-bar = H_g / ||H_g,i||_inf row-wise  (sign(H_g) with sign_only),   dx = mean of the row
///   x_ref = (max H_x + min H_x) / 2,  x_diff = max H_x - min H_x
///   x_{t+1} = x_ref - dx * (x_diff + eta_min)
/// The update returned is x_{t+1} - x_t. There is no learning rate: x_diff is the adaptive step
/// and eta_min the floor that lets step 0 (where x_diff = 0) move at all.
/// Readings of the extracted text: (1) the sign: equations 3.3-3.5 write x_ref + dx (...), the
/// algorithms x_ref - dx (...); we take the algorithms' minus, so that dx has the sign of the
/// gradients as in Table 3.1 (all gradients +1 give dx = +1); (2) Algorithm 1 line 17 takes the
/// infinity norm of H-bar (garbled), Algorithm 2 line 15 that of H: we take H, the raw gradients;
/// (3) pushing x_{t+1}, g_{t+1} at the end of iteration t (lines 27-28) is pushing x_t, g_t at the
/// start of update t here, which is the same sequence of histories.
/// Measured (sum of squares, 1000-d): the thesis's "eta_min = 1e-7 makes no progress at all"
/// holds in float32 only, where x - 1e-7 rounds back to x for |x| near 10 so x_diff stays 0; in
/// float64 x_diff grows from 1e-7 and MNG converges.
module Mng =

    let defaults : MngOptions = { K = 5; EtaMin = Hyper.Fixed 1e-3; SignOnly = false }

    let validate (o: MngOptions) =
        if o.K < 1 then Tensors.invalidArg "k" $"mng: k = {o.K} is invalid; it must be >= 1"
        Hyper.checkNonNegative "mng" "eta_min" o.EtaMin

    /// MNG as a transformation named "mng". Its state holds the histories as the slot
    /// "history" = { x: [n, k]; grad: [n, k] } (n = all coordinates, oldest column first).
    let create (o: MngOptions) : Transformation =
        validate o
        let name = "mng"
        let init (p: Tree) = State.withSlots name [ "history", Tree.ofSeq [ "x", History.zeros p o.K; "grad", History.zeros p o.K ] ]
        let update (g: Tree) (s: State) (p: Tree) =
            let x = History.flatten p
            let gf = History.flatten g
            let hist = s.Slot "history"
            let hx, hg =
                if s.Count = 0 then History.populate o.K x, History.populate o.K gf
                else History.push hist["x"] x, History.push hist["grad"] gf
            let normalized = if o.SignOnly then hg.sign() else History.normalizeInf hg
            let dx = normalized.mean([| 1L |])
            let xRef, xDiff = History.refAndDiff hx
            let next = History.shoot xRef dx xDiff (Hyper.at s.Count o.EtaMin)
            History.unflatten p (next - x),
            { s with Count = s.Count + 1; Slots = Map.ofList [ "history", Tree.ofSeq [ "x", hx; "grad", hg ] ] }
        Transform.create name init update

    let spec : Registration<MngOptions> =
        { Summary = "MNG: mean of the last k infinity-normalised gradients, shot from the middle of the last k iterates"
          Source = "Shahid 2017, thesis sec. 3.4.1, Algorithm 1 (seed 004)"
          Defaults = defaults
          Fields =
            [ Field.integer "k" (fun o -> o.K) (fun o v -> { o with K = v }) "number of remembered steps (thesis: 5 on toy problems, 10 on MNIST)"
              Field.hyper "eta_min" (fun o -> o.EtaMin) (fun o v -> { o with EtaMin = v }) "minimum learning rate added to x_diff"
              Field.flag "sign_only" (fun o -> o.SignOnly) (fun o v -> { o with SignOnly = v }) "use only the gradients' signs" ]
          Create = create }
