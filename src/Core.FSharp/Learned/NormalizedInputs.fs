namespace Optimizers.Learned

open System
open TorchSharp
open Optimizers
open Optimizers.Handcrafted

/// "Learning to Optimize With Normalized Inputs" (Shahid, master's thesis, Freiburg 2017, seed
/// 004, chapter 3): a coordinate-wise MLP O_m reads a row of normalised gradient history and
/// outputs a step dx in [-1, 1]; the parameters move from a reference point by dx times the range
/// x_diff of their own history (plus eta_min). Two ways of keeping the history:
///   k Timesteps (section 3.4.2, Algorithm 2): the last k steps, as MNG (Handcrafted.Mng), and
///     x_{t+1} = x_ref - dx (x_diff + eta_min) with x_ref the middle of the history;
///   k Momentums (section 3.5, Algorithm 3, eq. 3.5): k moving averages at timescales m_1..m_k,
///     H <- m . H + (1 - m) . u, and x_{t+1} = x_t - dx (x_diff + eta_min).
/// Both histories are populated with x_0 and g_0 at step 0, as the thesis does.
/// The MLP (section 3.3): one hidden layer of `hidden` (50) ReLU units, then either the
/// classification head, 2 sign logits and 10 magnitude logits over linspace(0, 1, 10) each turned
/// into an expectation by a softmax, dx = E[sign] E[magnitude]; or the tanh head, dx = tanh(.).
/// Readings where the extracted text is unclear:
///   - the sign of the update: the algorithms' minus (dx follows the gradients, Table 3.1), not
///     the plus of eqs. 3.3-3.5 (see Mng);
///   - the first sign logit is +1, the second -1, so E[sign] = p_0 - p_1;
///   - chapter 3 does not say how O_m is initialised: Glorot-uniform kernels and zero biases,
///     TensorFlow's defaults (the thesis's code was TensorFlow);
///   - "Using Normalized H_x" (section 3.5.2): H_x normalised like H_g (each row by its infinity
///     norm) and fed as k more inputs;
///   - "Adam like Normalization": k moving averages V of g^2 at the same timescales as the
///     gradient momentums M (the "one more matrix" of squared gradients), inputs M / (sqrt V + eps),
///     populated with g_0^2 at step 0 (so no bias correction is needed);
///   - x_diff of k Momentums is the range of the k momentums of x (eq. 3.2 unchanged).
module NormalizedInputs =

    /// The ten magnitudes of the classification head, {0, 1/9, ..., 1}.
    let magnitudes = [| for i in 0 .. 9 -> float i / 9.0 |]

    let heads = [ "classify"; "tanh" ]

    let private headOutputs (head: string) = if head = "tanh" then 1 else 12

    /// Fresh MLP weights: "mlp.w1" [inputs, hidden], "mlp.b1", "mlp.w2" [hidden, 12 or 1], "mlp.b2".
    let initMlp (seed: int) (inputs: int) (hidden: int) (head: string) : Tree =
        let gen = LearnedOptimizer.generator seed
        let outputs = headOutputs head
        Tree.ofSeq
            [ "mlp.w1", Cells.glorot gen inputs hidden
              "mlp.b1", Cells.zeros hidden
              "mlp.w2", Cells.glorot gen hidden outputs
              "mlp.b2", Cells.zeros outputs ]

    /// dx for each row of the inputs [n, f]: O_m of section 3.3.
    let step (theta: Tree) (head: string) (inputs: Tensor) : Tensor =
        let dtype = inputs.dtype
        let th (name: string) = theta[name].``to``(dtype, inputs.device)
        let h = torch.nn.functional.relu(Cells.linear (th "mlp.w1") (th "mlp.b1") inputs)
        let z = Cells.linear (th "mlp.w2") (th "mlp.b2") h
        if head = "tanh" then torch.tanh(z).squeeze(1L)
        else
            let sign = torch.softmax(z.narrow(1L, 0L, 2L), 1)
            let eSign = sign.select(1L, 0L) - sign.select(1L, 1L)
            let mags = torch.tensor(magnitudes, dtype = dtype, device = inputs.device)
            let eMag = torch.softmax(z.narrow(1L, 2L, 10L), 1).matmul(mags)
            eSign * eMag

    let private checkMlp (owner: string) (theta: Tree) (inputs: int) (hidden: int) (head: string) =
        let expect name (shape: int list) =
            let t = theta[name]
            if t.shape <> (shape |> List.map int64 |> Array.ofList) then
                Tensors.invalidArg "theta" $"{owner}: meta-parameter '{name}' has shape {t.shape}, expected {shape} for {inputs} inputs, hidden = {hidden}, head = {head}"
        expect "mlp.w1" [ inputs; hidden ]
        expect "mlp.b1" [ hidden ]
        expect "mlp.w2" [ hidden; headOutputs head ]
        expect "mlp.b2" [ headOutputs head ]

    let private checkCommon (owner: string) (o: OptionValues) =
        let k, hidden = o.Int "k", o.Int "hidden"
        if k < 1 then Tensors.invalidArg "k" $"{owner}: k = {k} is invalid; it must be >= 1"
        if hidden < 1 then Tensors.invalidArg "hidden" $"{owner}: hidden = {hidden} is invalid; it must be >= 1"
        Hyper.checkFloat owner "eta_min" (fun v -> v >= 0.0 && not (Double.IsInfinity v)) "a finite number >= 0" (o.Float "eta_min")
        k, hidden, o.Word("head", heads)

    let private commonOptions (k: int) (etaMin: float) : OptionSpec list =
        [ { Name = "k"; Type = Integer; Default = string k; Doc = "history length: timesteps (k Timesteps) or timescales (k Momentums)" }
          { Name = "eta_min"; Type = Number; Default = etaMin.ToString("R", Globalization.CultureInfo.InvariantCulture); Doc = "minimum learning rate added to x_diff (the thesis trains with 1e-4 and tunes it after training)" }
          { Name = "hidden"; Type = Integer; Default = "50"; Doc = "ReLU units of O_m's hidden layer" }
          { Name = "head"; Type = Word; Default = "classify"; Doc = "classify (2 sign + 10 magnitude logits) | tanh" } ]

    // ---------------------------------------------------------------- k Timesteps

    /// Options of k Timesteps.
    let kTimestepsOptions : OptionSpec list = commonOptions 5 1e-4

    /// Fresh Theta of k Timesteps.
    let initKTimesteps (o: OptionValues) (seed: int) : Tree =
        let k, hidden, head = checkCommon "ktimesteps" o
        initMlp seed k hidden head

    /// The k Timesteps optimizer that Theta defines (Algorithm 2). State: the slot "history" =
    /// { x: [n, k]; grad: [n, k] }, oldest column first.
    let createKTimesteps (o: OptionValues) (theta: Tree) : Transformation =
        let k, hidden, head = checkCommon "ktimesteps" o
        checkMlp "ktimesteps" theta k hidden head
        let etaMin = o.Float "eta_min"
        let name = "ktimesteps"
        let init (p: Tree) = State.withSlots name [ "history", Tree.ofSeq [ "x", History.zeros p k; "grad", History.zeros p k ] ]
        let update (g: Tree) (s: State) (p: Tree) =
            let x = History.flatten p
            let gf = History.flatten g
            let hist = s.Slot "history"
            let hx, hg =
                if s.Count = 0 then History.populate k x, History.populate k gf
                else History.push hist["x"] x, History.push hist["grad"] gf
            let dx = step theta head (History.normalizeInf hg)
            let xRef, xDiff = History.refAndDiff hx
            let next = History.shoot xRef dx xDiff (HValue.Num etaMin)
            History.unflatten p (next - x),
            { s with Count = s.Count + 1; Slots = Map.ofList [ "history", Tree.ofSeq [ "x", hx; "grad", hg ] ] }
        Transform.create name init update

    let kTimestepsKind : LearnedKind =
        { Kind = "ktimesteps"
          Summary = "k Timesteps: an MLP reads the last k infinity-normalised gradients and shoots from the middle of the last k iterates"
          Source = "Shahid 2017, thesis sec. 3.4.2, Algorithm 2 (seed 004)"
          Options = kTimestepsOptions
          InitTheta = initKTimesteps
          Create = createKTimesteps }

    /// dx of a trained k Timesteps for given rows of normalised gradient history (oldest first),
    /// e.g. the rows of the thesis's Table 3.1 (k = 5).
    let kTimestepsSteps (o: OptionValues) (theta: Tree) (rows: float[] list) : float list =
        let k, hidden, head = checkCommon "ktimesteps" o
        checkMlp "ktimesteps" theta k hidden head
        for r in rows do
            if r.Length <> k then Tensors.invalidArg "rows" $"ktimesteps: a history row has {r.Length} entries, k = {k}"
        use scope = torch.NewDisposeScope()
        use _ = torch.no_grad()
        let input = torch.tensor(Array.concat rows, dtype = torch.ScalarType.Float64).reshape(int64 rows.Length, int64 k)
        let dx = step theta head input
        [ for i in 0 .. rows.Length - 1 -> dx[int64 i].ToDouble() ]

    /// The gradient histories of the thesis's Table 3.1 (k = 5, oldest first) with the steps its
    /// trained optimizer gave for them.
    let table31 : (float[] * float) list =
        [ [| 1.0; 1.0; 1.0; 1.0; 1.0 |], 0.99999666
          [| 1.0; 1.0; 1.0; 1.0; -1.0 |], 0.99984455
          [| 1.0; 1.0; 1.0; -1.0; -1.0 |], 0.99128538
          [| 1.0; 1.0; -1.0; -1.0; -1.0 |], -0.9901197
          [| 1.0; -1.0; -1.0; -1.0; -1.0 |], -0.99978876
          [| -1.0; -1.0; -1.0; -1.0; -1.0 |], -0.99999416
          [| -0.1; -0.1; -0.1; -0.1; 1.0 |], 0.96777165
          [| -0.1; -0.1; -0.1; -0.5; 1.0 |], 0.74221277
          [| -0.1; -0.1; -0.25; -0.25; 1.0 |], 0.84402364
          [| -0.1; -0.25; 0.0; 0.25; 1.0 |], 0.41817734
          [| 1.0; 0.25; 0.0; -0.25; -1.0 |], 0.0942957
          [| 0.0; 0.0; 0.0; -0.0; 0.0 |], 0.26363501 ]

    // ---------------------------------------------------------------- k Momentums

    let normalizations = [ "inf"; "adam" ]

    /// Options of k Momentums. The timescales are `timescales` when given, else k values
    /// linearly spaced from `lo` to `hi`.
    let kMomentumsOptions : OptionSpec list =
        commonOptions 6 1e-4
        @ [ { Name = "lo"; Type = Number; Default = "0.2"; Doc = "smallest timescale (with hi: k timescales linearly spaced)" }
            { Name = "hi"; Type = Number; Default = "0.99"; Doc = "largest timescale" }
            { Name = "timescales"; Type = Numbers; Default = ""; Doc = "the k timescales m_1..m_k, comma-separated (overrides lo, hi)" }
            { Name = "x_inputs"; Type = Flag; Default = "false"; Doc = "also feed H_x normalised by its infinity norm (\"Using Normalized H_x\")" }
            { Name = "normalization"; Type = Word; Default = "inf"; Doc = "inf (each row by its infinity norm) | adam (M / (sqrt V + eps))" }
            { Name = "eps"; Type = Number; Default = "1e-8"; Doc = "eps of the adam normalisation" } ]

    /// The five configurations of the thesis's section 3.5.2 (Figure 3.9), as option lists.
    let kMomentumsConfigurations : (string * (string * string) list) list =
        [ "k=6, 0.2-0.9", [ "k", "6"; "lo", "0.2"; "hi", "0.9" ]
          "k=6, 0.5-0.99", [ "k", "6"; "lo", "0.5"; "hi", "0.99" ]
          "k=6, 0.2-0.99", [ "k", "6"; "lo", "0.2"; "hi", "0.99" ]
          "k=7, 0.1-0.99", [ "k", "7"; "lo", "0.1"; "hi", "0.99" ]
          "k=10, 0.2-0.99", [ "k", "10"; "lo", "0.2"; "hi", "0.99" ] ]

    /// The k timescales of k Momentums, checked.
    let timescales (o: OptionValues) : float[] =
        let k = o.Int "k"
        let ms =
            match o.Floats "timescales" with
            | Some ms ->
                if ms.Length <> k then Tensors.invalidArg "timescales" $"kmomentums: {ms.Length} timescales given, k = {k}"
                ms
            | None ->
                let lo, hi = o.Float "lo", o.Float "hi"
                if k = 1 then [| lo |] else Array.init k (fun i -> lo + (hi - lo) * float i / float (k - 1))
        for m in ms do
            if not (m >= 0.0 && m < 1.0) then Tensors.invalidArg "timescales" $"kmomentums: timescale {m} is invalid; each must be in [0, 1)"
        ms

    let private kMomentumsSetup (o: OptionValues) =
        let k, hidden, head = checkCommon "kmomentums" o
        let ms = timescales o
        let xInputs = o.Bool "x_inputs"
        let norm = o.Word("normalization", normalizations)
        Hyper.checkFloat "kmomentums" "eps" (fun v -> v > 0.0) "> 0" (o.Float "eps")
        k, hidden, head, ms, xInputs, norm, (if xInputs then 2 * k else k)

    /// Fresh Theta of k Momentums.
    let initKMomentums (o: OptionValues) (seed: int) : Tree =
        let _, hidden, head, _, _, _, inputs = kMomentumsSetup o
        initMlp seed inputs hidden head

    /// The k Momentums optimizer that Theta defines (Algorithm 2 with Algorithm 3's history and
    /// eq. 3.5's reference x_t). State: the slot "history" = { x; grad } (and grad_sq with the
    /// adam normalisation), each [n, k], one column per timescale.
    let createKMomentums (o: OptionValues) (theta: Tree) : Transformation =
        let k, hidden, head, ms, xInputs, norm, inputs = kMomentumsSetup o
        checkMlp "kmomentums" theta inputs hidden head
        let etaMin = o.Float "eta_min"
        let eps = o.Float "eps"
        let adam = norm = "adam"
        let name = "kmomentums"
        let init (p: Tree) =
            let slots = [ "x", History.zeros p k; "grad", History.zeros p k ] @ (if adam then [ "grad_sq", History.zeros p k ] else [])
            State.withSlots name [ "history", Tree.ofSeq slots ]
        let update (g: Tree) (s: State) (p: Tree) =
            let x = History.flatten p
            let gf = History.flatten g
            let hist = s.Slot "history"
            let m = torch.tensor(ms, dtype = x.dtype, device = x.device)
            let next (slot: string) (v: Tensor) = if s.Count = 0 then History.populate k v else History.decay m hist[slot] v
            let hx = next "x" x
            let hg = next "grad" gf
            let hv = if adam then Some(next "grad_sq" (gf * gf)) else None
            let gIn =
                match hv with
                | Some v -> hg / (v.sqrt() + eps)
                | None -> History.normalizeInf hg
            let input = if xInputs then torch.cat([| gIn; History.normalizeInf hx |], 1L) else gIn
            let dx = step theta head input
            let _, xDiff = History.refAndDiff hx
            let xNext = History.shoot x dx xDiff (HValue.Num etaMin)
            let slots = [ "x", hx; "grad", hg ] @ (match hv with Some v -> [ "grad_sq", v ] | None -> [])
            History.unflatten p (xNext - x),
            { s with Count = s.Count + 1; Slots = Map.ofList [ "history", Tree.ofSeq slots ] }
        Transform.create name init update

    let kMomentumsKind : LearnedKind =
        { Kind = "kmomentums"
          Summary = "k Momentums: an MLP reads k normalised gradient momentums and shoots from x_t by the range of k momentums of x"
          Source = "Shahid 2017, thesis sec. 3.5, Algorithm 3 and eq. 3.5 (seed 004)"
          Options = kMomentumsOptions
          InitTheta = initKMomentums
          Create = createKMomentums }
