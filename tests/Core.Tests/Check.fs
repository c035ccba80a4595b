/// Helpers shared by the test files: tensors from floats, closeness with a relative tolerance.
module Optimizers.Tests.Check

open System
open TorchSharp
open Expecto
open Optimizers

let f64 = torch.ScalarType.Float64

/// A float64 tensor from values.
let vec (xs: float list) : Tensor = torch.tensor(Array.ofList xs, dtype = f64)

/// A one-tensor tree named "x".
let tree1 (xs: float list) : Tree = Tree.single "x" (vec xs)

/// Elements of a tree as floats.
let floats (t: Tree) = Tree.toFloats t

/// |a - b| <= tol * max(1, |b|) element-wise, with the index in the message.
let closeRel (tol: float) (actual: float[]) (expected: float[]) (what: string) =
    Expect.equal actual.Length expected.Length $"{what}: length"
    for i in 0 .. actual.Length - 1 do
        let a, e = actual[i], expected[i]
        let err = abs (a - e) / max 1.0 (abs e)
        if not (err <= tol) then failtestf "%s: element %d is %.17g, expected %.17g (relative error %.3g > %.3g)" what i a e err tol

/// The gradient of sum(x^2): 2x, for runs on a fixed gradient function.
let grad2x (p: Tree) = Tree.map (fun x -> 2.0 * x) p

/// Run `steps` steps of an optimizer on a fixed gradient function; returns the parameters after each step.
let trajectory (opt: Transformation) (grad: Tree -> Tree) (start: Tree) (steps: int) : float[] list =
    let mutable p = start
    let mutable s = opt.Init p
    [ for _ in 1..steps do
        let p', s' = Transform.step opt (grad p) s p
        p <- p'
        s <- s'
        yield floats p ]

/// Run the `optimizers` command line in-process; returns (exit code, stdout, stderr).
let cli (args: string list) =
    use out = new System.IO.StringWriter()
    use err = new System.IO.StringWriter()
    let code = Optimizers.Experiments.Cli.run (Array.ofList args) out err
    code, out.ToString(), err.ToString()

/// The non-empty lines of a text.
let lines (s: string) = s.Split('\n', StringSplitOptions.RemoveEmptyEntries) |> Array.map (fun l -> l.TrimEnd '\r')
