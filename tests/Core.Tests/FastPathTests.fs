/// The fast path (Transformation.Fast, Transform.stepInPlace, the kernels in Fused/): N in-place
/// steps give the numbers and the state of N pure steps, for random shapes (sizes not divisible
/// by the SIMD width, several tensors, some large enough to be split over workers), random
/// gradients and options, hyperparameters as numbers, schedules or tensors; float64 and
/// non-contiguous tensors through the TorchSharp fallback. Speed is measured by `bench`, never here.
module Optimizers.Tests.FastPathTests

open System
open System.IO
open TorchSharp
open Expecto
open FsCheck
open FsCheck.FSharp
open Optimizers
open Optimizers.Handcrafted
open Optimizers.Transforms
open Optimizers.Fused
open Optimizers.Tests.Check

/// How a parameter tensor is laid out in memory.
type Layout =
    /// contiguous: the fused loop takes it (float32)
    | Contiguous
    /// a transposed view of a 2-d tensor: non-contiguous, so the fallback
    | Transposed
    /// every other element of a larger 1-d tensor: non-contiguous, so the fallback
    | Strided

type TensorSpec = { Shape: int list; Layout: Layout }

/// How hyperparameters are given: numbers, schedules (read at the step), 0-d tensors (the value).
type HyperKind =
    | Number
    | Schedule
    | TensorValue

type Case =
    { Tensors: TensorSpec list
      Float64: bool
      Steps: int
      Seed: int
      Hypers: HyperKind }

type SgdCase = { Case: Case; Lr: float; Momentum: float; Dampening: float; WeightDecay: float; Nesterov: bool }

type AdamCase = { Case: Case; Lr: float; Beta1: float; Beta2: float; Eps: float; EpsRoot: float; WeightDecay: float }

/// AMSGrad's options on top of Adam's (AdamW's amsgrad uses the bias-corrected form).
type AmsCase = { Adam: AdamCase; Debias: bool }

type RmsPropCase = { Case: Case; Lr: float; Alpha: float; Eps: float; WeightDecay: float; Momentum: float; Centered: bool }

type AdagradCase = { Case: Case; Lr: float; LrDecay: float; WeightDecay: float; InitialAccumulator: float; Eps: float }

/// SGD-HD, SGDN-HD or Adam-HD (one global rate) with any learning-rate optimizer, clipped at 0 or not.
type HdCase =
    { Case: Case; Model: Optimizers.Hypergradient.ModelOptimizer; Lop: Optimizers.Hypergradient.LrOptimizer
      Clip: bool; Lr: float; Beta: float; WeightDecay: float }

let private tensorSpec =
    gen {
        let! kind = Gen.frequency [ 12, Gen.constant 0; 6, Gen.constant 1; 1, Gen.constant 2 ]
        match kind with
        | 0 ->
            let! n = Gen.choose (1, 100)
            let! layout = Gen.frequency [ 4, Gen.constant Contiguous; 1, Gen.constant Strided ]
            return { Shape = [ n ]; Layout = layout }
        | 1 ->
            let! a = Gen.choose (1, 13)
            let! b = Gen.choose (1, 13)
            let! layout = Gen.frequency [ 3, Gen.constant Contiguous; 1, Gen.constant Transposed ]
            return { Shape = [ a; b ]; Layout = layout }
        | _ ->
            // More than one chunk of the fused loop: split over workers, with a tail. Rare and
            // not much larger than a chunk: long native calls widen TorchSharp's finalizer race
            // (see `scoped`) in the pure path these are compared with.
            let! n = Gen.choose (Kernel.chunkElements + 1, Kernel.chunkElements + 3000)
            return { Shape = [ n ]; Layout = Contiguous }
    }

let private case =
    gen {
        let! count = Gen.choose (1, 4)
        let! tensors = Gen.listOfLength count tensorSpec
        let! float64 = Gen.frequency [ 3, Gen.constant false; 1, Gen.constant true ]
        let! steps = Gen.choose (1, 7)
        let! seed = Gen.choose (0, 1_000_000)
        let! hypers = Gen.frequency [ 3, Gen.constant Number; 1, Gen.constant Schedule; 1, Gen.constant TensorValue ]
        return { Tensors = tensors; Float64 = float64; Steps = steps; Seed = seed; Hypers = hypers }
    }

type Arbs =
    static member Sgd() : Arbitrary<SgdCase> =
        gen {
            let! c = case
            let! lr = Gen.elements [ 1e-3; 0.01; 0.1 ]
            let! momentum = Gen.elements [ 0.0; 0.5; 0.9 ]
            let! nesterov = if momentum > 0.0 then Gen.elements [ false; true ] else Gen.constant false
            let! dampening = if nesterov then Gen.constant 0.0 else Gen.elements [ 0.0; 0.3 ]
            let! wd = Gen.elements [ 0.0; 0.01 ]
            return { Case = c; Lr = lr; Momentum = momentum; Dampening = dampening; WeightDecay = wd; Nesterov = nesterov }
        }
        |> Arb.fromGen

    static member Adam() : Arbitrary<AdamCase> =
        gen {
            let! c = case
            let! lr = Gen.elements [ 1e-3; 0.01; 0.1 ]
            let! b1 = Gen.elements [ 0.0; 0.5; 0.9 ]
            let! b2 = Gen.elements [ 0.9; 0.999 ]
            let! eps = Gen.elements [ 1e-8; 1e-3 ]
            let! epsRoot = Gen.elements [ 0.0; 0.0; 1e-8 ]
            let! wd = Gen.elements [ 0.0; 0.01 ]
            return { Case = c; Lr = lr; Beta1 = b1; Beta2 = b2; Eps = eps; EpsRoot = epsRoot; WeightDecay = wd }
        }
        |> Arb.fromGen

    static member Ams() : Arbitrary<AmsCase> =
        gen {
            let! a = Arbs.Adam().Generator
            let! debias = Gen.elements [ true; false ]
            return { Adam = a; Debias = debias }
        }
        |> Arb.fromGen

    static member RmsProp() : Arbitrary<RmsPropCase> =
        gen {
            let! c = case
            let! lr = Gen.elements [ 1e-3; 0.01 ]
            let! centered = Gen.elements [ false; true ]
            // centered with alpha = 0 divides by sqrt(g^2 - g^2) + eps: the rounding of a zero
            // decides the step (NaN when it is negative), in the pure path as in any other
            let! alpha = if centered then Gen.elements [ 0.9; 0.99 ] else Gen.elements [ 0.0; 0.9; 0.99 ]
            let! eps = Gen.elements [ 1e-8; 1e-3 ]
            let! wd = Gen.elements [ 0.0; 0.01 ]
            let! momentum = Gen.elements [ 0.0; 0.9 ]
            return { Case = c; Lr = lr; Alpha = alpha; Eps = eps; WeightDecay = wd; Momentum = momentum; Centered = centered }
        }
        |> Arb.fromGen

    static member Adagrad() : Arbitrary<AdagradCase> =
        gen {
            let! c = case
            let! lr = Gen.elements [ 1e-3; 0.01; 0.1 ]
            let! lrDecay = Gen.elements [ 0.0; 0.1 ]
            let! wd = Gen.elements [ 0.0; 0.01 ]
            let! init = Gen.elements [ 0.0; 0.1 ]
            let! eps = Gen.elements [ 1e-10; 1e-3 ]
            return { Case = c; Lr = lr; LrDecay = lrDecay; WeightDecay = wd; InitialAccumulator = init; Eps = eps }
        }
        |> Arb.fromGen

    static member Hd() : Arbitrary<HdCase> =
        gen {
            let! c = case
            let! model = Gen.elements [ Optimizers.Hypergradient.SgdOp; Optimizers.Hypergradient.SgdnOp; Optimizers.Hypergradient.AdamOp ]
            let! lop = Gen.elements [ Optimizers.Hypergradient.SgdLop; Optimizers.Hypergradient.SgdnLop; Optimizers.Hypergradient.AdamLop ]
            let! clip = Gen.elements [ false; true ]
            let! lr = Gen.elements [ 1e-3; 0.01 ]
            let! beta = Gen.elements [ 1e-7; 1e-5 ]
            let! wd = Gen.elements [ 0.0; 0.01 ]
            return { Case = c; Model = model; Lop = lop; Clip = clip; Lr = lr; Beta = beta; WeightDecay = wd }
        }
        |> Arb.fromGen

let config = { FsCheckConfig.defaultConfig with maxTest = 40; arbitrary = [ typeof<Arbs> ] }

/// A hyperparameter of the case's kind: a number, a schedule decaying from v, or a 0-d tensor.
let hyper (kind: HyperKind) (v: float) : Hyper =
    match kind with
    | Number -> Hyper.Fixed v
    | Schedule -> Hyper.Scheduled(fun t -> v * Math.Pow(0.9, float t))
    | TensorValue -> Hyper.Learnable(torch.tensor (v, dtype = f64))

let private dtypeOf (c: Case) = if c.Float64 then torch.ScalarType.Float64 else torch.ScalarType.Float32

/// A tensor of the spec's shape and layout with uniform values in [-scale, scale), drawn by
/// TorchSharp from `gen` (no managed arrays: fewer GCs, see `scoped`).
let private make (gen: torch.Generator) (dtype: torch.ScalarType) (spec: TensorSpec) (scale: float) : Tensor =
    let shape = spec.Shape |> List.map int64 |> Array.ofList
    // (Scalars through the core's helpers, never implicit: see `scoped`.)
    let logical = Tensors.addNum (HValue.Num(2.0 * scale) * torch.rand(shape, dtype = dtype, generator = gen)) (-scale)
    match spec.Layout, spec.Shape with
    | Transposed, [ _; _ ] -> logical.t().contiguous().t()
    | Strided, [ n ] ->
        let base' = torch.zeros([| 2L * int64 n |], dtype = dtype)
        let view = base'.slice(0L, 0L, 2L * int64 n, 2L)
        view.copy_(logical) |> ignore
        view
    | _ -> logical

/// The start and the per-step gradients of a case (gradients in the parameters' layouts).
let problem (c: Case) : Tree * Tree list =
    use gen = new torch.Generator(uint64 c.Seed)
    let dtype = dtypeOf c
    let names = c.Tensors |> List.mapi (fun i _ -> $"t{i}") |> Array.ofList
    let tree (scale: float) = { Names = names; Values = c.Tensors |> List.map (fun s -> make gen dtype s scale) |> Array.ofList }
    let start = tree 2.0
    let grads = [ for k in 1 .. c.Steps -> tree (if k % 3 = 0 then 100.0 else 1.0) ]
    start, grads

/// The kinds and counts of a state, recursively: its layout.
let rec layout (s: State) : string list =
    [ yield $"{s.Kind}:{s.Count}:[{String.Join(',', s.Slots.Keys)}]"
      for c in s.Children do yield! layout c ]

let private tolerance (c: Case) = if c.Float64 then 1e-12 else 1e-5

/// max |a - b| / max(1, |b|) <= tol, computed by TorchSharp in float64 (no large managed arrays,
/// which would make the GC, and TorchSharp's finalizers, run far more often; see `scoped`).
let closeT (tol: float) (actual: Tensor) (expected: Tensor) (what: string) =
    Expect.sequenceEqual actual.shape expected.shape $"{what}: shape"
    if actual.numel () > 0L then
        let a = actual.detach().to_type(f64).flatten()
        let e = expected.detach().to_type(f64).flatten()
        let err = (Tensors.sub a e).abs() / Tensors.withScalar (fun t s -> t.clamp_min s) (e.abs()) 1.0
        let i = err.argmax().ToInt64()
        let worst = err[i].ToDouble()
        if not (worst <= tol) then
            failtestf "%s: element %d is %.17g, expected %.17g (relative error %.3g > %.3g)" what i (a[i].ToDouble()) (e[i].ToDouble()) worst tol

/// Expect equal parameters and states (layout exactly, values to the tolerance).
let expectSame (tol: float) (what: string) (pPure: Tree, sPure: State) (pFast: Tree, sFast: State) =
    Array.iteri2 (fun i a e -> closeT tol a e $"{what}: parameter {i}") pFast.Values pPure.Values
    Expect.equal (layout sFast) (layout sPure) $"{what}: state layout and counts"
    List.iteri2 (fun i a e -> closeT tol a e $"{what}: state tensor {i}") (State.tensors sFast) (State.tensors sPure)

/// The three HD optimizers on a fixed case, with weight decay.
let hdCases (c: Case) : HdCase list =
    [ for model in [ Optimizers.Hypergradient.SgdOp; Optimizers.Hypergradient.SgdnOp; Optimizers.Hypergradient.AdamOp ] ->
        { Case = c; Model = model; Lop = Optimizers.Hypergradient.AdamLop; Clip = false; Lr = 0.01; Beta = 1e-5; WeightDecay = 0.01 } ]

/// Run a property body in a DisposeScope. Besides freeing the tensors at once, the scope holds
/// every temporary tensor until the end: a TorchSharp tensor that nothing references can be
/// finalized by the GC while a native call still uses it (TorchSharp 0.107 passes raw handles
/// without GC.KeepAlive), which corrupts memory. Scalars are not tracked by scopes: the core's
/// arithmetic passes its own through Tensors.withScalar / add / addNum, and so does this file
/// (no `tensor * 2.0`, no `a + b` on tensors, whose implicit alpha Scalar is exposed). Before
/// that, about one property case in 10,000 failed with "Unknown scalar type" or wrong numbers;
/// after it, 38,000 cases passed. The fast path's kernels hold their Scalars themselves.
let scoped (f: unit -> unit) =
    use _ = torch.NewDisposeScope()
    f ()

/// N steps op by op (the reference), N fused steps into new tensors and N fused steps in place
/// from the same start; compared after every step.
let fastEqualsPureWithin (tol: float) (opt: Transformation) (c: Case) =
    Expect.isSome opt.Fast $"{opt.Name} has a fast path"
    let kernel = opt.Fast.Value
    let start, grads = problem c
    let mutable pRef, sRef = Tree.clone start, opt.Init start
    let mutable pFresh, sFresh = Tree.clone start, opt.Init start
    let pFast = start
    let mutable sFast = opt.Init pFast
    for k, g in List.indexed grads do
        let before = Tree.clone g
        let p', s' = Transform.stepOps opt g sRef pRef
        pRef <- p'
        sRef <- s'
        let p', s' = kernel.Apply Target.Fresh g sFresh pFresh
        pFresh <- p'
        sFresh <- s'
        sFast <- Transform.stepInPlace opt g sFast pFast
        Array.iter2 (fun (a: Tensor) (b: Tensor) -> Expect.isTrue (a.eq(b).all().ToBoolean()) "the fused kernel never changes the gradients") g.Values before.Values
        expectSame tol $"step {k + 1}, fused into new tensors" (pRef, sRef) (pFresh, sFresh)
        expectSame tol $"step {k + 1}, fused in place" (pRef, sRef) (pFast, sFast)

let fastEqualsPure (opt: Transformation) (c: Case) = fastEqualsPureWithin (tolerance c) opt c

/// At every step from one common state: the op-by-op step (the reference), the fused step into
/// new tensors and the in-place step (on copies), compared; the run goes on from the fused state.
/// For the HD optimizers, whose separate runs drift apart for a reason that is not the kernel's (see
/// hdTolerance), this pins each step; `tol` is hdTolerance, since even from one state the
/// hypergradient's sum is added in another order (float64 too), which its condition number amplifies.
let stepwiseEqualsPure (tol: float) (opt: Transformation) (c: Case) =
    let kernel = opt.Fast.Value
    let start, grads = problem c
    let mutable p, s = Tree.clone start, opt.Init start
    for k, g in List.indexed grads do
        let before = Tree.clone g
        let pCopy, sCopy = Tree.clone p, State.mapTensors (fun t -> t.clone ()) s
        let expected = Transform.stepOps opt g s p
        let pFresh, sFresh = kernel.Apply Target.Fresh g s p
        let sInPlace = Transform.stepInPlace opt g sCopy pCopy
        Array.iter2 (fun (a: Tensor) (b: Tensor) -> Expect.isTrue (a.eq(b).all().ToBoolean()) "the fused kernel never changes the gradients") g.Values before.Values
        expectSame tol $"step {k + 1} from a common state, fused into new tensors" expected (pFresh, sFresh)
        expectSame tol $"step {k + 1} from a common state, fused in place" expected (pCopy, sInPlace)
        p <- pFresh
        s <- sFresh

let sgdOf (c: SgdCase) : Transformation =
    let h = hyper c.Case.Hypers
    Sgd.create
        { Lr = h c.Lr; Momentum = (if c.Momentum = 0.0 then Hyper.Fixed 0.0 else h c.Momentum)
          Dampening = h c.Dampening; WeightDecay = (if c.WeightDecay = 0.0 then Hyper.Fixed 0.0 else h c.WeightDecay)
          Nesterov = c.Nesterov }

let adamOf (c: AdamCase) : Transformation =
    let h = hyper c.Case.Hypers
    Adam.create
        { Lr = h c.Lr; Beta1 = h c.Beta1; Beta2 = h c.Beta2; Eps = c.Eps; EpsRoot = c.EpsRoot
          WeightDecay = (if c.WeightDecay = 0.0 then Hyper.Fixed 0.0 else h c.WeightDecay) }

/// A hyperparameter that is left out exactly when 0 (a plain 0), else of the case's kind.
let private hyperOr0 (kind: HyperKind) (v: float) = if v = 0.0 then Hyper.Fixed 0.0 else hyper kind v

/// AdamW as the registry builds it (moments, decoupled decay, learning rate; amsgrad optional)
/// with the Adam family's kernel in its decoupled form.
let adamwOf (amsgrad: bool) (c: AdamCase) : Transformation =
    let h = hyper c.Case.Hypers
    AdamW.create
        { Lr = h c.Lr; Beta1 = h c.Beta1; Beta2 = h c.Beta2; Eps = c.Eps; EpsRoot = c.EpsRoot
          WeightDecay = hyperOr0 c.Case.Hypers c.WeightDecay; Amsgrad = amsgrad }

let amsgradOf (a: AmsCase) : Transformation =
    let c = a.Adam
    let h = hyper c.Case.Hypers
    AmsGrad.create
        { Lr = h c.Lr; Beta1 = h c.Beta1; Beta2 = h c.Beta2; Eps = c.Eps; EpsRoot = c.EpsRoot
          WeightDecay = hyperOr0 c.Case.Hypers c.WeightDecay; Debias = a.Debias }

let rmspropOf (c: RmsPropCase) : Transformation =
    let h = hyper c.Case.Hypers
    RmsProp.create
        { Lr = h c.Lr; Alpha = h c.Alpha; Eps = c.Eps; WeightDecay = hyperOr0 c.Case.Hypers c.WeightDecay
          Momentum = hyperOr0 c.Case.Hypers c.Momentum; Centered = c.Centered }

let adagradOf (c: AdagradCase) : Transformation =
    let h = hyper c.Case.Hypers
    Adagrad.create
        { Lr = h c.Lr; LrDecay = hyperOr0 c.Case.Hypers c.LrDecay; WeightDecay = hyperOr0 c.Case.Hypers c.WeightDecay
          InitialAccumulatorValue = c.InitialAccumulator; Eps = c.Eps }

/// The case's HD optimizer as the registry builds it, with its fused kernel.
let hdOf (c: HdCase) : Transformation =
    let open' = Optimizers.Hypergradient.Hd.forModel c.Model c.Lop
    Optimizers.Hypergradient.Hd.create
        { open' with
            Lr = c.Lr; HypergradLr = hyper c.Case.Hypers c.Beta; WeightDecay = c.WeightDecay
            Guard = (if c.Clip then Optimizers.Hypergradient.ClipAtZero else Optimizers.Hypergradient.Unguarded) }

/// k fused pure steps (`step`), then in-place steps, then op-by-op steps, against op-by-op steps
/// all along; and a state saved from the fast path loads and continues on the other paths.
let interchangeWithin (tol: float) (opt: Transformation) (c: Case) =
    let start, grads = problem c
    let reference () =
        let mutable p = Tree.clone start
        let mutable s = opt.Init p
        for g in grads do
            let p', s' = Transform.stepOps opt g s p
            p <- p'
            s <- s'
        p, s
    let expected = reference ()
    let third = max 1 (grads.Length / 3)
    let mutable p = Tree.clone start
    let mutable s = opt.Init p
    for k, g in List.indexed grads do
        if k < third || k >= 2 * third then
            let p', s' = (if k < third then Transform.step else Transform.stepOps) opt g s p
            p <- p'
            s <- s'
        else
            s <- Transform.stepInPlace opt g s p
        if k = grads.Length / 2 then
            let file = Path.Combine(Path.GetTempPath(), $"optimizers-fast-{Guid.NewGuid():N}.state")
            Serialization.saveState file opt s
            s <- Serialization.loadState file opt
            File.Delete file
    expectSame tol "mixed fused, in-place and op-by-op steps with a save and load" expected (p, s)

let interchange (opt: Transformation) (c: Case) = interchangeWithin (tolerance c) opt c

/// The condition number of an HD optimizer's hypergradient sums along a case's op-by-op run:
/// the largest sum |g'_t d_{t-1}| / |sum g'_t d_{t-1}| over the steps (g' with weight decay; infinite
/// when a sum is exactly 0 with nonzero terms). A relative change delta in the terms moves h by at
/// most delta * kappa relatively.
let hdCondition (c: HdCase) =
    let opt = hdOf c
    let start, grads = problem c.Case
    let mutable p, s = Tree.clone start, opt.Init start
    let mutable kappa = 1.0
    for g in grads do
        let d = s.Slot "direction"
        let mutable sumAbs, sum = 0.0, 0.0
        for i in 0 .. g.Count - 1 do
            let gi = if c.WeightDecay = 0.0 then g.Values[i] else Tensors.add g.Values[i] (Tensors.withScalar (fun x w -> x.mul w) p.Values[i] c.WeightDecay)
            let terms = gi.to_type(torch.ScalarType.Float64).mul(d.Values[i].to_type(torch.ScalarType.Float64))
            sumAbs <- sumAbs + terms.abs().sum().ToDouble()
            sum <- sum + terms.sum().ToDouble()
        if sumAbs > 0.0 then kappa <- max kappa (sumAbs / abs sum)
        let p', s' = Transform.stepOps opt g s p
        p <- p'
        s <- s'
    kappa

/// The HD optimizers' tolerance where runs go their own ways (the interchange test). Their hypergradient
/// h = -g . d is a sum over every coordinate whose terms may cancel, and the kernel's d differs
/// from the op-by-op d in the last place at about one element in three (measured on 100,000):
/// LibTorch's vectorised float32 sqrt is one ulp off in 15% of elements (never closer to the exact
/// root than MathF.Sqrt), and the kernel multiplies by reciprocals where the ops divide. The sum amplifies those
/// differences by its condition number kappa (up to 2.4e5 seen, 1.3e-4 relative in h), and the
/// rate's update carries them into the rate, its optimizer's moments and the parameters. Ten
/// times the others' tolerance, or kappa / 10 times it (eight ulps in every term, all aligned).
let private hdTolerance (c: HdCase) = tolerance c.Case * max 10.0 (hdCondition c / 10.0)

[<Tests>]
let tests =
    testList "fastpath" [
        testPropertyWithConfig config "sgd: N fast steps = N pure steps (params and state)" <| fun (c: SgdCase) ->
            scoped <| fun () -> fastEqualsPure (sgdOf c) c.Case

        testPropertyWithConfig config "adam: N fast steps = N pure steps (params and state)" <| fun (c: AdamCase) ->
            scoped <| fun () -> fastEqualsPure (adamOf c) c.Case

        testPropertyWithConfig config "adamw: N fast steps = N pure steps (params and state)" <| fun (c: AdamCase) ->
            scoped <| fun () -> fastEqualsPure (adamwOf false c) c.Case

        testPropertyWithConfig config "adamw with amsgrad: N fast steps = N pure steps" <| fun (c: AdamCase) ->
            scoped <| fun () -> fastEqualsPure (adamwOf true c) c.Case

        testPropertyWithConfig config "amsgrad (debiased or not): N fast steps = N pure steps" <| fun (c: AmsCase) ->
            scoped <| fun () -> fastEqualsPure (amsgradOf c) c.Adam.Case

        testPropertyWithConfig config "rmsprop: N fast steps = N pure steps (params and state)" <| fun (c: RmsPropCase) ->
            scoped <| fun () -> fastEqualsPure (rmspropOf c) c.Case

        testPropertyWithConfig config "adagrad: N fast steps = N pure steps (params and state)" <| fun (c: AdagradCase) ->
            scoped <| fun () -> fastEqualsPure (adagradOf c) c.Case

        testPropertyWithConfig config "sgd-hd, sgdn-hd, adam-hd (any learning-rate optimizer, clipped or not): each fast step = the pure step" <| fun (c: HdCase) ->
            scoped <| fun () -> stepwiseEqualsPure (hdTolerance c) (hdOf c) c.Case

        testPropertyWithConfig config "sgd-hd, sgdn-hd, adam-hd: pure and fast steps interchange, states save and load" <| fun (c: HdCase) ->
            scoped <| fun () -> interchangeWithin (hdTolerance c) (hdOf c) c.Case

        testPropertyWithConfig config "sgd: pure and fast steps interchange, states save and load" <| fun (c: SgdCase) ->
            scoped <| fun () -> interchange (sgdOf c) c.Case

        testPropertyWithConfig config "adam: pure and fast steps interchange, states save and load" <| fun (c: AdamCase) ->
            scoped <| fun () -> interchange (adamOf c) c.Case

        testPropertyWithConfig config "rmsprop and adagrad: pure and fast steps interchange" <| fun (r: RmsPropCase) (a: AdagradCase) ->
            scoped <| fun () ->
            interchange (rmspropOf r) r.Case
            interchange (adagradOf a) a.Case

        testPropertyWithConfig config "the pure path of an optimizer with a kernel is still pure" <| fun (c: AdamCase) (s: SgdCase) ->
            scoped <| fun () ->
            let same (what: string) (xs: Tensor list) (ys: Tensor list) =
                List.iter2 (fun (x: Tensor) (y: Tensor) -> Expect.isTrue (x.eq(y).all().ToBoolean()) what) xs ys
            for opt, case in [ adamOf c, c.Case; sgdOf s, s.Case ] do
                let start, grads = problem case
                let p = Tree.clone start
                let mutable st = opt.Init p
                for g in grads do
                    let inputs () = List.ofArray g.Values @ List.ofArray p.Values @ State.tensors st
                    let before = inputs () |> List.map (fun t -> t.clone())
                    let _, st' = Transform.step opt g st p
                    same $"{opt.Name}: gradients, params and state after a pure step" (inputs ()) before
                    st <- st'

        testCase "every kernel falls back cleanly for float64 and non-contiguous tensors (fixed cases)" <| fun () ->
            scoped <| fun () ->
            let spec shape layout = { Shape = shape; Layout = layout }
            let mixed = [ spec [ 7; 5 ] Transposed; spec [ 37 ] Strided; spec [ 41 ] Contiguous; spec [ 4; 9 ] Contiguous ]
            for float64 in [ true; false ] do
                let c = { Tensors = mixed; Float64 = float64; Steps = 4; Seed = 7; Hypers = Number }
                let adam = { Case = c; Lr = 0.01; Beta1 = 0.9; Beta2 = 0.999; Eps = 1e-8; EpsRoot = 0.0; WeightDecay = 0.01 }
                for opt in
                    [ sgdOf { Case = c; Lr = 0.01; Momentum = 0.9; Dampening = 0.0; WeightDecay = 0.01; Nesterov = true }
                      adamOf adam; adamwOf false adam; adamwOf true adam; amsgradOf { Adam = adam; Debias = false }
                      rmspropOf { Case = c; Lr = 0.01; Alpha = 0.9; Eps = 1e-8; WeightDecay = 0.01; Momentum = 0.9; Centered = true }
                      adagradOf { Case = c; Lr = 0.1; LrDecay = 0.1; WeightDecay = 0.01; InitialAccumulator = 0.1; Eps = 1e-10 } ] do
                    fastEqualsPure opt c
                for hd in hdCases c do
                    stepwiseEqualsPure (hdTolerance hd) (hdOf hd) c

        testSequenced (testCase "fused steps into new tensors written with non-temporal stores equal the reference (fixed cases)" (fun () ->
            scoped <| fun () ->
            let spec shape = { Shape = shape; Layout = Contiguous }
            let c = { Tensors = [ spec [ 7; 5 ]; spec [ 3001 ]; spec [ 41 ]; spec [ 64; 9 ] ]; Float64 = false; Steps = 4; Seed = 11; Hypers = Number }
            let saved = Kernel.streamBytes
            Kernel.streamBytes <- 0L
            try
                let out = Kernel.Outputs Target.Fresh
                out.Of(fst (problem c)) |> ignore
                Expect.equal out.Stream Kernel.canStream "new float32 tensors stream wherever the CPU can"
                let adam = { Case = c; Lr = 0.01; Beta1 = 0.9; Beta2 = 0.999; Eps = 1e-8; EpsRoot = 0.0; WeightDecay = 0.01 }
                for opt in
                    [ sgdOf { Case = c; Lr = 0.01; Momentum = 0.9; Dampening = 0.1; WeightDecay = 0.01; Nesterov = false }
                      sgdOf { Case = c; Lr = 0.01; Momentum = 0.0; Dampening = 0.0; WeightDecay = 0.0; Nesterov = false }
                      adamOf adam; adamwOf true adam; amsgradOf { Adam = adam; Debias = true }
                      rmspropOf { Case = c; Lr = 0.01; Alpha = 0.9; Eps = 1e-8; WeightDecay = 0.01; Momentum = 0.9; Centered = true }
                      adagradOf { Case = c; Lr = 0.1; LrDecay = 0.1; WeightDecay = 0.01; InitialAccumulator = 0.1; Eps = 1e-10 } ] do
                    fastEqualsPure opt c
                for hd in hdCases c do
                    stepwiseEqualsPure (hdTolerance hd) (hdOf hd) c
            finally
                Kernel.streamBytes <- saved))

        testCase "the fused loop takes contiguous float32 CPU tensors only" <| fun () ->
            let f32 = torch.ScalarType.Float32
            Expect.isTrue (Kernel.isDirect (torch.zeros([| 3L; 5L |], dtype = f32))) "contiguous float32"
            Expect.isTrue (Kernel.isDirect (torch.zeros([| 10L |], dtype = f32).narrow(0L, 2L, 5L))) "a narrowed contiguous slice"
            Expect.isFalse (Kernel.isDirect (torch.zeros([| 3L; 5L |], dtype = f64))) "float64 goes to the fallback"
            Expect.isFalse (Kernel.isDirect (torch.zeros([| 3L; 5L |], dtype = f32).t())) "a transposed view goes to the fallback"
            Expect.isFalse (Kernel.isDirect (torch.zeros([| 10L |], dtype = f32).slice(0L, 0L, 10L, 2L))) "a strided view goes to the fallback"

        testCase "the registry's sgd family, adam, adamw, amsgrad, rmsprop and adagrad have a fast path; chains and wrappers have none" <| fun () ->
            for name in [ "sgd"; "momentum"; "nesterov"; "adam"; "adamw"; "amsgrad"; "rmsprop"; "adagrad"; "sgd-hd"; "sgdn-hd"; "adam-hd" ] do
                Expect.isSome (Registry.createOptimizer name []).Fast $"{name} has a kernel"
            let adam = Registry.createOptimizer "adam" []
            Expect.isNone (Combine.chain [ adam; Transform.identity ]).Fast "a chain of them has none"
            for name in [ "sgd-hd"; "sgdn-hd"; "adam-hd"; "sgdn_op-adam_lop" ] do
                Expect.isSome (Registry.createOptimizer name [ "lr_guard", "clip" ]).Fast $"{name} clipped at 0 has one"
                Expect.isNone (Registry.createOptimizer name [ "per_parameter", "true" ]).Fast $"{name} with a rate per tensor has none"
            Expect.isNone (Registry.createOptimizer "sgd-hd" [ "lr_guard", "multiplicative" ]).Fast "nor the multiplicative guard"

        testCase "step runs the fused kernel into new tensors unless a gradient must flow through the step" <| fun () ->
            scoped <| fun () ->
            let targets = Collections.Generic.List<Target>()
            let lr = torch.tensor(0.1, dtype = f64)
            let sgd = Sgd.create { Lr = Hyper.Learnable lr; Momentum = Hyper.Fixed 0.9; Dampening = Hyper.Fixed 0.0; WeightDecay = Hyper.Fixed 0.0; Nesterov = false }
            let kernel = sgd.Fast.Value.Apply
            let spy = sgd |> Transform.withFast [ Hyper.Learnable lr ] (fun target g s p -> targets.Add target; kernel target g s p)
            let p = Tree.single "w" (vec [ 1.0; 2.0 ])
            let g = grad2x p
            let stepped (p: Tree) = Transform.step spy g (spy.Init p) p |> fst
            stepped p |> ignore
            Expect.sequenceEqual targets [ Target.Fresh ] "nothing requires grad: fused"
            Transform.stepInPlace spy g (spy.Init p) (Tree.clone p) |> ignore
            Expect.sequenceEqual targets [ Target.Fresh; Target.InPlace ] "stepInPlace: fused in place"
            let w = Tree.map (fun x -> x.detach().requires_grad_(true)) p
            let viaOps = stepped w
            Expect.equal targets.Count 2 "a parameter requires grad: op by op"
            Expect.isTrue viaOps.Values[0].requires_grad "and the result carries the graph"
            lr.requires_grad_(true) |> ignore
            let viaOps = stepped p
            Expect.equal targets.Count 2 "the learning rate requires grad: op by op"
            Expect.isTrue viaOps.Values[0].requires_grad "and the result carries the graph to it"
            using (torch.no_grad ()) (fun _ -> stepped w) |> ignore
            Expect.sequenceEqual targets [ Target.Fresh; Target.InPlace; Target.Fresh ] "under no_grad nothing is recorded: fused"

        testCase "stepInPlace without a kernel runs the pure update and adds it into the params" <| fun () ->
            let opt = Combine.chain [ Moments.adam (Hyper.Fixed 0.9) (Hyper.Fixed 0.999) 1e-8 0.0; ScaleBy.learningRate (Hyper.Fixed 0.1) ]
            let start = Tree.ofSeq [ "w", vec [ 1.0; -2.0; 3.0 ]; "b", vec [ 0.5 ] ]
            let mutable pPure, sPure = Tree.clone start, opt.Init start
            let pFast = Tree.clone start
            let mutable sFast = opt.Init pFast
            for _ in 1..4 do
                let g = grad2x pPure
                let p', s' = Transform.step opt g sPure pPure
                pPure <- p'
                sPure <- s'
                sFast <- Transform.stepInPlace opt (grad2x pFast) sFast pFast
            expectSame 0.0 "4 steps" (pPure, sPure) (pFast, sFast)

        testCase "stepInPlace's fallback leaves only the new state in the caller's scope" <| fun () ->
            let opt = Combine.chain [ ScaleBy.momentum (Hyper.Fixed 0.9) (Hyper.Fixed 0.0) true; ScaleBy.learningRate (Hyper.Fixed 0.1) ]
            let p = Tree.single "w" (vec [ 1.0; 2.0 ])
            let g = grad2x p
            let s = opt.Init p
            use scope = torch.NewDisposeScope()
            let s' = Transform.stepInPlace opt g s p
            Expect.equal scope.DisposablesCount (State.tensors s').Length "the new momentum buffer only"

        testCase "a state of another optimizer fails with a message on the fast path" <| fun () ->
            let p = Tree.single "w" (torch.zeros([| 4L |]))
            let adam = Registry.createOptimizer "adam" []
            let sgd = Registry.createOptimizer "momentum" []
            let e = Expect.throwsC (fun () -> Transform.stepInPlace sgd p (adam.Init p) p |> ignore) id
            Expect.stringContains e.Message "'sgd' was given the state of 'adam'" "wrong kind"
            let sgd0 = Registry.createOptimizer "sgd" []
            let e = Expect.throwsC (fun () -> Transform.stepInPlace sgd (grad2x p) (sgd0.Init p) p |> ignore) id
            Expect.stringContains e.Message "expects a state with parts" "sgd without momentum's state given to sgd with momentum"
    ]
