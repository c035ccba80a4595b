/// Helpers shared by the learned-optimizer tests (LearnedTests, BaselineTests, ThesisTests,
/// FusedCellTests): a kind's option values, fresh float64 meta-parameters, the optimizer a kind
/// makes of them, and meta-training settings.
module Optimizers.Tests.LearnedCheck

open TorchSharp
open Optimizers
open Optimizers.Learned
open Optimizers.Meta
open Optimizers.Tasks
open Optimizers.Tests.Check

/// The option values of a kind.
let values (k: LearnedKind) (options: (string * string) list) = LearnedOptimizer.values k options

/// The typed options record a registration reads from option texts.
let typed (r: LearnedRegistration<'O>) (options: (string * string) list) : 'O =
    LearnedRegistration.read r (values (LearnedRegistration.kind r) options)

/// Fresh float64 meta-parameters of a kind.
let theta64 (k: LearnedKind) (options: (string * string) list) (seed: int) =
    k.InitTheta (values k options) seed |> Tree.map (fun t -> t.to_type f64)

/// The optimizer a kind makes of `theta`.
let create (k: LearnedKind) (options: (string * string) list) (theta: Tree) = k.Create (values k options) theta

/// Meta-training settings: 40 episodes of 4 windows of 5 steps on 12-dimensional sum of squares,
/// meta lr 1e-2, seed 5, float32, no validation and no checkpoints. Tests override what they vary.
let metaSettings (k: LearnedKind) (options: (string * string) list) : MetaSettings =
    { Kind = k
      KindOptions = options
      Task = (fun _ -> Synthetic.sumOfSquares 12 None)
      InitTheta = None
      Horizon = 20
      Window = 5
      Episodes = 40
      MetaLr = 1e-2
      MetaLrFinal = 1e-2
      RandomScaling = None
      ConvexTerm = None
      ResetRange = None
      Objective = MetaObjective.MeanLoss
      ValidateEvery = 1000
      ValidationSeeds = []
      ValidationSplit = Optimizers.Data.Split.Validation
      CheckpointDir = None
      CheckpointEvery = 1000
      Seed = 5
      Dtype = torch.ScalarType.Float32 }

/// HyperAdam of a theta, and fresh float64 meta-parameters for it.
let hyperAdam (options: (string * string) list) (theta: Tree) = create HyperAdam.kind options theta

let freshTheta (options: (string * string) list) (seed: int) = theta64 HyperAdam.kind options seed

/// HyperAdam (J = 4) meta-trained on windows of 4 steps over a horizon of 12, validated and
/// checkpointed every 2 episodes.
let hyperAdamSettings (episodes: int) (checkpoint: string option) : MetaSettings =
    { metaSettings HyperAdam.kind [ "j", "4"; "hidden", "6"; "lr", "0.05" ] with
        Horizon = 12
        Window = 4
        Episodes = episodes
        MetaLr = 3e-3
        MetaLrFinal = 1e-3
        ValidateEvery = 2
        ValidationSeeds = [ 1001; 1002 ]
        CheckpointDir = checkpoint
        CheckpointEvery = 2 }
