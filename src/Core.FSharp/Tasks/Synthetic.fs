namespace Optimizers.Tasks

open System
open TorchSharp
open Optimizers

/// Small closed-form problems (thesis seed 004, section 2.3).
module Synthetic =

    let private startOr (name: string) (dim: int) (start: float[] option) (draw: int -> float[]) (init: TaskInit) =
        match start with
        | Some s when s.Length <> dim ->
            Tensors.invalidArg "start" $"{name}: the start has {s.Length} coordinates, the task has {dim}"
        | Some s -> Task.vector init s
        | None -> Task.vector init (draw init.Seed)

    /// Rosenbrock's function f(x, y) = (a - x)^2 + b (y - x^2)^2 (thesis eq. 2.2, whose extracted
    /// text lost the square on x; this is Rosenbrock's 1960 form). Minimum 0 at (a, a^2).
    /// One parameter "x" of shape [2]. Without a start, x ~ U(-2, 2), y ~ U(-1, 3) from the seed.
    let rosenbrock (a: float) (b: float) (start: float[] option) : Task =
        let init (ti: TaskInit) =
            let draw seed = let u = Task.uniform seed 2 0.0 1.0 in [| -2.0 + 4.0 * u[0]; -1.0 + 4.0 * u[1] |]
            Tree.single "x" (startOr "rosenbrock" 2 start draw ti)
        let loss (_: int) (p: Tree) =
            let v = p["x"]
            let x = v[0]
            let y = v[1]
            (a - x).square() + b * (y - x.square()).square()
        { Name = "rosenbrock"; Init = init; Loss = loss }

    /// Sum of squares L = sum_i x_i^2 in `dim` dimensions (thesis eq. 2.1, 1000-d there), start
    /// drawn U(-10, 10) from the seed unless given. One parameter "x" of shape [dim].
    let sumOfSquares (dim: int) (start: float[] option) : Task =
        if dim < 1 then Tensors.invalidArg "dim" $"sum-of-squares: dim = {dim} is invalid; it must be >= 1"
        let init (ti: TaskInit) = Tree.single "x" (startOr "sum-of-squares" dim start (fun seed -> Task.uniform seed dim -10.0 10.0) ti)
        let loss (_: int) (p: Tree) = p["x"].square().sum()
        { Name = "sum-of-squares"; Init = init; Loss = loss }
