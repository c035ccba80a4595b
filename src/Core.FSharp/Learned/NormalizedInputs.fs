namespace Optimizers.Learned

open System
open TorchSharp
open Optimizers
open Optimizers.Handcrafted

/// The output head of the thesis's O_m (section 3.3).
[<RequireQualifiedAccess>]
type Head =
    /// 2 sign and 10 magnitude logits, each turned into an expectation by a softmax.
    | Classify
    /// dx = tanh of one output.
    | Tanh

/// The options both histories share: O_m and the history length.
type HistoryMlpOptions =
    { /// History length: timesteps (k Timesteps) or timescales (k Momentums).
      K: int
      /// Minimum learning rate added to x_diff.
      EtaMin: float
      /// ReLU units of O_m's hidden layer.
      Hidden: int
      Head: Head }

/// How k Momentums normalises its gradient momentums.
[<RequireQualifiedAccess>]
type HistoryNormalization =
    /// Each row by its infinity norm.
    | Inf
    /// M / (sqrt V + eps), V the momentums of g^2 at the same timescales.
    | Adam

/// Options of k Momentums.
type KMomentumsOptions =
    { Mlp: HistoryMlpOptions
      /// The smallest and largest of k timescales linearly spaced (when Timescales is None).
      Lo: float
      Hi: float
      /// The k timescales m_1..m_k, overriding Lo and Hi.
      Timescales: float[] option
      /// Also feed H_x normalised by its infinity norm ("Using Normalized H_x").
      XInputs: bool
      Normalization: HistoryNormalization
      /// eps of the adam normalisation.
      Eps: float }

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

    let private headOutputs (head: Head) = match head with Head.Tanh -> 1 | Head.Classify -> 12

    let private headName (head: Head) = match head with Head.Tanh -> "tanh" | Head.Classify -> "classify"

    /// Fresh MLP weights: "mlp.w1" [inputs, hidden], "mlp.b1", "mlp.w2" [hidden, 12 or 1], "mlp.b2".
    let initMlp (seed: int) (inputs: int) (hidden: int) (head: Head) : Tree =
        let gen = LearnedOptimizer.generator seed
        let outputs = headOutputs head
        Tree.ofSeq
            [ "mlp.w1", Cells.glorot gen inputs hidden
              "mlp.b1", Cells.zeros hidden
              "mlp.w2", Cells.glorot gen hidden outputs
              "mlp.b2", Cells.zeros outputs ]

    /// dx for each row of the inputs [n, f]: O_m of section 3.3.
    let step (theta: Tree) (head: Head) (inputs: Tensor) : Tensor =
        let dtype = inputs.dtype
        let th (name: string) = theta[name].``to``(dtype, inputs.device)
        let h = torch.nn.functional.relu(Cells.linear (th "mlp.w1") (th "mlp.b1") inputs)
        let z = Cells.linear (th "mlp.w2") (th "mlp.b2") h
        match head with
        | Head.Tanh -> torch.tanh(z).squeeze(1L)
        | Head.Classify ->
            let sign = torch.softmax(z.narrow(1L, 0L, 2L), 1)
            let eSign = sign.select(1L, 0L) - sign.select(1L, 1L)
            let mags = torch.tensor(magnitudes, dtype = dtype, device = inputs.device)
            let eMag = torch.softmax(z.narrow(1L, 2L, 10L), 1).matmul(mags)
            eSign * eMag

    let private checkMlp (owner: string) (theta: Tree) (inputs: int) (hidden: int) (head: Head) =
        let expect name (shape: int list) =
            let t = theta[name]
            if t.shape <> (shape |> List.map int64 |> Array.ofList) then
                Tensors.invalidArg "theta" $"{owner}: meta-parameter '{name}' has shape {t.shape}, expected {shape} for {inputs} inputs, hidden = {hidden}, head = {(headName head)}"
        expect "mlp.w1" [ inputs; hidden ]
        expect "mlp.b1" [ hidden ]
        expect "mlp.w2" [ hidden; headOutputs head ]
        expect "mlp.b2" [ headOutputs head ]

    let private checkCommon (owner: string) (o: HistoryMlpOptions) =
        if o.K < 1 then Tensors.invalidArg "k" $"{owner}: k = {o.K} is invalid; it must be >= 1"
        if o.Hidden < 1 then Tensors.invalidArg "hidden" $"{owner}: hidden = {o.Hidden} is invalid; it must be >= 1"
        Hyper.checkFloat owner "eta_min" (fun v -> v >= 0.0 && not (Double.IsInfinity v)) "a finite number >= 0" o.EtaMin

    let private commonFields : Field<HistoryMlpOptions> list =
        [ Field.integer "k" (fun o -> o.K) (fun o v -> { o with K = v }) "history length: timesteps (k Timesteps) or timescales (k Momentums)"
          Field.number "eta_min" (fun o -> o.EtaMin) (fun o v -> { o with EtaMin = v }) "minimum learning rate added to x_diff (the thesis trains with 1e-4 and tunes it after training)"
          Field.integer "hidden" (fun o -> o.Hidden) (fun o v -> { o with Hidden = v }) "ReLU units of O_m's hidden layer"
          Field.word "head" [ "classify", Head.Classify; "tanh", Head.Tanh ] (fun o -> o.Head) (fun o v -> { o with Head = v }) "classify (2 sign + 10 magnitude logits) | tanh" ]

    // ---------------------------------------------------------------- k Timesteps

    /// k Timesteps' defaults: k = 5, eta_min = 1e-4 (the thesis's training value), 50 hidden units.
    let kTimestepsDefaults : HistoryMlpOptions = { K = 5; EtaMin = 1e-4; Hidden = 50; Head = Head.Classify }

    /// Fresh Theta of k Timesteps.
    let initKTimesteps (o: HistoryMlpOptions) (seed: int) : Tree =
        checkCommon "ktimesteps" o
        initMlp seed o.K o.Hidden o.Head

    /// The k Timesteps optimizer that Theta defines (Algorithm 2). State: the slot "history" =
    /// { x: [n, k]; grad: [n, k] }, oldest column first.
    let createKTimesteps (o: HistoryMlpOptions) (theta: Tree) : Transformation =
        checkCommon "ktimesteps" o
        let k, head, etaMin = o.K, o.Head, o.EtaMin
        checkMlp "ktimesteps" theta k o.Hidden head
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

    let kTimestepsRegistration : LearnedRegistration<HistoryMlpOptions> =
        { Kind = "ktimesteps"
          Summary = "k Timesteps: an MLP reads the last k infinity-normalised gradients and shoots from the middle of the last k iterates"
          Source = "Shahid 2017, thesis sec. 3.4.2, Algorithm 2 (seed 004)"
          Defaults = kTimestepsDefaults
          Fields = commonFields
          Validate = checkCommon "ktimesteps"
          InitTheta = initKTimesteps
          Create = createKTimesteps }

    let kTimestepsKind : LearnedKind = LearnedRegistration.kind kTimestepsRegistration

    /// dx of a trained k Timesteps for given rows of normalised gradient history (oldest first),
    /// e.g. the rows of the thesis's Table 3.1 (k = 5).
    let kTimestepsSteps (o: HistoryMlpOptions) (theta: Tree) (rows: float[] list) : float list =
        checkCommon "ktimesteps" o
        let k, head = o.K, o.Head
        checkMlp "ktimesteps" theta k o.Hidden head
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

    /// k Momentums' defaults: k = 6 timescales from 0.2 to 0.99, infinity-normalised.
    let kMomentumsDefaults : KMomentumsOptions =
        { Mlp = { kTimestepsDefaults with K = 6 }; Lo = 0.2; Hi = 0.99; Timescales = None; XInputs = false
          Normalization = HistoryNormalization.Inf; Eps = 1e-8 }

    /// The timescales are `timescales` when given, else k values linearly spaced from `lo` to `hi`.
    let private kMomentumsFields : Field<KMomentumsOptions> list =
        (commonFields |> List.map (Field.lift (fun o -> o.Mlp) (fun o m -> { o with Mlp = m })))
        @ [ Field.number "lo" (fun o -> o.Lo) (fun o v -> { o with Lo = v }) "smallest timescale (with hi: k timescales linearly spaced)"
            Field.number "hi" (fun o -> o.Hi) (fun o v -> { o with Hi = v }) "largest timescale"
            Field.numbers "timescales" (fun o -> o.Timescales) (fun o v -> { o with Timescales = v }) "the k timescales m_1..m_k, comma-separated (overrides lo, hi)"
            Field.flag "x_inputs" (fun o -> o.XInputs) (fun o v -> { o with XInputs = v }) "also feed H_x normalised by its infinity norm (\"Using Normalized H_x\")"
            Field.word "normalization" [ "inf", HistoryNormalization.Inf; "adam", HistoryNormalization.Adam ] (fun o -> o.Normalization) (fun o v -> { o with Normalization = v })
                "inf (each row by its infinity norm) | adam (M / (sqrt V + eps))"
            Field.number "eps" (fun o -> o.Eps) (fun o v -> { o with Eps = v }) "eps of the adam normalisation" ]

    /// The five configurations of the thesis's section 3.5.2 (Figure 3.9), as option lists.
    let kMomentumsConfigurations : (string * (string * string) list) list =
        [ "k=6, 0.2-0.9", [ "k", "6"; "lo", "0.2"; "hi", "0.9" ]
          "k=6, 0.5-0.99", [ "k", "6"; "lo", "0.5"; "hi", "0.99" ]
          "k=6, 0.2-0.99", [ "k", "6"; "lo", "0.2"; "hi", "0.99" ]
          "k=7, 0.1-0.99", [ "k", "7"; "lo", "0.1"; "hi", "0.99" ]
          "k=10, 0.2-0.99", [ "k", "10"; "lo", "0.2"; "hi", "0.99" ] ]

    /// The k timescales of k Momentums, checked.
    let timescales (o: KMomentumsOptions) : float[] =
        let k = o.Mlp.K
        let ms =
            match o.Timescales with
            | Some ms ->
                if ms.Length <> k then Tensors.invalidArg "timescales" $"kmomentums: {ms.Length} timescales given, k = {k}"
                ms
            | None ->
                let lo, hi = o.Lo, o.Hi
                if k = 1 then [| lo |] else Array.init k (fun i -> lo + (hi - lo) * float i / float (k - 1))
        for m in ms do
            if not (m >= 0.0 && m < 1.0) then Tensors.invalidArg "timescales" $"kmomentums: timescale {m} is invalid; each must be in [0, 1)"
        ms

    let private validateKMomentums (o: KMomentumsOptions) =
        checkCommon "kmomentums" o.Mlp
        timescales o |> ignore
        Hyper.checkFloat "kmomentums" "eps" (fun v -> v > 0.0) "> 0" o.Eps

    /// The columns of O_m's input.
    let private kMomentumsInputs (o: KMomentumsOptions) = if o.XInputs then 2 * o.Mlp.K else o.Mlp.K

    /// Fresh Theta of k Momentums.
    let initKMomentums (o: KMomentumsOptions) (seed: int) : Tree =
        validateKMomentums o
        initMlp seed (kMomentumsInputs o) o.Mlp.Hidden o.Mlp.Head

    /// The k Momentums optimizer that Theta defines (Algorithm 2 with Algorithm 3's history and
    /// eq. 3.5's reference x_t). State: the slot "history" = { x; grad } (and grad_sq with the
    /// adam normalisation), each [n, k], one column per timescale.
    let createKMomentums (o: KMomentumsOptions) (theta: Tree) : Transformation =
        validateKMomentums o
        let k, head, ms, xInputs, etaMin, eps = o.Mlp.K, o.Mlp.Head, timescales o, o.XInputs, o.Mlp.EtaMin, o.Eps
        checkMlp "kmomentums" theta (kMomentumsInputs o) o.Mlp.Hidden head
        let adam = o.Normalization = HistoryNormalization.Adam
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

    let kMomentumsRegistration : LearnedRegistration<KMomentumsOptions> =
        { Kind = "kmomentums"
          Summary = "k Momentums: an MLP reads k normalised gradient momentums and shoots from x_t by the range of k momentums of x"
          Source = "Shahid 2017, thesis sec. 3.5, Algorithm 3 and eq. 3.5 (seed 004)"
          Defaults = kMomentumsDefaults
          Fields = kMomentumsFields
          Validate = validateKMomentums
          InitTheta = initKMomentums
          Create = createKMomentums }

    let kMomentumsKind : LearnedKind = LearnedRegistration.kind kMomentumsRegistration
