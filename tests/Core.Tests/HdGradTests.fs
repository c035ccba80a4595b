/// The differentiable fused steps of SGD-HD, SGDN-HD and Adam-HD (Hypergradient/Hd.fs: the
/// hypergradient as one autograd function over all tensors, the rates' 0-d ops, then the model
/// step: one autograd call, Hd's SgdnStep or AdamGrad.applyAll with the directions; SGD's two ops) against the
/// op-by-op update they replace when a gradient flows: values, state layout and first derivatives
/// with respect to the parameters, the gradients, every state tensor the step reads and
/// hypergrad_lr, for each model and learning-rate optimizer, with and without weight decay;
/// T = 20 unrolls.
module Optimizers.Tests.HdGradTests

open System
open Expecto
open FsCheck
open FsCheck.FSharp
open TorchSharp
open Optimizers
open Optimizers.Fused
open Optimizers.Hypergradient
open Optimizers.Tests.Check

type HdGradCase =
    { Model: ModelOptimizer
      Shapes: int list list
      /// warm-up steps before the step under test
      Steps: int
      Seed: int
      Lop: LrOptimizer
      WeightDecay: bool
      Clip: bool
      /// hypergrad_lr as a tensor requiring grad (else a number)
      Learnable: bool
      Transposed: bool }

type HdGradArbs =
    static member Case() : Arbitrary<HdGradCase> =
        gen {
            let! model = Gen.elements [ SgdOp; SgdnOp; AdamOp ]
            let! shapes = gradShapes
            let! steps = Gen.choose (0, 5)
            let! seed = Gen.choose (0, 100000)
            let! lop = Gen.elements [ SgdLop; SgdnLop; AdamLop ]
            let! wd = Gen.elements [ true; false ]
            let! clip = Gen.frequency [ 3, Gen.constant false; 1, Gen.constant true ]
            let! learnable = Gen.frequency [ 3, Gen.constant true; 1, Gen.constant false ]
            let! transposed = transposedViews
            return { Model = model; Shapes = shapes; Steps = steps; Seed = seed; Lop = lop; WeightDecay = wd; Clip = clip; Learnable = learnable; Transposed = transposed }
        }
        |> Arb.fromGen

let config = { FsCheckConfig.defaultConfig with maxTest = 40; arbitrary = [ typeof<HdGradArbs> ] }

/// An HD optimizer (global rate) with the case's model, learning-rate optimizer, weight decay and
/// guard; Adam's beta2 0.9 so that v moves within the warm-up.
let hdOf (model: ModelOptimizer) (lop: LrOptimizer) (wd: bool) (clip: bool) (beta: Hyper) =
    Hd.create
        { Hd.forModel model lop with
            Lr = 0.01
            HypergradLr = beta
            Beta1 = 0.8
            Beta2 = 0.9
            WeightDecay = (if wd then 0.05 else 0.0)
            Guard = (if clip then ClipAtZero else Unguarded) }

/// The state tensors the step reads, in a fixed order: the direction, the model optimizer's slots
/// (Adam's moments, SGDN's momentum buffer, none for SGD), the rate and the learning-rate
/// optimizer's moments.
let stateInputs (s: State) =
    let inner = s.Children.Head.Slots |> Map.toArray |> Array.collect (fun (_, t) -> t.Values)
    Array.concat [ (s.Slot "direction").Values; inner; (s.Slot "lr").Values; (s.Slot "lop_m").Values; (s.Slot "lop_v").Values ]

/// Every tensor of a new state, in a fixed order (the same as stateInputs, then hypergrad_lr).
let stateOutputs (s: State) = Array.append (stateInputs s) (s.Slot "hypergrad_lr").Values

/// Parameters, gradients and a state after `c.Steps` warm-up steps whose tensors are then all
/// replaced by fresh leaves requiring grad (a random direction, so that h <> 0 at any step; a
/// random momentum buffer, which SGDN's first step does not read).
let setup (dtype: torch.ScalarType) (c: HdGradCase) (opt: Transformation) =
    use gen = new torch.Generator(uint64 c.Seed)
    let names = c.Shapes |> List.mapi (fun i _ -> $"t{i}")
    let make positive = Tree.ofSeq (List.zip names (c.Shapes |> List.map (FusedGradTests.leaf gen dtype c.Transposed positive)))
    let p, g = make false, make false
    let mutable s = opt.Init p
    using (torch.no_grad ()) (fun _ ->
        for _ in 1 .. c.Steps do s <- Transform.stepOps opt (make false) s p |> snd)
    let fresh (t: Tree) = Tree.map (fun (x: Tensor) -> x.detach().clone().requires_grad_(true)) t
    let a = s.Children.Head
    let inner = { a with Slots = a.Slots |> Map.map (fun k _ -> make (k = "exp_avg_sq")) }
    let slots = s.Slots |> Map.map (fun k t -> if k = "direction" then make false else fresh t)
    p, g, { s with Slots = slots; Children = [ inner ] }

/// The step's values (p' and every state tensor) and the gradients of a random weighing of them
/// with respect to p, g, the state tensors it reads and `hyperTensors` (zeros for an input the
/// step does not read).
let stepGrads (stepFn: Transformation -> Tree -> State -> Tree -> Tree * State) (opt: Transformation) (hyperTensors: Tensor list) (p: Tree) (g: Tree) (s: State) (seed: int) =
    FusedGradTests.weighedGrads stepFn opt stateOutputs stateInputs hyperTensors p g s seed

/// The layout of a state: kind, count and slot names, recursively.
let rec layout (s: State) : string list =
    [ yield $"{s.Kind}#{s.Count}: {String.Join(',', s.Slots |> Map.toSeq |> Seq.map (fun (k, t) -> k + string t.Count))}"
      for c in s.Children do yield! layout c ]

/// The fused step against stepOps on one case: the fused functions ran exactly when every tensor
/// is contiguous, the states have one layout, values and gradients agree to the tolerances.
let fusedMatchesOps (dtype: torch.ScalarType) (c: HdGradCase) =
    let betaT = torch.tensor(1e-3, dtype = f64, requires_grad = true)
    let opt = hdOf c.Model c.Lop c.WeightDecay c.Clip (if c.Learnable then Hyper.Learnable betaT else Hyper.Fixed 1e-3)
    let hyperTensors = if c.Learnable then [ betaT ] else []
    let p, g, s = setup dtype c opt
    // SGD's model step is two ops, no call to count
    let modelCalls () = match c.Model with AdamOp -> AdamGrad.calls | SgdnOp -> Hd.sgdnStepCalls | SgdOp -> 0L
    let dots, steps = Hd.gradCalls, modelCalls ()
    let fusedV, fusedG, fusedS = stepGrads FusedGradTests.fusedStep opt hyperTensors p g s c.Seed
    let contiguous = not c.Transposed || c.Shapes |> List.forall (fun sh -> sh.Length <> 2)
    Expect.equal (Hd.gradCalls > dots) contiguous "the fused hypergradient ran exactly when every tensor is contiguous"
    // at least: other lists may run AdamGrad at the same time
    if contiguous && c.Model <> SgdOp then Expect.isGreaterThanOrEqual (modelCalls () - steps) 1L "and the fused model step (one call over all tensors)"
    let opsV, opsG, opsS = stepGrads Transform.stepOps opt hyperTensors p g s c.Seed
    Expect.equal (layout fusedS) (layout opsS) "the state's layout and counts"
    let tolV, tolG = if dtype = f64 then 1e-12, 1e-10 else 1e-5, 1e-4
    Expect.isLessThan (FusedGradTests.relNorm fusedV opsV) tolV "values of p' and the state"
    Expect.isLessThan (FusedGradTests.relNorm fusedG opsG) tolG "gradients w.r.t. p, g, the state and hypergrad_lr"
    // finite too: Expect.isLessThan passes NaN, so a NaN on both sides would go unseen
    Expect.isTrue (Double.IsFinite(Array.append opsV opsG |> Array.sumBy abs)) "finite values and gradients"
    Expect.isGreaterThan (opsG |> Array.sumBy abs) 0.0 "gradients that are not all zero"

/// T steps of an HD optimizer on sum_i sum(a_i x_i^2) over three tensors from x0 (requiring grad),
/// after `warm` steps without a graph: the loss, d loss / d hypergrad_lr and d loss / d x0.
let unroll (stepFn: Transformation -> Tree -> State -> Tree -> Tree * State) (model: ModelOptimizer) (lop: LrOptimizer) (wd: bool) (warm: int) (steps: int) =
    use gen = new torch.Generator(17UL)
    let shapes = [ [| 30L |]; [| 4L; 5L |]; [| 7L |] ]
    let a = shapes |> List.map (fun sh -> torch.rand(sh, dtype = f64, generator = gen) * 4.0 + 0.1) |> Array.ofList
    let x0 = Tree.ofSeq (shapes |> List.mapi (fun i sh -> $"t{i}", torch.randn(sh, dtype = f64, generator = gen)))
    // SGD's h = -g . d_{t-1} grows as |g|^2 (Adam's as |g|): a smaller beta keeps its rate stable
    let beta = torch.tensor((if model = AdamOp then 1e-4 else 1e-6), dtype = f64, requires_grad = true)
    let opt = hdOf model lop wd false (Hyper.Learnable beta)
    let grad (p: Tree) = { p with Values = Array.map2 (fun (x: Tensor) (ai: Tensor) -> 2.0 * ai * x) p.Values a }
    let mutable p = x0
    let mutable s = opt.Init p
    using (torch.no_grad ()) (fun _ ->
        for _ in 1 .. warm do
            let p', s' = Transform.stepOps opt (grad p) s p
            p <- p'
            s <- s')
    let start = Tree.map (fun (x: Tensor) -> x.detach().clone().requires_grad_(true)) p
    p <- start
    for _ in 1 .. steps do
        let p', s' = stepFn opt (grad p) s p
        p <- p'
        s <- s'
    let loss = Array.map2 (fun (x: Tensor) (ai: Tensor) -> (ai * x * x).sum()) p.Values a |> Array.reduce (+)
    let grads = torch.autograd.grad([| loss |], Array.append [| beta |] start.Values)
    Array.concat [ [| loss.ToDouble() |]; grads |> Seq.collect (fun (t: Tensor) -> t.reshape(-1L).data<float>().ToArray()) |> Array.ofSeq ]

let models = [ SgdOp; SgdnOp; AdamOp ]

[<Tests>]
let tests =
    // one group with FusedGradTests: both set the global Transform.fuseGradients
    testSequencedGroup "fuseGradients" <| testList "hdgrad" [
        testPropertyWithConfig config "float64: the fused HD step's values, state and gradients are the op-by-op step's (sgd, sgdn, adam)" <| fun (c: HdGradCase) ->
            use _ = torch.NewDisposeScope()
            fusedMatchesOps f64 c

        testPropertyWithConfig { config with maxTest = 20 } "float32: the fused HD step's values and gradients are the op-by-op step's to float32 rounding" <| fun (c: HdGradCase) ->
            use _ = torch.NewDisposeScope()
            fusedMatchesOps torch.ScalarType.Float32 { c with Transposed = false }

        testPropertyWithConfig { config with maxTest = 10 } "float32 with non-temporal stores (Kernel.streamBytes = 0): the same" <| fun (c: HdGradCase) ->
            use _ = torch.NewDisposeScope()
            let saved = Kernel.streamBytes
            Kernel.streamBytes <- 0L
            try fusedMatchesOps torch.ScalarType.Float32 { c with Transposed = false } finally Kernel.streamBytes <- saved

        testCase "every model and learning-rate optimizer, with and without weight decay: the values and gradients on fixed shapes" <| fun () ->
            use _ = torch.NewDisposeScope()
            for model in models do
                for lop in [ SgdLop; SgdnLop; AdamLop ] do
                    for wd in [ false; true ] do
                        for steps in [ 0; 3 ] do
                            fusedMatchesOps f64
                                { Model = model; Shapes = [ [ 4; 5 ]; [ 70001 ]; [ 1 ] ]; Steps = steps; Seed = 42 + steps; Lop = lop
                                  WeightDecay = wd; Clip = false; Learnable = true; Transposed = false }

        testCase "T = 20 unrolls: the loss and the hypergradients of hypergrad_lr and of the initial parameters equal the op-by-op ones" <| fun () ->
            use _ = torch.NewDisposeScope()
            for model in models do
                for lop in [ SgdLop; SgdnLop; AdamLop ] do
                    for wd in [ false; true ] do
                        // Adam on h from its first step takes sqrt(v) at v = 0 (h_1 = 0, d_0 = 0): a NaN
                        // derivative through g_1, op by op as fused; from one step on v > 0
                        let warm = if lop = AdamLop then 1 else 0
                        let what = $"{Hd.opName model} op, {Hd.lopName lop} lop, weight decay {wd}: loss, d/d hypergrad_lr, d/d x0"
                        let dots = Hd.gradCalls
                        let fused = unroll FusedGradTests.fusedStep model lop wd warm 20
                        Expect.equal (Hd.gradCalls - dots) 20L $"{what}: the fused step ran at every step"
                        let ops = unroll Transform.stepOps model lop wd warm 20
                        Expect.isTrue (Array.forall Double.IsFinite ops) $"{what}: finite"
                        closeRel 1e-10 fused ops what
                        Expect.isTrue (abs ops[1] > 1e-8) $"{what}: a hypergradient of hypergrad_lr that is not trivially zero ({ops[1]})"

        testCase "non-contiguous tensors, fuseGradients off, and the forms without the fused kernel take the op-by-op step" <| fun () ->
            use _ = torch.NewDisposeScope()
            let beta = torch.tensor(1e-3, dtype = f64, requires_grad = true)
            let p = Tree.single "x" (vec [ 1.0; -2.0; 0.5 ])
            let q = Tree.single "x" (torch.randn([| 3L; 4L |], dtype = f64).t())
            for model in models do
                let opt = hdOf model AdamLop false false (Hyper.Learnable beta)
                let before = Hd.gradCalls
                let p', _ = FusedGradTests.unfusedStep opt (grad2x p) (opt.Init p) p
                Expect.equal Hd.gradCalls before $"{Hd.opName model}: not fused with Transform.fuseGradients off"
                Expect.isTrue p'.Values[0].requires_grad "differentiable op by op"
                let q', _ = FusedGradTests.fusedStep opt (grad2x q) (opt.Init q) q
                Expect.equal Hd.gradCalls before "nor with a non-contiguous parameter"
                Expect.isTrue q'.Values[0].requires_grad "which is still differentiable"
                Transform.step opt (grad2x p) (opt.Init p) p |> ignore
                Expect.equal Hd.gradCalls (before + 1L) "but by default on a contiguous one"
            let differentiable (o: HdOptions) = match (Hd.create o).Fast with Some { Differentiable = Some _ } -> true | _ -> false
            for model in models do
                let o = { Hd.forModel model SgdLop with HypergradLr = Hyper.Learnable beta }
                let m = Hd.opName model
                Expect.isTrue (differentiable o) $"{m} with one global rate has it"
                Expect.isTrue (differentiable { o with Guard = ClipAtZero; LrOptimizer = AdamLop }) $"{m}: also clipped at 0, with any learning-rate optimizer"
                Expect.isFalse (differentiable { o with PerParameter = true }) $"{m}: not per parameter"
                Expect.isFalse (differentiable { o with Guard = Multiplicative }) $"{m}: nor with the multiplicative guard"
    ]
