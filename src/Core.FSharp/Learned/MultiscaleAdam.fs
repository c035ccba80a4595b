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

    let private commonOptions : OptionSpec list =
        [ { Name = "k"; Type = Integer; Default = "6"; Doc = "number of Adams: 5, 6 or 11 take Table 4.1's timescales" }
          { Name = "beta1s"; Type = Numbers; Default = ""; Doc = "the Adams' beta1, comma-separated (overrides k's table; give beta2s too)" }
          { Name = "beta2s"; Type = Numbers; Default = ""; Doc = "the Adams' beta2, comma-separated" }
          { Name = "lr"; Type = Number; Default = "0.01"; Doc = "learning rate eta (the thesis: 1e-1 .. 5e-5; 1e-2 for the choice of k)" }
          { Name = "eps"; Type = Number; Default = "1e-8"; Doc = "the Adams' eps, outside the square root" }
          { Name = "init_std"; Type = Number; Default = "0.01"; Doc = "standard deviation of the initial meta-parameters (the thesis: 0.01)" } ]

    /// The Adams of these options: (name, beta1, beta2) in order.
    let timescales (owner: string) (o: OptionValues) : (string * float * float) list =
        let ts =
            match o.Floats "beta1s", o.Floats "beta2s" with
            | Some b1, Some b2 ->
                if b1.Length <> b2.Length then Tensors.invalidArg "beta2s" $"{owner}: {b1.Length} beta1s but {b2.Length} beta2s"
                let k = o.Int "k"
                if o.IsGiven "k" && k <> b1.Length then Tensors.invalidArg "k" $"{owner}: k = {k} but {b1.Length} beta1s are given"
                List.init b1.Length (fun i -> $"Adam({num b1[i]},{num b2[i]})", b1[i], b2[i])
            | None, None -> tableTimescales (o.Int "k")
            | _ -> Tensors.invalidArg "beta1s" $"{owner}: give both beta1s and beta2s, or neither"
        for _, b1, b2 in ts do
            Hyper.checkFloat owner "beta1s" (fun v -> v >= 0.0 && v < 1.0) "in [0, 1)" b1
            Hyper.checkFloat owner "beta2s" (fun v -> v >= 0.0 && v < 1.0) "in [0, 1)" b2
        ts

    let private checkCommon (owner: string) (o: OptionValues) =
        let ts = timescales owner o
        Hyper.checkFloat owner "lr" (fun v -> v >= 0.0 && not (Double.IsInfinity v)) "a finite number >= 0" (o.Float "lr")
        Hyper.checkFloat owner "eps" (fun v -> v > 0.0) "> 0" (o.Float "eps")
        Hyper.checkFloat owner "init_std" (fun v -> v >= 0.0) ">= 0" (o.Float "init_std")
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
        (name: string) (o: OptionValues) (ts: (string * float * float) list)
        (initCells: Tree -> (string * Tensor) list)
        (combine: Tensor -> Tree -> Tensor * (string * Tensor) list) : Transformation =
        let k = ts.Length
        let lr = o.Float "lr"
        let eps = o.Float "eps"
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

    let variants = [ "a"; "b"; "c" ]

    /// The weights that LA applies, from its raw weights w [k]: a, w / sum w; b, |w| / sum |w|; c, w.
    let laWeights (variant: string) (w: Tensor) : Tensor =
        match variant with
        | "a" -> w / w.sum()
        | "b" -> let a = w.abs() in a / a.sum()
        | _ -> w

    let laOptions : OptionSpec list =
        commonOptions
        @ [ { Name = "variant"; Type = Word; Default = "b"; Doc = "a: w / sum w (LA_a) | b: |w| / sum |w| (LA_b) | c: free weights (LA_c)" }
            { Name = "init_mean"; Type = Number; Default = "0"; Doc = "mean of the initial weights (the thesis: 0; 1 starts LA_a at equal weights)" } ]

    let initLa (o: OptionValues) (seed: int) : Tree =
        let ts = checkCommon "msadam-la" o
        Tree.single "la.w" (normal (LearnedOptimizer.generator seed) (o.Float "init_mean") (o.Float "init_std") [ ts.Length ])

    let createLa (o: OptionValues) (theta: Tree) : Transformation =
        let ts = checkCommon "msadam-la" o
        let variant = o.Word("variant", variants)
        expectShape "msadam-la" theta "la.w" [ ts.Length ]
        create "msadam-la" o ts (fun _ -> []) (fun steps _ ->
            let w = laWeights variant (theta["la.w"].``to``(steps.dtype, steps.device))
            steps.matmul(w), [])

    /// The weights a trained LA applies to each Adam (Tables 4.2 and 4.3).
    let weights (o: OptionValues) (theta: Tree) : TimescaleWeight list =
        let ts = checkCommon "msadam-la" o
        let variant = o.Word("variant", variants)
        expectShape "msadam-la" theta "la.w" [ ts.Length ]
        use w = laWeights variant (theta["la.w"].detach().to_type(torch.ScalarType.Float64))
        ts |> List.mapi (fun i (n, b1, b2) -> { Adam = n; Beta1 = b1; Beta2 = b2; Weight = w[int64 i].ToDouble() })

    let laKind : LearnedKind =
        { Kind = "msadam-la"
          Summary = "Multiscale Adam, LA: a learned linear average of k Adams at the timescales of Table 4.1"
          Source = "Shahid 2017, thesis sec. 4.3.1, Algorithm 4 (seed 004)"
          Options = laOptions
          InitTheta = initLa
          Create = createLa }

    // ---------------------------------------------------------------- MLP

    let private hiddenOption = { Name = "hidden"; Type = Integer; Default = "50"; Doc = "ReLU units per hidden layer" }

    let private hiddenOf (owner: string) (o: OptionValues) =
        let h = o.Int "hidden"
        if h < 1 then Tensors.invalidArg "hidden" $"{owner}: hidden = {h} is invalid; it must be >= 1"
        h

    let mlpOptions : OptionSpec list = commonOptions @ [ hiddenOption ]

    let initMlp (o: OptionValues) (seed: int) : Tree =
        let k = (checkCommon "msadam-mlp" o).Length
        let h = hiddenOf "msadam-mlp" o
        let gen = LearnedOptimizer.generator seed
        let std = o.Float "init_std"
        Tree.ofSeq
            [ "mlp.w1", normal gen 0.0 std [ k; h ]
              "mlp.b1", Cells.zeros h
              "mlp.w2", normal gen 0.0 std [ h; k ]
              "mlp.b2", Cells.zeros k ]

    let createMlp (o: OptionValues) (theta: Tree) : Transformation =
        let ts = checkCommon "msadam-mlp" o
        let k, h = ts.Length, hiddenOf "msadam-mlp" o
        expectShape "msadam-mlp" theta "mlp.w1" [ k; h ]
        expectShape "msadam-mlp" theta "mlp.w2" [ h; k ]
        create "msadam-mlp" o ts (fun _ -> []) (fun steps _ ->
            let th (n: string) = theta[n].``to``(steps.dtype, steps.device)
            let hidden = torch.nn.functional.relu(Cells.linear (th "mlp.w1") (th "mlp.b1") steps)
            let w = torch.softmax(Cells.linear (th "mlp.w2") (th "mlp.b2") hidden, 1)
            (w * steps).sum(1L), [])

    let mlpKind : LearnedKind =
        { Kind = "msadam-mlp"
          Summary = "Multiscale Adam, MLP: per-coordinate softmax weights over k Adams from an MLP of their steps"
          Source = "Shahid 2017, thesis sec. 4.3.2, Algorithm 4 (seed 004)"
          Options = mlpOptions
          InitTheta = initMlp
          Create = createMlp }

    // ---------------------------------------------------------------- RNN

    let rnnOptions : OptionSpec list =
        commonOptions
        @ [ hiddenOption
            { Name = "layers"; Type = Integer; Default = "1"; Doc = "recurrent layers: 1 or 2" } ]

    let private layersOf (o: OptionValues) =
        match o.Int "layers" with
        | 1 | 2 as l -> l
        | l -> Tensors.invalidArg "layers" $"msadam-rnn: layers = {l} is invalid; valid: 1, 2"

    let initRnn (o: OptionValues) (seed: int) : Tree =
        let k = (checkCommon "msadam-rnn" o).Length
        let h = hiddenOf "msadam-rnn" o
        let layers = layersOf o
        let gen = LearnedOptimizer.generator seed
        let std = o.Float "init_std"
        Tree.ofSeq
            [ for l in 1 .. layers do
                let inputs = if l = 1 then k else h
                yield $"rnn{l}.w", normal gen 0.0 std [ inputs + h; h ]
                yield $"rnn{l}.b", Cells.zeros h
              yield "out.w", normal gen 0.0 std [ h; k ]
              yield "out.b", Cells.zeros k ]

    let createRnn (o: OptionValues) (theta: Tree) : Transformation =
        let ts = checkCommon "msadam-rnn" o
        let k, h, layers = ts.Length, hiddenOf "msadam-rnn" o, layersOf o
        for l in 1 .. layers do expectShape "msadam-rnn" theta $"rnn{l}.w" [ (if l = 1 then k else h) + h; h ]
        expectShape "msadam-rnn" theta "out.w" [ h; k ]
        let initCells (p: Tree) = [ for l in 1 .. layers -> $"h{l}", History.zeros p h ]
        create "msadam-rnn" o ts initCells (fun steps cells ->
            let th (n: string) = theta[n].``to``(steps.dtype, steps.device)
            let top, hs =
                List.fold (fun (input: Tensor, acc) l ->
                    let hNew = torch.nn.functional.relu(Cells.linear (th $"rnn{l}.w") (th $"rnn{l}.b") (torch.cat([| input; cells[$"h{l}"] |], 1L)))
                    hNew, acc @ [ $"h{l}", hNew ]) (steps, []) [ 1 .. layers ]
            let w = torch.softmax(Cells.linear (th "out.w") (th "out.b") top, 1)
            (w * steps).sum(1L), hs)

    let rnnKind : LearnedKind =
        { Kind = "msadam-rnn"
          Summary = "Multiscale Adam, RNN: per-coordinate recurrent softmax weights over k Adams, trained on unrolls of u_max steps"
          Source = "Shahid 2017, thesis sec. 4.3.3, Algorithm 5 (seed 004)"
          Options = rnnOptions
          InitTheta = initRnn
          Create = createRnn }
