namespace Optimizers.Learned

open System
open TorchSharp
open Optimizers
open Optimizers.Handcrafted

/// One row of a learned linear average's weights (the thesis's Tables 4.2 and 4.3).
type TimescaleWeight =
    { /// The Adam's name in the thesis, e.g. "Adam.99".
      Adam: string
      Beta1: float
      Beta2: float
      /// The weight applied to this Adam's step (after LA_a / LA_b normalisation).
      Weight: float }

/// The options every Multiscale Adam shares: its Adams and the step.
type MultiscaleOptions =
    { /// The number of Adams, 5, 6 or 11 taking Table 4.1's timescales; None: 6, or as many as Beta1s.
      K: int option
      /// The Adams' beta1 and beta2 (overriding K's table; both or neither).
      Beta1s: float[] option
      Beta2s: float[] option
      /// Learning rate eta.
      Lr: float
      /// The Adams' eps, outside the square root.
      Eps: float
      /// Standard deviation of the initial meta-parameters.
      InitStd: float }

/// How LA turns its raw weights w into the weights it applies (section 4.3.1).
[<RequireQualifiedAccess>]
type LaVariant =
    /// w / sum w (LA_a)
    | A
    /// |w| / sum |w| (LA_b, the thesis's "LA" from then on)
    | B
    /// w as they are (LA_c)
    | C

/// Options of LA.
type LaOptions =
    { Multiscale: MultiscaleOptions
      Variant: LaVariant
      /// Mean of the initial weights.
      InitMean: float }

/// Options of the MLP and RNN combiners.
type MultiscaleNetOptions =
    { Multiscale: MultiscaleOptions
      /// ReLU units per hidden layer.
      Hidden: int
      /// Recurrent layers of the RNN, 1 or 2 (the MLP has one hidden layer).
      Layers: int }

/// Multiscale Adam (Shahid, master's thesis, Freiburg 2017, seed 004, chapter 4, Algorithms 4
/// and 5): k Adams at different timescales (beta1, beta2) run on the same gradients; O_m outputs
/// a weighted average of their steps, and x_{t+1} = x_t - lr * sum_i w_i s_i with
///   s_i = (m_i / (1 - beta1_i^t)) / (sqrt(v_i) / sqrt(1 - beta2_i^t) + eps)
/// each Adam's step without its learning rate (torch.optim.Adam's form, as Handcrafted.Adam).
/// Combiners (section 4.3):
///   msadam-la  (4.3.1) k weights w shared by all coordinates: variant a, w / sum(w) (LA_a);
///              b, |w| / sum |w| (LA_b, the thesis's "LA" from then on); c, w as they are (LA_c)
///   msadam-mlp (4.3.2) per coordinate, an MLP (50 ReLU units) of the k steps with a softmax
///              output: the weights
///   msadam-rnn (4.3.3) the MLP made recurrent, one or two layers, trained on the mean loss of an
///              unroll of u_max steps (eq. 4.1): meta-train it with --window u_max (20 in the thesis)
/// Timescales (Table 4.1): k = 6 the six of Table 4.1a, k = 5 without Adam.5, k = 11 with the five
/// of Table 4.1b; or any list given as beta1s and beta2s. Meta-parameters are initialised from
/// N(0, 0.01) (section 4.3), biases 0.
/// Readings where the extracted text is unclear:
///   - the sign: Algorithms 4 and 5 write x_t + lr dx; we step against the Adams' steps, which
///     follow the gradient's sign;
///   - Table 4.1b prints Adam.95 with beta1 = 0.995; we take 0.95, its name and the descending
///     order of Table 4.3b (0.995 would sort before Adam.99); beta2 values as printed
///     (0.9995, 0.8855, 0.7775, 0.6665, 0.5555);
///   - the "RNN" has "the same architecture as MLP" but is called recurrent and its future-work
///     paragraph worries about exploding and vanishing gradients: we make each hidden layer a
///     vanilla recurrent cell per coordinate, h_t = relu([in_t, h_{t-1}] W + b), and "two layers"
///     two such cells stacked;
///   - the MLP's input is the k steps of the coordinate as they are (Adam steps are already
///     normalised).
module MultiscaleAdam =

    /// Table 4.1a, the timescales of k = 6, in the thesis's order.
    let table41a : (string * float * float) list =
        [ "Adam.99", 0.99, 0.9999
          "Adam.9", 0.9, 0.999
          "Adam.8", 0.8, 0.888
          "Adam.7", 0.7, 0.777
          "Adam.6", 0.6, 0.666
          "Adam.5", 0.5, 0.555 ]

    /// Table 4.1b, added for k = 11 (Adam.95's beta1 read as 0.95, see the module's doc).
    let table41b : (string * float * float) list =
        [ "Adam.95", 0.95, 0.9995
          "Adam.85", 0.85, 0.8855
          "Adam.75", 0.75, 0.7775
          "Adam.65", 0.65, 0.6665
          "Adam.55", 0.55, 0.5555 ]

    /// The timescales for k = 5, 6 or 11 (descending beta1).
    let tableTimescales (k: int) : (string * float * float) list =
        match k with
        | 6 -> table41a
        | 5 -> table41a |> List.filter (fun (n, _, _) -> n <> "Adam.5")
        | 11 -> table41a @ table41b |> List.sortByDescending (fun (_, b1, _) -> b1)
        | _ -> Tensors.invalidArg "k" $"multiscale adam: k = {k} has no timescales in Table 4.1 (5, 6 or 11); give beta1s and beta2s instead"

    let private num (v: float) = v.ToString("R", Globalization.CultureInfo.InvariantCulture)

    /// The thesis's: six Adams, eta = 1e-2, eps = 1e-8, meta-parameters from N(0, 0.01).
    let multiscaleDefaults : MultiscaleOptions = { K = None; Beta1s = None; Beta2s = None; Lr = 0.01; Eps = 1e-8; InitStd = 0.01 }

    let private commonFields : Field<MultiscaleOptions> list =
        [ Field.integerOr "k" "6" (fun o -> o.K) (fun o v -> { o with K = v }) "number of Adams: 5, 6 or 11 take Table 4.1's timescales"
          Field.numbers "beta1s" (fun o -> o.Beta1s) (fun o v -> { o with Beta1s = v }) "the Adams' beta1, comma-separated (overrides k's table; give beta2s too)"
          Field.numbers "beta2s" (fun o -> o.Beta2s) (fun o v -> { o with Beta2s = v }) "the Adams' beta2, comma-separated"
          Field.number "lr" (fun o -> o.Lr) (fun o v -> { o with Lr = v }) "learning rate eta (the thesis: 1e-1 .. 5e-5; 1e-2 for the choice of k)"
          Field.number "eps" (fun o -> o.Eps) (fun o v -> { o with Eps = v }) "the Adams' eps, outside the square root"
          Field.number "init_std" (fun o -> o.InitStd) (fun o v -> { o with InitStd = v }) "standard deviation of the initial meta-parameters (the thesis: 0.01)" ]

    /// The Adams of these options: (name, beta1, beta2) in order.
    let timescales (owner: string) (o: MultiscaleOptions) : (string * float * float) list =
        let ts =
            match o.Beta1s, o.Beta2s with
            | Some b1, Some b2 ->
                if b1.Length <> b2.Length then Tensors.invalidArg "beta2s" $"{owner}: {b1.Length} beta1s but {b2.Length} beta2s"
                match o.K with
                | Some k when k <> b1.Length -> Tensors.invalidArg "k" $"{owner}: k = {k} but {b1.Length} beta1s are given"
                | _ -> ()
                List.init b1.Length (fun i -> $"Adam({num b1[i]},{num b2[i]})", b1[i], b2[i])
            | None, None -> tableTimescales (Option.defaultValue 6 o.K)
            | _ -> Tensors.invalidArg "beta1s" $"{owner}: give both beta1s and beta2s, or neither"
        for _, b1, b2 in ts do
            Hyper.checkFloat owner "beta1s" (fun v -> v >= 0.0 && v < 1.0) "in [0, 1)" b1
            Hyper.checkFloat owner "beta2s" (fun v -> v >= 0.0 && v < 1.0) "in [0, 1)" b2
        ts

    let private checkCommon (owner: string) (o: MultiscaleOptions) =
        let ts = timescales owner o
        Hyper.checkFloat owner "lr" (fun v -> v >= 0.0 && not (Double.IsInfinity v)) "a finite number >= 0" o.Lr
        Hyper.checkFloat owner "eps" (fun v -> v > 0.0) "> 0" o.Eps
        Hyper.checkFloat owner "init_std" (fun v -> v >= 0.0) ">= 0" o.InitStd
        ts

    /// N(mean, std) of a shape, from a generator.
    let private normal (gen: torch.Generator) (mean: float) (std: float) (shape: int list) : Tensor =
        torch.randn(shape |> List.map int64 |> Array.ofList, dtype = torch.ScalarType.Float32, generator = gen) * std + mean

    let private expectShape (owner: string) (theta: Tree) (name: string) (shape: int list) =
        let t = theta[name]
        if t.shape <> (shape |> List.map int64 |> Array.ofList) then
            Tensors.invalidArg "theta" $"{owner}: meta-parameter '{name}' has shape {t.shape}, expected {shape}"

    /// The k Adams' steps for the gradients `g` [n] and moments m, v [n, k] after `count` updates:
    /// (steps [n, k], m', v').
    let adamSteps (b1: Tensor) (b2: Tensor) (eps: float) (count: int) (m: Tensor) (v: Tensor) (g: Tensor) =
        let t = float (count + 1)
        let gc = g.unsqueeze(1L)
        let m' = b1 * m + (1.0 - b1) * gc
        let v' = b2 * v + (1.0 - b2) * (gc * gc)
        let bc1 = 1.0 - b1.pow(Tensors.scalar t)
        let bc2 = 1.0 - b2.pow(Tensors.scalar t)
        (m' / bc1) / (v'.sqrt() / bc2.sqrt() + eps), m', v'

    /// A Multiscale Adam transformation: `combine theta steps cells` gives the update direction
    /// [n] from the steps [n, k] and the combiner's own per-coordinate state (new cells too).
    let private create
        (name: string) (o: MultiscaleOptions) (ts: (string * float * float) list)
        (initCells: Tree -> (string * Tensor) list)
        (combine: Tensor -> Tree -> Tensor * (string * Tensor) list) : Transformation =
        let k, lr, eps = ts.Length, o.Lr, o.Eps
        let b1s = ts |> List.map (fun (_, b, _) -> b) |> Array.ofList
        let b2s = ts |> List.map (fun (_, _, b) -> b) |> Array.ofList
        let init (p: Tree) =
            let adams = Tree.ofSeq [ "m", History.zeros p k; "v", History.zeros p k ]
            match initCells p with
            | [] -> State.withSlots name [ "adams", adams ]
            | cells -> State.withSlots name [ "adams", adams; "cells", Tree.ofSeq cells ]
        let update (g: Tree) (s: State) (p: Tree) =
            let gf = History.flatten g
            let adams = s.Slot "adams"
            let b1 = torch.tensor(b1s, dtype = gf.dtype, device = gf.device)
            let b2 = torch.tensor(b2s, dtype = gf.dtype, device = gf.device)
            let steps, m', v' = adamSteps b1 b2 eps s.Count adams["m"] adams["v"] gf
            let cells = match s.Slots.TryFind "cells" with Some c -> c | None -> Tree.ofSeq []
            let d, cells' = combine steps cells
            let slots = [ "adams", Tree.ofSeq [ "m", m'; "v", v' ] ] @ (if cells'.IsEmpty then [] else [ "cells", Tree.ofSeq cells' ])
            History.unflatten p (d * -lr), { s with Count = s.Count + 1; Slots = Map.ofList slots }
        Transform.create name init update

    // ---------------------------------------------------------------- LA

    /// The weights that LA applies, from its raw weights w [k]: a, w / sum w; b, |w| / sum |w|; c, w.
    let laWeights (variant: LaVariant) (w: Tensor) : Tensor =
        match variant with
        | LaVariant.A -> w / w.sum()
        | LaVariant.B -> let a = w.abs() in a / a.sum()
        | LaVariant.C -> w

    let laDefaults : LaOptions = { Multiscale = multiscaleDefaults; Variant = LaVariant.B; InitMean = 0.0 }

    let private laFields : Field<LaOptions> list =
        (commonFields |> List.map (Field.lift (fun (o: LaOptions) -> o.Multiscale) (fun o m -> { o with Multiscale = m })))
        @ [ Field.word "variant" [ "a", LaVariant.A; "b", LaVariant.B; "c", LaVariant.C ] (fun o -> o.Variant) (fun o v -> { o with Variant = v })
                "a: w / sum w (LA_a) | b: |w| / sum |w| (LA_b) | c: free weights (LA_c)"
            Field.number "init_mean" (fun o -> o.InitMean) (fun o v -> { o with InitMean = v }) "mean of the initial weights (the thesis: 0; 1 starts LA_a at equal weights)" ]

    let initLa (o: LaOptions) (seed: int) : Tree =
        let ts = checkCommon "msadam-la" o.Multiscale
        Tree.single "la.w" (normal (LearnedOptimizer.generator seed) o.InitMean o.Multiscale.InitStd [ ts.Length ])

    let createLa (o: LaOptions) (theta: Tree) : Transformation =
        let ts = checkCommon "msadam-la" o.Multiscale
        expectShape "msadam-la" theta "la.w" [ ts.Length ]
        create "msadam-la" o.Multiscale ts (fun _ -> []) (fun steps _ ->
            let w = laWeights o.Variant (theta["la.w"].``to``(steps.dtype, steps.device))
            steps.matmul(w), [])

    /// The weights a trained LA applies to each Adam (Tables 4.2 and 4.3).
    let weights (o: LaOptions) (theta: Tree) : TimescaleWeight list =
        let ts = checkCommon "msadam-la" o.Multiscale
        expectShape "msadam-la" theta "la.w" [ ts.Length ]
        use w = laWeights o.Variant (theta["la.w"].detach().to_type(torch.ScalarType.Float64))
        ts |> List.mapi (fun i (n, b1, b2) -> { Adam = n; Beta1 = b1; Beta2 = b2; Weight = w[int64 i].ToDouble() })

    let laRegistration : LearnedRegistration<LaOptions> =
        { Kind = "msadam-la"
          Summary = "Multiscale Adam, LA: a learned linear average of k Adams at the timescales of Table 4.1"
          Source = "Shahid 2017, thesis sec. 4.3.1, Algorithm 4 (seed 004)"
          Defaults = laDefaults
          Fields = laFields
          Validate = fun o -> checkCommon "msadam-la" o.Multiscale |> ignore
          InitTheta = initLa
          Create = createLa }

    let laKind : LearnedKind = LearnedRegistration.kind laRegistration

    // ---------------------------------------------------------------- MLP and RNN

    /// The MLP's and the RNN's defaults: 50 ReLU units, one layer.
    let netDefaults : MultiscaleNetOptions = { Multiscale = multiscaleDefaults; Hidden = 50; Layers = 1 }

    let private validateNet (owner: string) (o: MultiscaleNetOptions) =
        checkCommon owner o.Multiscale |> ignore
        if o.Hidden < 1 then Tensors.invalidArg "hidden" $"{owner}: hidden = {o.Hidden} is invalid; it must be >= 1"
        if o.Layers <> 1 && o.Layers <> 2 then Tensors.invalidArg "layers" $"{owner}: layers = {o.Layers} is invalid; valid: 1, 2"

    let private netFields (layers: bool) : Field<MultiscaleNetOptions> list =
        (commonFields |> List.map (Field.lift (fun (o: MultiscaleNetOptions) -> o.Multiscale) (fun o m -> { o with Multiscale = m })))
        @ [ yield Field.integer "hidden" (fun o -> o.Hidden) (fun o v -> { o with Hidden = v }) "ReLU units per hidden layer"
            if layers then yield Field.integer "layers" (fun o -> o.Layers) (fun o v -> { o with Layers = v }) "recurrent layers: 1 or 2" ]

    let initMlp (o: MultiscaleNetOptions) (seed: int) : Tree =
        validateNet "msadam-mlp" o
        let k = (checkCommon "msadam-mlp" o.Multiscale).Length
        let h = o.Hidden
        let gen = LearnedOptimizer.generator seed
        let std = o.Multiscale.InitStd
        Tree.ofSeq
            [ "mlp.w1", normal gen 0.0 std [ k; h ]
              "mlp.b1", Cells.zeros h
              "mlp.w2", normal gen 0.0 std [ h; k ]
              "mlp.b2", Cells.zeros k ]

    let createMlp (o: MultiscaleNetOptions) (theta: Tree) : Transformation =
        validateNet "msadam-mlp" o
        let ts = checkCommon "msadam-mlp" o.Multiscale
        let k, h = ts.Length, o.Hidden
        expectShape "msadam-mlp" theta "mlp.w1" [ k; h ]
        expectShape "msadam-mlp" theta "mlp.w2" [ h; k ]
        create "msadam-mlp" o.Multiscale ts (fun _ -> []) (fun steps _ ->
            let th (n: string) = theta[n].``to``(steps.dtype, steps.device)
            let hidden = torch.nn.functional.relu(Cells.linear (th "mlp.w1") (th "mlp.b1") steps)
            let w = torch.softmax(Cells.linear (th "mlp.w2") (th "mlp.b2") hidden, 1)
            (w * steps).sum(1L), [])

    let mlpRegistration : LearnedRegistration<MultiscaleNetOptions> =
        { Kind = "msadam-mlp"
          Summary = "Multiscale Adam, MLP: per-coordinate softmax weights over k Adams from an MLP of their steps"
          Source = "Shahid 2017, thesis sec. 4.3.2, Algorithm 4 (seed 004)"
          Defaults = netDefaults
          Fields = netFields false
          Validate = validateNet "msadam-mlp"
          InitTheta = initMlp
          Create = createMlp }

    let mlpKind : LearnedKind = LearnedRegistration.kind mlpRegistration

    let initRnn (o: MultiscaleNetOptions) (seed: int) : Tree =
        validateNet "msadam-rnn" o
        let k = (checkCommon "msadam-rnn" o.Multiscale).Length
        let h, layers = o.Hidden, o.Layers
        let gen = LearnedOptimizer.generator seed
        let std = o.Multiscale.InitStd
        Tree.ofSeq
            [ for l in 1 .. layers do
                let inputs = if l = 1 then k else h
                yield $"rnn{l}.w", normal gen 0.0 std [ inputs + h; h ]
                yield $"rnn{l}.b", Cells.zeros h
              yield "out.w", normal gen 0.0 std [ h; k ]
              yield "out.b", Cells.zeros k ]

    let createRnn (o: MultiscaleNetOptions) (theta: Tree) : Transformation =
        validateNet "msadam-rnn" o
        let ts = checkCommon "msadam-rnn" o.Multiscale
        let k, h, layers = ts.Length, o.Hidden, o.Layers
        for l in 1 .. layers do expectShape "msadam-rnn" theta $"rnn{l}.w" [ (if l = 1 then k else h) + h; h ]
        expectShape "msadam-rnn" theta "out.w" [ h; k ]
        let initCells (p: Tree) = [ for l in 1 .. layers -> $"h{l}", History.zeros p h ]
        create "msadam-rnn" o.Multiscale ts initCells (fun steps cells ->
            let th (n: string) = theta[n].``to``(steps.dtype, steps.device)
            let top, hs =
                List.fold (fun (input: Tensor, acc) l ->
                    let hNew = torch.nn.functional.relu(Cells.linear (th $"rnn{l}.w") (th $"rnn{l}.b") (torch.cat([| input; cells[$"h{l}"] |], 1L)))
                    hNew, acc @ [ $"h{l}", hNew ]) (steps, []) [ 1 .. layers ]
            let w = torch.softmax(Cells.linear (th "out.w") (th "out.b") top, 1)
            (w * steps).sum(1L), hs)

    let rnnRegistration : LearnedRegistration<MultiscaleNetOptions> =
        { Kind = "msadam-rnn"
          Summary = "Multiscale Adam, RNN: per-coordinate recurrent softmax weights over k Adams, trained on unrolls of u_max steps"
          Source = "Shahid 2017, thesis sec. 4.3.3, Algorithm 5 (seed 004)"
          Defaults = netDefaults
          Fields = netFields true
          Validate = validateNet "msadam-rnn"
          InitTheta = initRnn
          Create = createRnn }

    let rnnKind : LearnedKind = LearnedRegistration.kind rnnRegistration
