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
        Task.create "rosenbrock" init loss

    /// Sum of squares L = sum_i x_i^2 in `dim` dimensions (thesis eq. 2.1, 1000-d there), start
    /// drawn U(-10, 10) from the seed unless given. One parameter "x" of shape [dim].
    let sumOfSquares (dim: int) (start: float[] option) : Task =
        if dim < 1 then Tensors.invalidArg "dim" $"sum-of-squares: dim = {dim} is invalid; it must be >= 1"
        let init (ti: TaskInit) = Tree.single "x" (startOr "sum-of-squares" dim start (fun seed -> Task.uniform seed dim -10.0 10.0) ti)
        let loss (_: int) (p: Tree) = p["x"].square().sum()
        Task.create "sum-of-squares" init loss

/// A random ill-conditioned quadratic with a known minimum (seeded), for testing how optimizers
/// cope with curvature that differs by orders of magnitude between directions.
type QuadraticProblem =
    { Dim: int
      /// The condition number: largest over smallest eigenvalue.
      Condition: float
      /// The eigenvalues of A, log-spaced from 1 to Condition.
      Eigenvalues: float[]
      /// A = Q diag(Eigenvalues) Q^T, row-major, symmetric positive definite.
      Matrix: float[]
      /// The minimizer x*; the minimum value is 0.
      Minimum: float[] }

module Quadratic =

    open System.Collections.Concurrent
    open Optimizers.Data

    /// The problem drawn from `problemSeed`: Q is a Haar-random orthogonal matrix (QR of a
    /// Gaussian matrix with the signs of R's diagonal moved into Q), x* ~ N(0, I).
    let problem (dim: int) (condition: float) (problemSeed: int) : QuadraticProblem =
        if dim < 1 then Tensors.invalidArg "dim" $"quadratic: dim = {dim} is invalid; it must be >= 1"
        if not (condition >= 1.0) || System.Double.IsInfinity condition then
            Tensors.invalidArg "condition" $"quadratic: condition = {condition} is invalid; it must be a finite number >= 1"
        let rng = Rng.Of [ int64 problemSeed; int64 dim; 0x0ADL ]
        let gaussian = Array.init (dim * dim) (fun _ -> rng.Normal())
        let minimum = Array.init dim (fun _ -> rng.Normal())
        let eig =
            if dim = 1 then [| 1.0 |]
            else Array.init dim (fun i -> condition ** (float i / float (dim - 1)))
        use scope = torch.NewDisposeScope()
        let g = Task.tensorOf gaussian [| int64 dim; int64 dim |] torch.ScalarType.Float64 torch.CPU
        let struct (q, r) = torch.linalg.qr(g)
        let q = q * r.diagonal().sign().unsqueeze(0)
        let a = q.matmul(torch.diag(torch.tensor(eig, dtype = torch.ScalarType.Float64))).matmul(q.t())
        let a = (a + a.t()) * 0.5 // exactly symmetric
        { Dim = dim; Condition = condition; Eigenvalues = eig; Matrix = a.contiguous().data<float>().ToArray(); Minimum = minimum }

    /// f(x) = 1/2 (x - x*)^T A (x - x*) for the problem drawn from `problemSeed`; the minimum 0 is
    /// at x*. One parameter "x" of shape [dim], started at x* + N(0, I) drawn from the init seed
    /// (so every start is at the same expected distance from the minimum).
    let task (dim: int) (condition: float) (problemSeed: int) : Task =
        let pr = problem dim condition problemSeed
        // A and x* as tensors, one copy per dtype and device, kept out of every DisposeScope
        let constants = ConcurrentDictionary<string, Tensor * Tensor>()
        let constantsFor (like: Tensor) =
            constants.GetOrAdd($"{like.dtype}/{like.device}", fun _ ->
                let a = Task.tensorOf pr.Matrix [| int64 dim; int64 dim |] like.dtype like.device
                let m = torch.tensor(pr.Minimum, dtype = like.dtype, device = like.device)
                a.DetachFromDisposeScope(), m.DetachFromDisposeScope())
        let init (ti: TaskInit) =
            let rng = Rng.Of [ int64 ti.Seed; 0x57A27L ]
            Tree.single "x" (Task.vector ti (pr.Minimum |> Array.map (fun m -> m + rng.Normal())))
        let loss (_: int) (p: Tree) =
            let x = p["x"]
            let a, m = constantsFor x
            let d = x - m
            (d * a.mv(d)).sum() * 0.5
        Task.create "quadratic" init loss
