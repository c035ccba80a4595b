/// Helpers shared by the test files: tensors from floats, closeness (the one place tolerances are
/// defined), runs on a fixed gradient, random problems for properties, the command line in-process,
/// reference files and temporary folders.
module Optimizers.Tests.Check

open System
open System.Globalization
open System.IO
open TorchSharp
open Expecto
open FsCheck
open FsCheck.FSharp
open Optimizers

let f64 = torch.ScalarType.Float64

/// A float64 tensor from values.
let vec (xs: float list) : Tensor = torch.tensor(Array.ofList xs, dtype = f64)

/// A one-tensor tree named "x".
let tree1 (xs: float list) : Tree = Tree.single "x" (vec xs)

/// Elements of a tree as floats.
let floats (t: Tree) = Tree.toFloats t

/// A fixed hyperparameter, short, for option records written in tests.
let F = Hyper.Fixed

// ---------------------------------------------------------------------------------------------
// Closeness. Every float comparison of the tests goes through closeRel (relative, absolute below
// 1) or closeTo / closeAll / isClose (an absolute and a relative part, for references that can be
// near 0, and Expecto's presets).

/// |a - b| <= tol * max(1, |b|) element-wise, with the index in the message.
let closeRel (tol: float) (actual: float[]) (expected: float[]) (what: string) =
    Expect.equal actual.Length expected.Length $"{what}: length"
    for i in 0 .. actual.Length - 1 do
        let a, e = actual[i], expected[i]
        let err = abs (a - e) / max 1.0 (abs e)
        if not (err <= tol) then failtestf "%s: element %d is %.17g, expected %.17g (relative error %.3g > %.3g)" what i a e err tol

/// A tolerance: |actual - expected| <= Abs + Rel * |expected|.
type Tol = { Abs: float; Rel: float }

[<RequireQualifiedAccess; CompilationRepresentation(CompilationRepresentationFlags.ModuleSuffix)>]
module Tol =
    /// 1e-9 relative, 1e-15 absolute for values at 0: PyTorch's numbers (schedules, torch.optim
    /// trajectories), some of which it computes recursively, and numbers worked out by hand.
    let tight = { Abs = 1e-15; Rel = 1e-9 }
    /// Expecto's Accuracy presets. Expecto scales Rel by max(|actual|, |expected|); |expected|
    /// here is as tight or tighter.
    let veryHigh = { Abs = 1e-12; Rel = 1e-9 }
    let high = { Abs = 1e-10; Rel = 1e-7 }
    let medium = { Abs = 1e-8; Rel = 1e-5 }

/// Whether `actual` is within `tol` of `expected`; never for NaN or infinities.
let isClose (tol: Tol) (actual: float) (expected: float) =
    Double.IsFinite actual && Double.IsFinite expected && abs (actual - expected) <= tol.Abs + tol.Rel * abs expected

/// One number within `tol` of the expected one.
let closeTo (tol: Tol) (actual: float) (expected: float) (what: string) =
    if not (isClose tol actual expected) then
        failtestf "%s: %.17g, expected %.17g (difference %.3g > %.3g + %.3g |expected|)" what actual expected (abs (actual - expected)) tol.Abs tol.Rel

/// closeTo element-wise, with the index in the message.
let closeAll (tol: Tol) (actual: float[]) (expected: float[]) (what: string) =
    Expect.equal actual.Length expected.Length $"{what}: length"
    for i in 0 .. actual.Length - 1 do
        closeTo tol actual[i] expected[i] $"{what}: element {i}"

// ---------------------------------------------------------------------------------------------
// Errors.

/// `f` raises an exception of type 'E whose message contains every one of `parts`.
let throwsOf<'E when 'E :> exn> (parts: string list) (f: unit -> unit) =
    let raised =
        try
            f ()
            None
        with :? 'E as e -> Some e
    match raised with
    | None -> failtestf "expected %s naming %A, nothing was raised" typeof<'E>.Name parts
    | Some e ->
        for part in parts do
            Expect.stringContains e.Message part $"the message names '{part}'"

/// `f` raises the library's InvalidOptionException, its message naming every one of `parts`.
let throwsNaming (parts: string list) (f: unit -> 'a) = throwsOf<InvalidOptionException> parts (f >> ignore)

// ---------------------------------------------------------------------------------------------
// Runs on a fixed gradient.

/// The gradient of sum(x^2): 2x, for runs on a fixed gradient function.
let grad2x (p: Tree) = Tree.map (fun x -> 2.0 * x) p

/// The gradient of 0.5 ||x||^2: the parameters themselves.
let identityGrad (p: Tree) = Tree.map (fun x -> x.clone()) p

/// Run `steps` steps of an optimizer on a fixed gradient function; returns the parameters after each step.
let trajectory (opt: Transformation) (grad: Tree -> Tree) (start: Tree) (steps: int) : float[] list =
    let mutable p = start
    let mutable s = opt.Init p
    [ for _ in 1..steps do
        let p', s' = Transform.step opt (grad p) s p
        p <- p'
        s <- s'
        yield floats p ]

/// The gradient of Rosenbrock's (1 - x)^2 + 100 (y - x^2)^2, in closed form.
let rosenGrad (p: float[]) =
    let x, y = p[0], p[1]
    [| -2.0 * (1.0 - x) - 400.0 * x * (y - x * x); 200.0 * (y - x * x) |]

/// The standard start on Rosenbrock.
let rosenStart = [| -1.5; 2.0 |]

/// The hand-designed catalog of issue 3, by registry name (the foundation is sgd, momentum,
/// nesterov and adam).
let catalog =
    [ "adagrad"; "rmsprop"; "adamax"; "amsgrad"; "adabound"; "amsbound"; "radam"; "nadam"; "adamw"; "sgdw"; "sgdwm"; "swats"; "gradient-noise" ]

// ---------------------------------------------------------------------------------------------
// Random problems for properties (FsCheck).

/// A short sequence of gradients (steps x dim) and a start point of the same dim.
type Problem = { Grads: float[][]; Start: float[] }

/// A positive gradient scale.
type Scale = Scale of float

let private small = Gen.choose (-1000, 1000) |> Gen.map (fun i -> float i / 100.0)

type ProblemArbs =
    static member Problem() : Arbitrary<Problem> =
        gen {
            let! dim = Gen.choose (1, 4)
            let! steps = Gen.choose (1, 6)
            let! grads = Gen.arrayOfLength steps (Gen.arrayOfLength dim small)
            let! start = Gen.arrayOfLength dim small
            return { Grads = grads; Start = start }
        }
        |> Arb.fromGen

    static member Scale() : Arbitrary<Scale> = Gen.elements [ 1e-3; 0.1; 0.5; 3.0; 1e3 ] |> Gen.map Scale |> Arb.fromGen

/// The differentiable-step tests' trees: one to three tensors of small shapes and one of 70,001
/// elements (several chunks of the fused loops, in parallel).
let gradShapes : Gen<int list list> =
    gen {
        let! count = Gen.choose (1, 3)
        return! Gen.listOfLength count (Gen.elements [ [ 1 ]; [ 7 ]; [ 33 ]; [ 4; 5 ]; [ 3; 2; 4 ]; [ 70 ]; [ 70001 ] ])
    }

/// Whether a case's tensors are transposed views (not contiguous): one case in five.
let transposedViews : Gen<bool> = Gen.frequency [ 4, Gen.constant false; 1, Gen.constant true ]

/// A property over a generator (FsCheck's Prop.forAll without an Arbitrary type).
let forAll (g: Gen<'a>) (body: 'a -> unit) : Property = Prop.forAll (Arb.fromGen g) body

/// 60 cases of Problem and Scale.
let problemConfig = { FsCheckConfig.defaultConfig with maxTest = 60; arbitrary = [ typeof<ProblemArbs> ] }

let treeOf (xs: float[]) = tree1 (List.ofArray xs)

/// The updates an optimizer makes for a fixed sequence of gradients (params stay at the start).
let updates (opt: Transformation) (pr: Problem) (scale: float) : float[] list =
    let p = treeOf pr.Start
    let mutable s = opt.Init p
    [ for g in pr.Grads do
        let u, s' = opt.Update (treeOf (g |> Array.map (fun x -> scale * x))) s p
        s <- s'
        yield floats u ]

// ---------------------------------------------------------------------------------------------
// The command line, in-process.

/// Run the `optimizers` command line in-process; returns (exit code, stdout, stderr).
let cli (args: string list) =
    use out = new StringWriter()
    use err = new StringWriter()
    let code = Optimizers.Experiments.Cli.run (Array.ofList args) out err
    code, out.ToString(), err.ToString()

/// `cli`, expecting exit code 0; returns stdout.
let cliOk (args: string list) =
    let code, out, err = cli args
    Expect.equal code 0 $"exit code of {String.Join(' ', args)} (stderr: {err})"
    out

/// A command line written as one string, as words.
let words (s: string) = s.Split(' ', StringSplitOptions.RemoveEmptyEntries) |> List.ofArray

/// The non-empty lines of a text.
let lines (s: string) = s.Split('\n', StringSplitOptions.RemoveEmptyEntries) |> Array.map (fun l -> l.TrimEnd '\r')

/// Bad input: exit code 2 and a one-line message containing `part`.
let expectBadInput (args: string list) (part: string) =
    let code, _, err = cli args
    Expect.equal code 2 $"exit code for {args}; stderr: {err}"
    Expect.stringContains err part "the message"
    Expect.equal (lines err).Length 1 $"one line: {err}"

// ---------------------------------------------------------------------------------------------
// Files.

/// A number as the reference files write it (invariant culture).
let parseFloat (s: string) = Double.Parse(s, CultureInfo.InvariantCulture)

/// The repository: the folder holding Optimizers.sln, above the test binaries or the working directory.
let repoRoot () =
    let rec up (dir: DirectoryInfo) =
        if isNull dir then None
        elif File.Exists(Path.Combine(dir.FullName, "Optimizers.sln")) then Some dir.FullName
        else up dir.Parent
    match up (DirectoryInfo AppContext.BaseDirectory) |> Option.orElse (up (DirectoryInfo(Directory.GetCurrentDirectory()))) with
    | Some r -> r
    | None -> failwith "the repository (Optimizers.sln) was not found above the tests or the working directory"

/// A fresh folder optimizers-NAME-GUID under the temporary directory.
let tempDir (name: string) =
    let d = Path.Combine(Path.GetTempPath(), $"optimizers-{name}-{Guid.NewGuid():N}")
    Directory.CreateDirectory d |> ignore
    d

/// A fresh temporary folder (tempDir), deleted (best effort) when disposed.
type TempDir(name: string) =
    let path = tempDir name
    member _.Path = path
    member _.File(file: string) = Path.Combine(path, file)
    interface IDisposable with
        member _.Dispose() = try Directory.Delete(path, true) with _ -> ()

/// Run `f` with a fresh temporary folder, deleted (best effort) afterwards.
let withTempDir (name: string) (f: string -> unit) =
    let dir = tempDir name
    try f dir finally (try Directory.Delete(dir, true) with _ -> ())
