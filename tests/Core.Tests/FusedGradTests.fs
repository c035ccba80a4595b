/// The differentiable fused steps (Fused/AdamGrad.fs, AdamVariantsGrad.fs, SgdGrad.fs, RmsPropGrad.fs, AdagradGrad.fs)
/// against the op-by-op step they replace when a gradient flows: values and first derivatives with
/// respect to every input and hyperparameter, on random shapes and states, and unrolls'
/// hypergradients.
module Optimizers.Tests.FusedGradTests

open System
open Expecto
open FsCheck
open FsCheck.FSharp
open TorchSharp
open Optimizers
open Optimizers.Fused
open Optimizers.Handcrafted
open Optimizers.Tests.Check

/// How the case's hyperparameters are given.
type HyperForm =
    | Numbers
    | Schedules
    | Tensors

type Case =
    { Shapes: int list list
      Steps: int
      Seed: int
      Form: HyperForm
      WeightDecay: bool
      Transposed: bool }

type Arbs =
    static member Case() : Arbitrary<Case> =
        gen {
            let! shapes = gradShapes
            let! steps = Gen.choose (0, 6)
            let! seed = Gen.choose (0, 100000)
            let! form = Gen.elements [ Numbers; Schedules; Tensors ]
            let! wd = Gen.elements [ true; false ]
            let! transposed = transposedViews
            return { Shapes = shapes; Steps = steps; Seed = seed; Form = form; WeightDecay = wd; Transposed = transposed }
        }
        |> Arb.fromGen

let config = { FsCheckConfig.defaultConfig with maxTest = 40; arbitrary = [ typeof<Arbs> ] }

/// The hyperparameters of a case in its form, and the tensors among them (to differentiate); Adam
/// with the given eps_root.
let hypersWith (epsRoot: float) (form: HyperForm) (wd: bool) =
    // beta2 0.9, not 0.95: drifting 1% a step, 0.95 passed 1 within the 6 warm-up steps (a NaN step
    // on both sides, which the comparisons let through)
    let values = [ "lr", 0.01; "beta1", 0.8; "beta2", 0.9; "weight_decay", (if wd then 0.05 else 0.0) ]
    let tensors = values |> List.map (fun (n, v) -> n, torch.tensor(v, dtype = f64, requires_grad = true))
    let h (n: string) (v: float) =
        match form with
        | Numbers -> Hyper.Fixed v
        | Schedules -> Hyper.Scheduled(fun k -> v * (1.0 + 0.01 * float k))
        | Tensors -> Hyper.Learnable(tensors |> List.find (fun (m, _) -> m = n) |> snd)
    let get n = values |> List.find (fun (m, _) -> m = n) |> snd
    let adam =
        Adam.create
            { Adam.defaults with
                EpsRoot = epsRoot
                Lr = h "lr" (get "lr"); Beta1 = h "beta1" (get "beta1"); Beta2 = h "beta2" (get "beta2")
                WeightDecay = (if wd then h "weight_decay" (get "weight_decay") else Hyper.Fixed 0.0) }
    let used = tensors |> List.filter (fun (n, _) -> wd || n <> "weight_decay") |> List.map snd
    adam, (if form = Tensors then used else [])

let hypers = hypersWith 0.0

/// Leaf tensors of a shape (transposed views when asked: not contiguous).
let leaf (gen: torch.Generator) (dtype: torch.ScalarType) (transposed: bool) (positive: bool) (shape: int list) =
    let raw = torch.randn(shape |> List.map int64 |> Array.ofList, dtype = dtype, generator = gen)
    let raw = if positive then raw.abs() + 0.1 else raw
    let x = if transposed && shape.Length = 2 then raw.t().contiguous().t() else raw
    x.detach().requires_grad_(true)

/// Parameters, gradients and a state after `steps` warm-up steps whose moments are replaced by
/// fresh leaves, all requiring grad.
let setup (dtype: torch.ScalarType) (c: Case) (adam: Transformation) =
    use gen = new torch.Generator(uint64 c.Seed)
    let names = c.Shapes |> List.mapi (fun i _ -> $"t{i}")
    let make positive = Tree.ofSeq (List.zip names (c.Shapes |> List.map (leaf gen dtype c.Transposed positive)))
    let p, g = make false, make false
    let mutable s = adam.Init p
    using (torch.no_grad ()) (fun _ ->
        for _ in 1 .. c.Steps do s <- Transform.stepOps adam (make false) s p |> snd)
    let inner = s.Children[1]
    let moments = { inner with Slots = Map.ofList [ "exp_avg", make false; "exp_avg_sq", make true ] }
    p, g, { s with Children = [ s.Children[0]; moments; s.Children[2] ] }

/// A scalar of the step's outputs (random weights), so that every output's gradient is nonzero.
let objective (seed: int) (p': Tree) (s': State) =
    use gen = new torch.Generator(uint64 (seed + 1))
    let weigh (t: Tensor) = (t * torch.randn(t.shape, dtype = t.dtype, generator = gen)).sum()
    let m', v' = s'.Children[1].Slot "exp_avg", s'.Children[1].Slot "exp_avg_sq"
    Array.concat [ p'.Values; m'.Values; v'.Values ] |> Array.map weigh |> Array.reduce (+)

/// Values and gradients (inputs p, g, m, v, then the tensor hyperparameters) of one step.
let run (stepFn: Transformation -> Tree -> State -> Tree -> Tree * State) (adam: Transformation) (tensors: Tensor list) (p: Tree) (g: Tree) (s: State) (seed: int) =
    let p', s' = stepFn adam g s p
    let inputs = Array.concat [ p.Values; g.Values; (s.Children[1].Slot "exp_avg").Values; (s.Children[1].Slot "exp_avg_sq").Values; Array.ofList tensors ]
    let grads = torch.autograd.grad([| objective seed p' s' |], inputs, retain_graph = false)
    let values = Array.concat [ p'.Values; (s'.Children[1].Slot "exp_avg").Values; (s'.Children[1].Slot "exp_avg_sq").Values ]
    values |> Array.map (fun t -> t.detach().to_type(f64).contiguous().data<float>().ToArray()) |> Array.concat,
    grads |> Seq.map (fun t -> t.to_type(f64).reshape(-1L).data<float>().ToArray()) |> Array.concat

let relNorm (a: float[]) (b: float[]) =
    let d = Array.map2 (fun x y -> (x - y) * (x - y)) a b |> Array.sum |> sqrt
    let n = b |> Array.sumBy (fun y -> y * y) |> sqrt
    d / max n 1e-300

/// Transform.step with its differentiable fused steps on (Transform.fuseGradients).
let fusedStep (t: Transformation) (g: Tree) (s: State) (p: Tree) =
    let saved = Transform.fuseGradients
    Transform.fuseGradients <- true
    try Transform.step t g s p finally Transform.fuseGradients <- saved

/// Transform.step with its differentiable fused steps off: op by op.
let unfusedStep (t: Transformation) (g: Tree) (s: State) (p: Tree) =
    let saved = Transform.fuseGradients
    Transform.fuseGradients <- false
    try Transform.step t g s p finally Transform.fuseGradients <- saved

/// Hyperparameters by name in a case's form: the tensors (float64, requiring grad) and the Hyper
/// of a name (a number, a schedule drifting 1% a step, or its tensor).
let hyperForms (form: HyperForm) (values: (string * float) list) =
    let tensors = values |> List.map (fun (n, v) -> n, torch.tensor(v, dtype = f64, requires_grad = true))
    let h (n: string) =
        let v = values |> List.find (fun (m, _) -> m = n) |> snd
        match form with
        | Numbers -> Hyper.Fixed v
        | Schedules -> Hyper.Scheduled(fun k -> v * (1.0 + 0.01 * float k))
        | Tensors -> Hyper.Learnable(tensors |> List.find (fun (m, _) -> m = n) |> snd)
    (if form = Tensors then List.map snd tensors else []), h

/// The state of the chain's part of this kind.
let partOf (kind: string) (s: State) = s.Children |> List.find (fun c -> c.Kind = kind)

/// A state whose part `kind` has `tree` as its slot `name`.
let withSlot (kind: string) (name: string) (tree: Tree) (s: State) =
    { s with Children = s.Children |> List.map (fun c -> if c.Kind = kind then { c with Slots = c.Slots.Add(name, tree) } else c) }

/// Parameters, gradients and a state after `c.Steps` warm-up steps of `opt` whose slots
/// (part kind, slot name, positive) are then replaced by fresh leaves, all requiring grad.
let setupSlots (dtype: torch.ScalarType) (c: Case) (opt: Transformation) (slots: (string * string * bool) list) =
    use gen = new torch.Generator(uint64 c.Seed)
    let names = c.Shapes |> List.mapi (fun i _ -> $"t{i}")
    let make positive = Tree.ofSeq (List.zip names (c.Shapes |> List.map (leaf gen dtype c.Transposed positive)))
    let p, g = make false, make false
    let mutable s = opt.Init p
    using (torch.no_grad ()) (fun _ ->
        for _ in 1 .. c.Steps do s <- Transform.stepOps opt (make false) s p |> snd)
    p, g, slots |> List.fold (fun s (kind, name, positive) -> withSlot kind name (make positive) s) s

/// A step's values (p' and the state tensors `outputsOf` picks) and the gradients of a random
/// weighing of them with respect to p, g, the state tensors `inputsOf` picks and `hyperTensors`
/// (zeros for an input the step does not read), with the new state.
let weighedGrads (stepFn: Transformation -> Tree -> State -> Tree -> Tree * State) (opt: Transformation)
                 (outputsOf: State -> Tensor[]) (inputsOf: State -> Tensor[]) (hyperTensors: Tensor list) (p: Tree) (g: Tree) (s: State) (seed: int) =
    let p', s' = stepFn opt g s p
    let outs = Array.append p'.Values (outputsOf s')
    let objective =
        use wgen = new torch.Generator(uint64 (seed + 1))
        outs |> Array.map (fun t -> (t * torch.randn(t.shape, dtype = t.dtype, generator = wgen)).sum()) |> Array.reduce (+)
    let inputs = Array.concat [ p.Values; g.Values; inputsOf s; Array.ofList hyperTensors ]
    let grads = torch.autograd.grad([| objective |], inputs, allow_unused = true)
    outs |> Array.collect (fun t -> t.detach().to_type(f64).contiguous().data<float>().ToArray()),
    Seq.zip grads inputs
    |> Seq.collect (fun (d: Tensor, x: Tensor) -> (if isNull d || d.IsInvalid then torch.zeros_like x else d).to_type(f64).reshape(-1L).data<float>().ToArray())
    |> Array.ofSeq,
    s'

/// The step's values (p' and the slots) and the gradients of a random weighing of them with
/// respect to p, g, the slots and `hyperTensors`; an input the step does not read (the momentum
/// buffer at its first step) has zeros.
let stepGrads (stepFn: Transformation -> Tree -> State -> Tree -> Tree * State) (opt: Transformation) (slots: (string * string) list)
              (hyperTensors: Tensor list) (p: Tree) (g: Tree) (s: State) (seed: int) =
    let slotValues (s: State) = slots |> List.map (fun (kind, name) -> ((partOf kind s).Slot name).Values) |> Array.concat
    let values, grads, _ = weighedGrads stepFn opt slotValues slotValues hyperTensors p g s seed
    values, grads

/// The fused step (through Transform.step with fuseGradients) against stepOps on one case: the
/// fused function ran (its counter moved) exactly when every tensor is contiguous, and values and
/// gradients agree to the tolerances.
let fusedMatchesOps (calls: unit -> int64) (dtype: torch.ScalarType) (c: Case) (opt: Transformation) (slots: (string * string * bool) list) (hyperTensors: Tensor list) =
    let p, g, s = setupSlots dtype c opt slots
    let named = slots |> List.map (fun (k, n, _) -> k, n)
    let before = calls ()
    let fusedV, fusedG = stepGrads fusedStep opt named hyperTensors p g s c.Seed
    Expect.equal (calls () > before) (not c.Transposed || c.Shapes |> List.forall (fun sh -> sh.Length <> 2)) "the fused function ran exactly when every tensor is contiguous"
    let opsV, opsG = stepGrads Transform.stepOps opt named hyperTensors p g s c.Seed
    let tolV, tolG = if dtype = f64 then 1e-12, 1e-10 else 1e-5, 1e-4
    Expect.isLessThan (relNorm fusedV opsV) tolV "values"
    Expect.isLessThan (relNorm fusedG opsG) tolG "gradients w.r.t. p, g, the state and the tensor hyperparameters"
    // finite too: Expect.isLessThan passes NaN, so a NaN on both sides would go unseen
    let total = Array.append opsV opsG |> Array.sumBy abs
    Expect.isTrue (Double.IsFinite total) "finite values and gradients"
    Expect.isGreaterThan (opsG |> Array.sumBy abs) 0.0 "gradients that are not all zero"

/// `fusedMatchesOps` in float32 on contiguous tensors with Kernel.streamBytes = 0, so that the
/// fused loops store their vectors non-temporally (Kernel.store) whatever the tensors' size.
let streamedMatchesOps (calls: unit -> int64) (c: Case) (opt: Transformation) (slots: (string * string * bool) list) (hyperTensors: Tensor list) =
    let saved = Kernel.streamBytes
    Kernel.streamBytes <- 0L
    try fusedMatchesOps calls torch.ScalarType.Float32 { c with Transposed = false } opt slots hyperTensors
    finally Kernel.streamBytes <- saved

/// Run T steps of `opt` (built by `make` from its learnable hyperparameters) on sum(a x^2) and
/// return the loss and its gradients with respect to those hyperparameters.
let unrollHypergrads (stepFn: Transformation -> Tree -> State -> Tree -> Tree * State) (make: Tensor list -> Transformation) (values: float list) (steps: int) (seed: int) =
    use gen = new torch.Generator(uint64 seed)
    let a = torch.rand([| 30L |], dtype = f64, generator = gen) * 4.0 + 0.1
    let p0 = torch.randn([| 30L |], dtype = f64, generator = gen)
    let hs = values |> List.map (fun v -> torch.tensor(v, dtype = f64, requires_grad = true))
    let opt = make hs
    let mutable p = Tree.single "x" p0
    let mutable s = opt.Init p
    for _ in 1 .. steps do
        let p', s' = stepFn opt (Tree.map (fun x -> 2.0 * a * x) p) s p
        p <- p'
        s <- s'
    let loss = (a * p.Values[0] * p.Values[0]).sum()
    let grads = torch.autograd.grad([| loss |], Array.ofList hs)
    Array.append [| loss.ToDouble() |] (grads |> Seq.map (fun (t: Tensor) -> t.ToDouble()) |> Array.ofSeq)

/// The `steps`-step unroll's loss and hypergradients through the fused step (which must run at
/// every step) equal the op-by-op ones.
let unrollMatchesOver (steps: int) (calls: unit -> int64) (make: Tensor list -> Transformation) (values: float list) (what: string) =
    let before = calls ()
    let fused = unrollHypergrads fusedStep make values steps 5
    Expect.isGreaterThanOrEqual (calls () - before) (int64 steps) "the fused step ran at every step"
    let ops = unrollHypergrads Transform.stepOps make values steps 5
    closeRel 1e-10 fused ops what
    Expect.isTrue (ops |> Array.skip 1 |> Array.forall (fun x -> abs x > 1e-8)) $"hypergradients that are not trivially zero (loss and hypergradients: %A{ops})"

/// `unrollMatchesOver` T = 20 steps.
let unrollMatches = unrollMatchesOver 20

/// AdamW (amsgrad or not) or AMSGrad (debias or not) with the hyperparameters of `h`, the
/// tensors they hold (lr, beta1, beta2, weight_decay when `wd`) and the slots of its moments.
let adamVariant (variant: string) (flag: bool) (wd: bool) (tensors: Tensor list) (h: string -> Hyper) =
    let decay = if wd then h "weight_decay" else Hyper.Fixed 0.0
    let opt, kind =
        match variant with
        | "adamw" ->
            AdamW.create { AdamW.defaults with Lr = h "lr"; Beta1 = h "beta1"; Beta2 = h "beta2"; WeightDecay = decay; Amsgrad = flag },
            (if flag then "scale_by_amsgrad" else "scale_by_adam")
        | _ -> AmsGrad.create { AmsGrad.defaults with Lr = h "lr"; Beta1 = h "beta1"; Beta2 = h "beta2"; WeightDecay = decay; Debias = flag }, "scale_by_amsgrad"
    let slots =
        [ yield kind, "exp_avg", false
          yield kind, "exp_avg_sq", true
          if kind = "scale_by_amsgrad" then yield kind, "max_exp_avg_sq", true ]
    let held = tensors |> List.indexed |> List.filter (fun (i, _) -> i < 3 || wd) |> List.map snd
    opt, slots, held

/// beta2 0.9: a schedule drifting 1% a step stays below 1 over the warm-up's 6 steps (0.95 would
/// pass 1 and make the bias correction's root NaN).
let adamVariantValues = [ "lr", 0.01; "beta1", 0.8; "beta2", 0.9; "weight_decay", 0.05 ]

/// Adagrad (with or without lr_decay) in the case's hyperparameter form: the optimizer and the
/// tensors its options hold (lr, lr_decay, weight_decay, in that order).
let adagradCase (c: Case) (decay: bool) =
    let tensors, h = hyperForms c.Form [ "lr", 0.05; "lr_decay", 0.1; "weight_decay", 0.03 ]
    let opt =
        Adagrad.create
            { Adagrad.defaults with
                Lr = h "lr"; InitialAccumulatorValue = 0.1
                LrDecay = (if decay then h "lr_decay" else F 0.0)
                WeightDecay = (if c.WeightDecay then h "weight_decay" else F 0.0) }
    opt, tensors |> List.indexed |> List.filter (fun (i, _) -> i = 0 || (i = 1 && decay) || (i = 2 && c.WeightDecay)) |> List.map snd

/// RMSProp (with or without momentum) in the case's hyperparameter form: the optimizer, its slots,
/// and the tensors its options hold (lr, alpha, momentum, weight_decay, in that order).
let rmsPropCase (c: Case) (momentum: bool) =
    let tensors, h = hyperForms c.Form [ "lr", 0.01; "alpha", 0.9; "momentum", 0.8; "weight_decay", 0.03 ]
    let opt =
        RmsProp.create
            { RmsProp.defaults with
                Lr = h "lr"; Alpha = h "alpha"
                Momentum = (if momentum then h "momentum" else F 0.0)
                WeightDecay = (if c.WeightDecay then h "weight_decay" else F 0.0) }
    let slots = [ yield "scale_by_rms", "square_avg", true; if momentum then yield "trace_momentum", "momentum_buffer", false ]
    let held = tensors |> List.indexed |> List.filter (fun (i, _) -> i < 2 || (i = 2 && momentum) || (i = 3 && c.WeightDecay)) |> List.map snd
    opt, slots, held

[<Tests>]
let tests =
    testSequencedGroup "fuseGradients" <| testList "fusedgrad" [
        testPropertyWithConfig config "float64: the fused step's values and gradients are the op-by-op step's" <| fun (c: Case) ->
            use _ = torch.NewDisposeScope()
            let adam, tensors = hypers c.Form c.WeightDecay
            let p, g, s = setup f64 c adam
            let before = AdamGrad.calls
            let fusedV, fusedG = run fusedStep adam tensors p g s c.Seed
            let ran = AdamGrad.calls > before
            Expect.equal ran (not c.Transposed || c.Shapes |> List.forall (fun sh -> sh.Length <> 2)) "the fused function ran exactly when every tensor is contiguous"
            let opsV, opsG = run Transform.stepOps adam tensors p g s c.Seed
            Expect.isLessThan (relNorm fusedV opsV) 1e-12 "values"
            Expect.isLessThan (relNorm fusedG opsG) 1e-10 "gradients w.r.t. p, g, m, v and the tensor hyperparameters"
            Expect.isTrue (Double.IsFinite(Array.append opsV opsG |> Array.sumBy abs)) "finite values and gradients"

        testPropertyWithConfig config "float32 with non-temporal stores (Kernel.streamBytes = 0): the fused step's values and gradients are the op-by-op step's" <| fun (c: Case) ->
            use _ = torch.NewDisposeScope()
            let adam, tensors = hypers c.Form c.WeightDecay
            let p, g, s = setup torch.ScalarType.Float32 { c with Transposed = false } adam
            let saved = Kernel.streamBytes
            Kernel.streamBytes <- 0L
            let fusedV, fusedG = try run fusedStep adam tensors p g s c.Seed finally Kernel.streamBytes <- saved
            let opsV, opsG = run Transform.stepOps adam tensors p g s c.Seed
            Expect.isLessThan (relNorm fusedV opsV) 1e-5 "values"
            Expect.isLessThan (relNorm fusedG opsG) 1e-4 "gradients"

        testPropertyWithConfig config "float32: the fused step's gradients are the op-by-op step's to float32 rounding" <| fun (c: Case) ->
            use _ = torch.NewDisposeScope()
            let adam, tensors = hypers c.Form c.WeightDecay
            let p, g, s = setup torch.ScalarType.Float32 { c with Transposed = false } adam
            let fusedV, fusedG = run fusedStep adam tensors p g s c.Seed
            let opsV, opsG = run Transform.stepOps adam tensors p g s c.Seed
            Expect.isLessThan (relNorm fusedV opsV) 1e-5 "values"
            Expect.isLessThan (relNorm fusedG opsG) 1e-4 "gradients"
            Expect.isTrue (Double.IsFinite(Array.append opsV opsG |> Array.sumBy abs)) "finite values and gradients"

        testCase "T = 100 unroll: the hypergradients of lr and beta1 equal the op-by-op ones (float64)" <| fun () ->
            use _ = torch.NewDisposeScope()
            unrollMatchesOver 100 (fun () -> AdamGrad.calls)
                (fun hs -> Adam.create { Adam.defaults with Lr = Hyper.Learnable hs[0]; Beta1 = Hyper.Learnable hs[1] })
                [ 0.02; 0.85 ] "loss, d loss / d lr, d loss / d beta1"

        testPropertyWithConfig config "SGD with momentum, float64 and float32: the fused step's values and gradients are the op-by-op step's" <| fun (c: Case) (nesterov: bool) (single: bool) ->
            use _ = torch.NewDisposeScope()
            let dtype, tolV, tolG = if single then torch.ScalarType.Float32, 1e-5, 1e-4 else f64, 1e-12, 1e-10
            let values = [ "lr", 0.05; "momentum", 0.9; "dampening", (if nesterov then 0.0 else 0.3); "weight_decay", (if c.WeightDecay then 0.02 else 0.0) ]
            let tensors = values |> List.map (fun (n, v) -> n, torch.tensor(v, dtype = f64, requires_grad = true))
            let h (n: string) =
                let v = values |> List.find (fun (m, _) -> m = n) |> snd
                match c.Form with
                | Numbers -> Hyper.Fixed v
                | Schedules -> Hyper.Scheduled(fun k -> v * (1.0 - 0.01 * float k))
                | Tensors -> Hyper.Learnable(tensors |> List.find (fun (m, _) -> m = n) |> snd)
            let damp = if nesterov then Hyper.Fixed 0.0 else h "dampening"
            let wd = if c.WeightDecay then h "weight_decay" else Hyper.Fixed 0.0
            let sgd = Sgd.create { Lr = h "lr"; Momentum = h "momentum"; Dampening = damp; WeightDecay = wd; Nesterov = nesterov }
            use gen = new torch.Generator(uint64 c.Seed)
            let names = c.Shapes |> List.mapi (fun i _ -> $"t{i}")
            let make () = Tree.ofSeq (List.zip names (c.Shapes |> List.map (leaf gen dtype c.Transposed false)))
            let p, g = make (), make ()
            let mutable s = sgd.Init p
            using (torch.no_grad ()) (fun _ -> for _ in 1 .. c.Steps do s <- Transform.stepOps sgd (make ()) s p |> snd)
            let buf = make ()
            let s = if c.Steps > 0 then { s with Children = [ s.Children[0]; { s.Children[1] with Slots = Map.ofList [ "momentum_buffer", buf ] }; s.Children[2] ] } else s
            // what the step depends on: at the first step the buffer is not read, so not an input
            let used =
                [ yield "lr"; yield "momentum"
                  if c.WeightDecay then yield "weight_decay"
                  if not nesterov && c.Steps > 0 then yield "dampening" ]
            let hyperTensors = if c.Form = Tensors then tensors |> List.filter (fun (n, _) -> List.contains n used) |> List.map snd else []
            let once (stepFn: Transformation -> Tree -> State -> Tree -> Tree * State) =
                let p', s' = stepFn sgd g s p
                let b' = s'.Children[1].Slot "momentum_buffer"
                let objective =
                    use wgen = new torch.Generator(uint64 (c.Seed + 1))
                    Array.append p'.Values b'.Values |> Array.map (fun t -> (t * torch.randn(t.shape, dtype = dtype, generator = wgen)).sum()) |> Array.reduce (+)
                let inputs = Array.concat [ p.Values; g.Values; (if c.Steps > 0 then buf.Values else [||]); Array.ofList hyperTensors ]
                // allow_unused: an input a form of the step does not read has no gradient (zeros here)
                let grads = torch.autograd.grad([| objective |], inputs, allow_unused = true)
                Array.append p'.Values b'.Values |> Array.collect (fun t -> t.detach().to_type(f64).contiguous().data<float>().ToArray()),
                Seq.zip grads inputs
                |> Seq.collect (fun (d: Tensor, x: Tensor) -> (if isNull d || d.IsInvalid then torch.zeros_like x else d).to_type(f64).reshape(-1L).data<float>().ToArray())
                |> Array.ofSeq
            let before = SgdGrad.calls
            let fusedV, fusedG = once fusedStep
            Expect.equal (SgdGrad.calls > before) (not c.Transposed || c.Shapes |> List.forall (fun sh -> sh.Length <> 2)) "the fused function ran exactly when every tensor is contiguous"
            let opsV, opsG = once Transform.stepOps
            Expect.isLessThan (relNorm fusedV opsV) tolV "values"
            Expect.isLessThan (relNorm fusedG opsG) tolG "gradients w.r.t. p, g, b and the tensor hyperparameters"

        testCase "SGD with Nesterov momentum, T = 100 unroll: the hypergradients of lr and momentum equal the op-by-op ones" <| fun () ->
            use _ = torch.NewDisposeScope()
            unrollMatchesOver 100 (fun () -> SgdGrad.calls)
                (fun hs -> Sgd.create { Sgd.nesterovDefaults with Lr = Hyper.Learnable hs[0]; Momentum = Hyper.Learnable hs[1] })
                [ 0.01; 0.8 ] "loss, d loss / d lr, d loss / d momentum"

        testPropertyWithConfig config "eps_root > 0 (optax's, inside the root): the fused step's values and gradients are the op-by-op step's" <| fun (c: Case) ->
            use _ = torch.NewDisposeScope()
            // 1e-3: large enough against v' (about 1e-2 here) that a wrong derivative of the root shows
            let adam, tensors = hypersWith 1e-3 c.Form c.WeightDecay
            let p, g, s = setup f64 { c with Transposed = false } adam
            let before = AdamGrad.calls
            let fusedV, fusedG = run fusedStep adam tensors p g s c.Seed
            Expect.isGreaterThan AdamGrad.calls before "the fused function ran"
            let opsV, opsG = run Transform.stepOps adam tensors p g s c.Seed
            Expect.isLessThan (relNorm fusedV opsV) 1e-12 "values"
            Expect.isLessThan (relNorm fusedG opsG) 1e-10 "gradients w.r.t. p, g, m, v and the tensor hyperparameters"

        testCase "mixed dtypes take the op-by-op step" <| fun () ->
            use _ = torch.NewDisposeScope()
            let lr = torch.tensor(0.01, dtype = f64, requires_grad = true)
            let adam = Adam.create { Adam.defaults with Lr = Hyper.Learnable lr }
            let p = Tree.ofSeq [ "x", vec [ 1.0; 2.0 ]; "y", torch.ones([| 3L |], dtype = torch.ScalarType.Float32) ]
            let before = AdamGrad.calls
            let p', _ = fusedStep adam (grad2x p) (adam.Init p) p
            Expect.equal AdamGrad.calls before "not fused: a float64 and a float32 parameter"
            Expect.isTrue p'.Values[0].requires_grad "and still differentiable"

        testCase "non-contiguous tensors take the op-by-op step, as does everything with Transform.fuseGradients off; on by default" <| fun () ->
            use _ = torch.NewDisposeScope()
            let lr = torch.tensor(0.01, dtype = f64, requires_grad = true)
            let p = Tree.single "x" (vec [ 1.0; 2.0 ])
            let q = Tree.single "x" (torch.randn([| 3L; 4L |], dtype = f64).t())
            let before = AdamGrad.calls
            let plain = Adam.create { Adam.defaults with Lr = Hyper.Learnable lr }
            let q', _ = fusedStep plain (grad2x q) (plain.Init q) q
            Expect.equal AdamGrad.calls before "not fused: a transposed tensor"
            Expect.isTrue q'.Values[0].requires_grad "and still differentiable"
            unfusedStep plain (grad2x p) (plain.Init p) p |> ignore
            Expect.equal AdamGrad.calls before "nor with Transform.fuseGradients off"
            Transform.step plain (grad2x p) (plain.Init p) p |> ignore
            Expect.equal AdamGrad.calls (before + 1L) "but by default, when a gradient flows through the step"

        testPropertyWithConfig config "RMSProp, with and without momentum, float64 and float32: the fused step's values and gradients are the op-by-op step's" <| fun (c: Case) (momentum: bool) (single: bool) ->
            use _ = torch.NewDisposeScope()
            let opt, slots, held = rmsPropCase c momentum
            fusedMatchesOps (fun () -> RmsPropGrad.calls) (if single then torch.ScalarType.Float32 else f64) c opt slots held

        testPropertyWithConfig config "Adagrad, with and without lr_decay, float64 and float32: the fused step's values and gradients are the op-by-op step's" <| fun (c: Case) (decay: bool) (single: bool) ->
            use _ = torch.NewDisposeScope()
            let opt, held = adagradCase c decay
            fusedMatchesOps (fun () -> AdagradGrad.calls) (if single then torch.ScalarType.Float32 else f64) c opt [ "scale_by_adagrad", "sum", true ] held

        testCase "RMSProp, T = 20 unrolls: the hypergradients of lr, alpha, weight_decay (plain) and lr, momentum equal the op-by-op ones" <| fun () ->
            use _ = torch.NewDisposeScope()
            unrollMatches (fun () -> RmsPropGrad.calls)
                (fun hs -> RmsProp.create { RmsProp.defaults with Lr = Hyper.Learnable hs[0]; Alpha = Hyper.Learnable hs[1]; WeightDecay = Hyper.Learnable hs[2] })
                [ 0.01; 0.9; 0.01 ] "plain: loss, d/d lr, d/d alpha, d/d weight_decay"
            unrollMatches (fun () -> RmsPropGrad.calls)
                (fun hs -> RmsProp.create { RmsProp.defaults with Lr = Hyper.Learnable hs[0]; Momentum = Hyper.Learnable hs[1] })
                [ 0.005; 0.7 ] "momentum: loss, d/d lr, d/d momentum"

        testCase "Adagrad, T = 20 unroll: the hypergradients of lr, lr_decay and weight_decay equal the op-by-op ones" <| fun () ->
            use _ = torch.NewDisposeScope()
            unrollMatches (fun () -> AdagradGrad.calls)
                // an initial sum: from 0, Adagrad's steps on sum(a x^2) would not depend on weight_decay
                // (every coordinate's gradient is a fixed multiple of x, which the root of the sum cancels)
                (fun hs -> Adagrad.create { Adagrad.defaults with Lr = Hyper.Learnable hs[0]; LrDecay = Hyper.Learnable hs[1]; WeightDecay = Hyper.Learnable hs[2]; InitialAccumulatorValue = 0.5 })
                [ 0.1; 0.05; 0.01 ] "loss, d/d lr, d/d lr_decay, d/d weight_decay"

        testCase "centered RMSProp and non-contiguous tensors take the op-by-op step; RMSProp and Adagrad are not fused with Transform.fuseGradients off" <| fun () ->
            use _ = torch.NewDisposeScope()
            let lr = torch.tensor(0.01, dtype = f64, requires_grad = true)
            let p = Tree.single "x" (vec [ 1.0; 2.0 ])
            let before = RmsPropGrad.calls
            let centered = RmsProp.create { RmsProp.defaults with Lr = Hyper.Learnable lr; Centered = true }
            let p', _ = fusedStep centered (grad2x p) (centered.Init p) p
            Expect.equal RmsPropGrad.calls before "not fused when centered"
            Expect.isTrue p'.Values[0].requires_grad "and still differentiable"
            let plain = RmsProp.create { RmsProp.defaults with Lr = Hyper.Learnable lr }
            unfusedStep plain (grad2x p) (plain.Init p) p |> ignore
            Expect.equal RmsPropGrad.calls before "nor with Transform.fuseGradients off"
            let q = Tree.single "x" (torch.randn([| 3L; 4L |], dtype = f64).t())
            let q', _ = fusedStep plain (grad2x q) (plain.Init q) q
            Expect.equal RmsPropGrad.calls before "nor with a non-contiguous parameter"
            Expect.isTrue q'.Values[0].requires_grad "which is still differentiable"
            let adagrad = Adagrad.create { Adagrad.defaults with Lr = Hyper.Learnable lr }
            let beforeA = AdagradGrad.calls
            unfusedStep adagrad (grad2x p) (adagrad.Init p) p |> ignore
            fusedStep adagrad (grad2x q) (adagrad.Init q) q |> ignore
            Expect.equal AdagradGrad.calls beforeA "Adagrad: not with fuseGradients off, nor with a non-contiguous parameter"
            fusedStep adagrad (grad2x p) (adagrad.Init p) p |> ignore
            Expect.equal AdagradGrad.calls (beforeA + 1L) "but with fuseGradients on a contiguous one"

        testPropertyWithConfig config "AdamW, with and without amsgrad, float64 and float32: the fused step's values and gradients are the op-by-op step's" <| fun (c: Case) (amsgrad: bool) (single: bool) ->
            use _ = torch.NewDisposeScope()
            let tensors, h = hyperForms c.Form adamVariantValues
            let opt, slots, held = adamVariant "adamw" amsgrad c.WeightDecay tensors h
            fusedMatchesOps (fun () -> AdamVariantsGrad.calls) (if single then torch.ScalarType.Float32 else f64) c opt slots held

        testPropertyWithConfig config "AMSGrad, with and without bias correction, float64 and float32: the fused step's values and gradients are the op-by-op step's" <| fun (c: Case) (debias: bool) (single: bool) ->
            use _ = torch.NewDisposeScope()
            let tensors, h = hyperForms c.Form adamVariantValues
            let opt, slots, held = adamVariant "amsgrad" debias c.WeightDecay tensors h
            fusedMatchesOps (fun () -> AdamVariantsGrad.calls) (if single then torch.ScalarType.Float32 else f64) c opt slots held

        testCase "AMSGrad at a tie vmax = v': the fused step splits the max's gradient in halves as torch.maximum does" <| fun () ->
            use _ = torch.NewDisposeScope()
            for single in [ false; true ] do
                let dtype = if single then torch.ScalarType.Float32 else f64
                let c = { Shapes = [ [ 4; 5 ]; [ 37 ] ]; Steps = 2; Seed = 3; Form = Numbers; WeightDecay = false; Transposed = false }
                let tensors, h = hyperForms Numbers adamVariantValues
                let opt, slots, held = adamVariant "amsgrad" true false tensors h
                let p, g, s = setupSlots dtype c opt slots
                // vmax exactly v' = b2 v + (1 - b2) g^2, computed as the step computes it
                let part = partOf "scale_by_amsgrad" s
                let v' = using (torch.no_grad ()) (fun _ -> Optimizers.Transforms.Moments.second (HValue.Num 0.9) (part.Slot "exp_avg_sq") g)
                let tie = Tree.map (fun (x: Tensor) -> x.detach().requires_grad_(true)) v'
                let s = withSlot "scale_by_amsgrad" "max_exp_avg_sq" tie s
                let named = slots |> List.map (fun (k, n, _) -> k, n)
                let before = AdamVariantsGrad.calls
                let fusedV, fusedG = stepGrads fusedStep opt named held p g s c.Seed
                Expect.isGreaterThan AdamVariantsGrad.calls before "the fused function ran"
                let opsV, opsG = stepGrads Transform.stepOps opt named held p g s c.Seed
                let check (stepFn: Transformation -> Tree -> State -> Tree -> Tree * State) =
                    let _, s' = stepFn opt g s p
                    let sl = partOf "scale_by_amsgrad" s'
                    Array.forall2 (fun (a: Tensor) (b: Tensor) -> (a.detach() - b.detach()).abs().max().ToDouble() = 0.0) (sl.Slot "exp_avg_sq").Values tie.Values
                Expect.isTrue (check fusedStep && check Transform.stepOps) "an exact tie in both steps"
                let tolV, tolG = if single then 1e-5, 1e-4 else 1e-12, 1e-10
                Expect.isLessThan (relNorm fusedV opsV) tolV "values"
                Expect.isLessThan (relNorm fusedG opsG) tolG "gradients w.r.t. p, g, m, v, vmax"

        testCase "AdamW and AMSGrad, T = 20 unrolls: the hypergradients of lr, beta1 (beta2, weight_decay) equal the op-by-op ones" <| fun () ->
            use _ = torch.NewDisposeScope()
            let calls () = AdamVariantsGrad.calls
            unrollMatches calls
                (fun hs -> AdamW.create { AdamW.defaults with Lr = Hyper.Learnable hs[0]; Beta1 = Hyper.Learnable hs[1]; Beta2 = Hyper.Learnable hs[2]; WeightDecay = Hyper.Learnable hs[3] })
                [ 0.02; 0.85; 0.95; 0.1 ] "AdamW: loss, d/d lr, d/d beta1, d/d beta2, d/d weight_decay"
            unrollMatches calls
                (fun hs -> AdamW.create { AdamW.defaults with Lr = Hyper.Learnable hs[0]; Beta1 = Hyper.Learnable hs[1]; Amsgrad = true })
                [ 0.02; 0.85 ] "AdamW amsgrad: loss, d/d lr, d/d beta1"
            unrollMatches calls
                (fun hs -> AmsGrad.create { AmsGrad.defaults with Lr = Hyper.Learnable hs[0]; Beta1 = Hyper.Learnable hs[1]; Beta2 = Hyper.Learnable hs[2]; WeightDecay = Hyper.Learnable hs[3] })
                [ 0.02; 0.85; 0.95; 0.01 ] "AMSGrad: loss, d/d lr, d/d beta1, d/d beta2, d/d weight_decay"
            unrollMatches calls
                (fun hs -> AmsGrad.create { AmsGrad.defaults with Lr = Hyper.Learnable hs[0]; Beta1 = Hyper.Learnable hs[1]; Debias = false })
                [ 0.01; 0.85 ] "AMSGrad without bias correction: loss, d/d lr, d/d beta1"

        testCase "AdamW and AMSGrad: eps_root and non-contiguous tensors take the op-by-op step, and nothing is fused with Transform.fuseGradients off" <| fun () ->
            use _ = torch.NewDisposeScope()
            let lr = torch.tensor(0.01, dtype = f64, requires_grad = true)
            let p = Tree.single "x" (vec [ 1.0; 2.0 ])
            let q = Tree.single "x" (torch.randn([| 3L; 4L |], dtype = f64).t())
            let before = AdamVariantsGrad.calls
            for opt in [ AdamW.create { AdamW.defaults with Lr = Hyper.Learnable lr }; AmsGrad.create { AmsGrad.defaults with Lr = Hyper.Learnable lr } ] do
                unfusedStep opt (grad2x p) (opt.Init p) p |> ignore
                let q', _ = fusedStep opt (grad2x q) (opt.Init q) q
                Expect.isTrue q'.Values[0].requires_grad "differentiable op by op"
            for opt in [ AdamW.create { AdamW.defaults with Lr = Hyper.Learnable lr; EpsRoot = 1e-8 }; AmsGrad.create { AmsGrad.defaults with Lr = Hyper.Learnable lr; EpsRoot = 1e-8 } ] do
                fusedStep opt (grad2x p) (opt.Init p) p |> ignore
            Expect.equal AdamVariantsGrad.calls before "not fused with fuseGradients off, nor non-contiguous, nor with eps_root"
            let adamw = AdamW.create { AdamW.defaults with Lr = Hyper.Learnable lr }
            fusedStep adamw (grad2x p) (adamw.Init p) p |> ignore
            Expect.equal AdamVariantsGrad.calls (before + 1L) "but with fuseGradients on a contiguous one"

        testPropertyWithConfig config "SGD with momentum, float32 with non-temporal stores (Kernel.streamBytes = 0): the fused step's values and gradients are the op-by-op step's" <| fun (c: Case) (nesterov: bool) ->
            use _ = torch.NewDisposeScope()
            let tensors, h = hyperForms c.Form [ "lr", 0.05; "momentum", 0.9; "dampening", 0.3; "weight_decay", 0.02 ]
            let opt =
                Sgd.create
                    { Lr = h "lr"; Momentum = h "momentum"; Nesterov = nesterov
                      Dampening = (if nesterov then F 0.0 else h "dampening")
                      WeightDecay = (if c.WeightDecay then h "weight_decay" else F 0.0) }
            let held = tensors |> List.indexed |> List.filter (fun (i, _) -> i < 2 || (i = 2 && not nesterov) || (i = 3 && c.WeightDecay)) |> List.map snd
            streamedMatchesOps (fun () -> SgdGrad.calls) c opt [ "trace_momentum", "momentum_buffer", false ] held

        testPropertyWithConfig config "RMSProp, float32 with non-temporal stores (Kernel.streamBytes = 0): the fused step's values and gradients are the op-by-op step's" <| fun (c: Case) (momentum: bool) ->
            use _ = torch.NewDisposeScope()
            let opt, slots, held = rmsPropCase c momentum
            streamedMatchesOps (fun () -> RmsPropGrad.calls) c opt slots held

        testPropertyWithConfig config "Adagrad, float32 with non-temporal stores (Kernel.streamBytes = 0): the fused step's values and gradients are the op-by-op step's" <| fun (c: Case) (decay: bool) ->
            use _ = torch.NewDisposeScope()
            let opt, held = adagradCase c decay
            streamedMatchesOps (fun () -> AdagradGrad.calls) c opt [ "scale_by_adagrad", "sum", true ] held

        testPropertyWithConfig config "AdamW and AMSGrad, float32 with non-temporal stores (Kernel.streamBytes = 0): the fused step's values and gradients are the op-by-op step's" <| fun (c: Case) (amsgrad: bool) (flag: bool) ->
            use _ = torch.NewDisposeScope()
            let tensors, h = hyperForms c.Form adamVariantValues
            // flag: AdamW's amsgrad, or AMSGrad's bias correction
            let opt, slots, held = adamVariant (if amsgrad then "amsgrad" else "adamw") flag c.WeightDecay tensors h
            streamedMatchesOps (fun () -> AdamVariantsGrad.calls) c opt slots held
    ]
