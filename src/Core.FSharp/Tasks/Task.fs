namespace Optimizers.Tasks

open TorchSharp
open Optimizers
open Optimizers.Data

/// How to build a task's initial parameters.
type TaskInit =
    { Seed: int
      Dtype: torch.ScalarType
      Device: torch.Device }

    static member Default = { Seed = 0; Dtype = torch.ScalarType.Float32; Device = torch.CPU }

/// A model's quality on a whole data split: the mean loss (without any regularisation term of
/// the training loss), and for classifiers the top-1 and top-2 accuracies (fractions in [0, 1];
/// HyperAdam's evaluation reports all three).
type Metrics =
    { Loss: float
      Top1: float option
      Top2: float option
      /// Number of examples evaluated.
      Count: int }

/// An optimizee problem: what optimizers, the meta-trainer and the experiment host consume.
///   Init: initial parameters for a seed, dtype and device
///   Loss: the (minibatch) training loss at a 0-based step for given parameters; tasks with
///         minibatches draw the batch of a step from their data seed, so a run is reproducible
///         and a resumed run sees the same batches. Deterministic tasks ignore the step.
///         Built from differentiable tensor operations only: it can be differentiated through
///         an unrolled optimization.
///   Evaluate: for data-driven tasks, the metrics on a whole split (train, validation or test),
///         computed without a graph; None for closed-form problems.
type Task =
    { Name: string
      Init: TaskInit -> Tree
      Loss: int -> Tree -> Tensor
      Evaluate: (Split -> Tree -> Metrics) option }

module Task =

    /// A task without an evaluation function.
    let create (name: string) (init: TaskInit -> Tree) (loss: int -> Tree -> Tensor) : Task =
        { Name = name; Init = init; Loss = loss; Evaluate = None }

    /// The metrics of a task on a split; fails clearly for tasks that have no data splits.
    let evaluate (task: Task) (split: Split) (parameters: Tree) : Metrics =
        match task.Evaluate with
        | Some f -> f split parameters
        | None -> Tensors.invalidArg "task" $"task '{task.Name}' has no data splits to evaluate on; use its Loss"

    /// Uniform draws in [lo, hi) from a seed, identical in every dtype (drawn in float64).
    let uniform (seed: int) (n: int) (lo: float) (hi: float) : float[] =
        let rng = System.Random(seed)
        Array.init n (fun _ -> lo + (hi - lo) * rng.NextDouble())

    /// A tensor of the given shape from float64 values (row-major), converted to dtype on device.
    let tensorOf (values: float[]) (shape: int64[]) (dtype: torch.ScalarType) (device: torch.Device) : Tensor =
        torch.tensor(values, dtype = dtype, device = device).reshape(shape)

    /// A 1-d parameter tensor from values.
    let vector (init: TaskInit) (values: float[]) : Tensor =
        torch.tensor(values, dtype = init.Dtype, device = init.Device)
