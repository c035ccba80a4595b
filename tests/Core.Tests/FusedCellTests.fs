/// The learned optimizers' fused cells, each one autograd function with a hand-written backward
/// (Learned/MomentField.fs, Learned/LstmCell.fs): outputs and gradients as accurate as the
/// op-by-op forms' (LibTorch's autograd) against float64, for random sizes (columns below, at
/// and above the SIMD width, row counts that split over workers), inputs and output gradients;
/// taken exactly for float32 contiguous CPU tensors; and HyperAdam's meta-gradient through them
/// in float32 agrees with the float64 one (op by op).
module Optimizers.Tests.FusedCellTests

open System
open Expecto
open FsCheck
open FsCheck.FSharp
open TorchSharp
open Optimizers
open Optimizers.Learned
open Optimizers.Meta
open Optimizers.Tasks
open Optimizers.Tests.Check
open Optimizers.Tests.LearnedCheck

type FieldCase =
    { Rows: int
      J: int
      GradScale: float
      /// the first step's state: m0 = v0 = bh0 = gh0 = 0
      FirstStep: bool
      Eps: float
      Seed: int }

type LstmCase = { Rows: int; Hidden: int; Seed: int }

type Arbs =
    static member Lstm() : Arbitrary<LstmCase> =
        gen {
            let! rows = Gen.frequency [ 6, Gen.choose (1, 40); 1, Gen.choose (3300, 3400) ]
            let! hidden = Gen.frequency [ 3, Gen.choose (1, 24); 1, Gen.elements [ 8; 16; 20 ] ]
            let! seed = Gen.choose (0, 1_000_000)
            return { Rows = rows; Hidden = hidden; Seed = seed }
        }
        |> Arb.fromGen

    static member Field() : Arbitrary<FieldCase> =
        gen {
            let! rows = Gen.frequency [ 6, Gen.choose (1, 40); 1, Gen.choose (3300, 3400) ]
            let! j = Gen.frequency [ 3, Gen.choose (1, 24); 1, Gen.elements [ 8; 16; 20 ] ]
            let! scale = Gen.elements [ 1e-3; 1.0; 100.0 ]
            let! first = Gen.frequency [ 4, Gen.constant false; 1, Gen.constant true ]
            let! eps = Gen.elements [ 1e-24; 1e-8 ]
            let! seed = Gen.choose (0, 1_000_000)
            return { Rows = rows; J = j; GradScale = scale; FirstStep = first; Eps = eps; Seed = seed }
        }
        |> Arb.fromGen

let private config = { FsCheckConfig.defaultConfig with maxTest = 40; arbitrary = [ typeof<Arbs> ] }

/// The inputs (g, m0, v0, bh0, gh0, z, q) of a case, float32 leaves that require grad.
let private inputs (c: FieldCase) =
    use gen = new torch.Generator(uint64 c.Seed)
    let n, j = int64 c.Rows, int64 c.J
    let randn (shape: int64[]) = torch.randn(shape, generator = gen)
    let leaf (t: Tensor) = t.detach().requires_grad_(true)
    let state (f: unit -> Tensor) = if c.FirstStep then torch.zeros([| n; j |]) else f ()
    let g = randn [| n; 1L |] |> fun t -> Tensors.withScalar (fun x s -> x.mul s) t c.GradScale
    let m0 = state (fun () -> Tensors.withScalar (fun x s -> x.mul s) (randn [| n; j |]) 0.1)
    let v0 = state (fun () -> Tensors.withScalar (fun x s -> x.mul s) ((randn [| n; j |]).square()) 0.01)
    let bh0 = state (fun () -> torch.rand([| n; j |], generator = gen))
    let gh0 = state (fun () -> torch.rand([| n; j |], generator = gen))
    let z = Tensors.withScalar (fun x s -> x.mul s) (randn [| n; 2L * j |]) 2.0
    let q = randn [| n; j |]
    [| g; m0; v0; bh0; gh0; z; q |] |> Array.map leaf

/// max |a - b| / max(max |b|, 1e-12), in float64: a norm-wise relative error.
let private normError (actual: Tensor) (expected: Tensor) =
    let a, e = actual.detach().to_type(f64), expected.detach().to_type(f64)
    (Tensors.sub a e).abs().max().ToDouble() / max (e.abs().max().ToDouble()) 1e-12

/// The fused float32 result is as close to the float64 truth as LibTorch's own float32 op-by-op
/// result is, within a factor `k`, or within 1e-5 norm-wise. Sums in the backward pass can
/// cancel, and then both float32 results carry amplified rounding of their own, which comparing
/// the two with each other would count against the kernel.
let private asAccurateWithin (k: float) (fused: Tensor) (ops32: Tensor) (truth: Tensor) (what: string) =
    Expect.sequenceEqual fused.shape truth.shape $"{what}: shape"
    let ef, eo = normError fused truth, normError ops32 truth
    if not (ef <= max (k * eo) 1e-5) then
        failtestf "%s: norm-wise error %.3g against float64, LibTorch's float32 ops %.3g" what ef eo

let private outputsOf (r: MomentField.Result) = [| r.M; r.V; r.BetaHat; r.GammaHat; r.D |]

/// Outputs and the gradients of sum_k <w_k, out_k> with respect to every input.
let private run (f: Tensor[] -> MomentField.Result) (xs: Tensor[]) (weights: Tensor[]) =
    let outs = outputsOf (f xs)
    let total = Array.map2 (fun (o: Tensor) (w: Tensor) -> o.mul(w).sum()) outs weights |> Array.reduce (fun a b -> Tensors.add a b)
    outs, torch.autograd.grad([| total |], xs) |> Array.ofSeq

let private names = [| "g"; "m0"; "v0"; "bh0"; "gh0"; "z"; "q" |]

[<Tests>]
let tests =
    testList "fused cells" [
        testPropertyWithConfig config "lstm cell: the fused function's outputs and gradients are as accurate as the op-by-op form's" <| fun (c: LstmCase) ->
            use _ = torch.NewDisposeScope()
            use gen = new torch.Generator(uint64 c.Seed)
            let n, h = int64 c.Rows, int64 c.Hidden
            let z = (Tensors.withScalar (fun x s -> x.mul s) (torch.randn([| n; 4L * h |], generator = gen)) 2.0).requires_grad_(true)
            let cell = torch.randn([| n; h |], generator = gen).requires_grad_(true)
            let weights = [| torch.randn([| n; h |], generator = gen); torch.randn([| n; h |], generator = gen) |]
            Expect.isTrue (LstmCell.fusable z cell) "float32 contiguous CPU inputs take the fused function"
            let run (f: Tensor -> Tensor -> Tensor * Tensor) (xs: Tensor[]) (ws: Tensor[]) =
                let h', c' = f xs[0] xs[1]
                let total = Tensors.add (h'.mul(ws[0]).sum()) (c'.mul(ws[1]).sum())
                [| h'; c' |], torch.autograd.grad([| total |], xs) |> Array.ofSeq
            let outs, grads = run LstmCell.apply [| z; cell |] weights
            let outs32, grads32 = run LstmCell.ops [| z; cell |] weights
            let xs64 = [| z; cell |] |> Array.map (fun x -> x.detach().to_type(f64).requires_grad_(true))
            let outs64, grads64 = run LstmCell.ops xs64 (weights |> Array.map (fun w -> w.to_type f64))
            Array.iteri (fun i name -> asAccurateWithin 10.0 outs[i] outs32[i] outs64[i] name) [| "h'"; "c'" |]
            Array.iteri (fun i name -> asAccurateWithin 10.0 grads[i] grads32[i] grads64[i] name) [| "dz"; "dc" |]

        testCase "lstm cell: float64 or non-contiguous tensors take the op-by-op form" <| fun () ->
            use _ = torch.NewDisposeScope()
            let z, c = torch.randn([| 5L; 12L |]), torch.randn([| 5L; 3L |])
            Expect.isTrue (LstmCell.fusable z c) "float32 contiguous"
            Expect.isFalse (LstmCell.fusable (z.to_type f64) (c.to_type f64)) "float64"
            Expect.isFalse (LstmCell.fusable z (c.t().contiguous().t())) "a transposed view"
            let a, b = LstmCell.apply (z.to_type f64) (c.to_type f64), LstmCell.ops (z.to_type f64) (c.to_type f64)
            Expect.isTrue ((fst a).eq(fst b).all().ToBoolean() && (snd a).eq(snd b).all().ToBoolean()) "the op-by-op form, bit for bit"

        testPropertyWithConfig config "moment field: the fused function's outputs and gradients are as accurate as the op-by-op form's" <| fun (c: FieldCase) ->
            use _ = torch.NewDisposeScope()
            let xs = inputs c
            use gen = new torch.Generator(uint64 (c.Seed + 1))
            let weights = outputsOf (MomentField.ops c.Eps xs[0] xs[1] xs[2] xs[3] xs[4] xs[5] xs[6]) |> Array.map (fun o -> torch.randn(o.shape, generator = gen))
            let field (x: Tensor[]) = MomentField.apply c.Eps x[0] x[1] x[2] x[3] x[4] x[5] x[6]
            let reference (x: Tensor[]) = MomentField.ops c.Eps x[0] x[1] x[2] x[3] x[4] x[5] x[6]
            Expect.isTrue (MomentField.fusable (List.ofArray xs)) "float32 contiguous CPU inputs take the fused function"
            let outs, grads = run field xs weights
            let outs32, grads32 = run reference xs weights
            let xs64 = xs |> Array.map (fun x -> x.detach().to_type(f64).requires_grad_(true))
            let outs64, grads64 = run reference xs64 (weights |> Array.map (fun w -> w.to_type f64))
            for i in 0 .. outs.Length - 1 do asAccurateWithin 10.0 outs[i] outs32[i] outs64[i] $"output {i}"
            // g's gradient cancels by construction (the field is invariant to g's scale: at the
            // first step it is g / |g|): there the two float32 orders of the same terms differ
            // more (2,000 cases: up to 5x the ops' error, 11x seen once)
            for i in 0 .. grads.Length - 1 do asAccurateWithin (if i = 0 then 100.0 else 10.0) grads[i] grads32[i] grads64[i] $"gradient of {names[i]}"

        testCase "moment field: float64 or non-contiguous tensors take the op-by-op form" <| fun () ->
            use _ = torch.NewDisposeScope()
            let xs = inputs { Rows = 5; J = 3; GradScale = 1.0; FirstStep = false; Eps = 1e-8; Seed = 7 }
            Expect.isTrue (MomentField.fusable (List.ofArray xs)) "float32 contiguous"
            Expect.isFalse (MomentField.fusable (xs |> Array.map (fun x -> x.to_type f64) |> List.ofArray)) "float64"
            let transposed = xs[1].detach().t().contiguous().t()
            Expect.isFalse (MomentField.fusable [ xs[0]; transposed ]) "a transposed view"
            // the op-by-op form is what apply computes for float64 (bit for bit)
            let x64 = xs |> Array.map (fun x -> x.detach().to_type f64)
            let a = MomentField.apply 1e-8 x64[0] x64[1] x64[2] x64[3] x64[4] x64[5] x64[6]
            let b = MomentField.ops 1e-8 x64[0] x64[1] x64[2] x64[3] x64[4] x64[5] x64[6]
            Array.iter2 (fun (u: Tensor) (v: Tensor) -> Expect.isTrue (u.eq(v).all().ToBoolean()) "the same tensors") (outputsOf a) (outputsOf b)

        testCase "hyperadam's window meta-gradient in float32 (fused cells) agrees with float64 (op by op)" <| fun () ->
            use _ = torch.NewDisposeScope()
            let gradient (dtype: torch.ScalarType) =
                // J = 10: the SIMD loop with an overlapping last vector
                let s = { hyperAdamSettings 1 None with Window = 5; Dtype = dtype; KindOptions = [ "j", "10"; "hidden", "6"; "lr", "0.05" ] }
                let values = LearnedOptimizer.values HyperAdam.kind s.KindOptions
                let leaves = freshTheta s.KindOptions 3 |> Tree.map (fun t -> t.to_type dtype) |> Tree.asLeaves
                let opt = HyperAdam.kind.Create values leaves
                let task = s.Task 1
                let p0 = task.Init { TaskInit.Default with Seed = 1; Dtype = dtype }
                let _, surrogate, _, _ = MetaTrain.window s task opt 0 p0 (opt.Init p0)
                torch.autograd.grad([| surrogate |], leaves.Values) |> Array.ofSeq
            let g32, g64 = gradient torch.ScalarType.Float32, gradient f64
            Array.iteri2 (fun i a e -> if not (normError a e <= 1e-3) then failtestf "dmeta/dtheta %d: norm-wise error %.3g" i (normError a e)) g32 g64
            Expect.isGreaterThan (g64 |> Array.sumBy (fun e -> e.abs().sum().ToDouble())) 1e-6 "a meta-gradient that is not zero"
    ]
