namespace Optimizers.Tasks

open TorchSharp
open Optimizers

/// How to build a task's initial parameters.
type TaskInit =
    { Seed: int
      Dtype: torch.ScalarType
      Device: torch.Device }

    static member Default = { Seed = 0; Dtype = torch.ScalarType.Float32; Device = torch.CPU }

/// An optimizee problem: what optimizers, the meta-trainer and the experiment host consume.
///   Init: initial parameters for a seed, dtype and device
///   Loss: the (minibatch) training loss at a 0-based step for given parameters; tasks with
///         minibatches draw the batch of a step from their seed, so a run is reproducible and a
///         resumed run sees the same batches. Deterministic tasks ignore the step.
type Task =
    { Name: string
      Init: TaskInit -> Tree
      Loss: int -> Tree -> Tensor }

module Task =

    /// Uniform draws in [lo, hi) from a seed, identical in every dtype (drawn in float64).
    let uniform (seed: int) (n: int) (lo: float) (hi: float) : float[] =
        let rng = System.Random(seed)
        Array.init n (fun _ -> lo + (hi - lo) * rng.NextDouble())

    /// A 1-d parameter tensor from values.
    let vector (init: TaskInit) (values: float[]) : Tensor =
        torch.tensor(values, dtype = init.Dtype, device = init.Device)
