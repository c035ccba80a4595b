namespace Optimizers.Meta

open System
open System.IO
open System.Text.Json
open System.Text.Json.Nodes
open TorchSharp
open Optimizers
open Optimizers.Handcrafted
open Optimizers.Data
open Optimizers.Learned
open Optimizers.Tasks

/// What a window's meta-loss averages over its steps.
[<RequireQualifiedAccess>]
type MetaObjective =
    /// The mean optimizee loss L(w_t): HyperAdam's L(Theta) (seed 000) and Andrychowicz et al.'s.
    | MeanLoss
    /// The mean of log L(w_t): each step's relative progress counts alike, so the late steps,
    /// whose losses are small, are not drowned out by the early ones (the log-loss objective of
    /// Metz et al., "Understanding and correcting pathologies in the training of learned
    /// optimizers", 2019). Losses must be positive.
    | MeanLogLoss
    /// The mean of w_t log L(w_t) with w_t = 2 t / (T + 1) over the horizon's steps t = 1..T
    /// (weights averaging 1): the later a step, the more it counts. The claims read the final
    /// loss, and the plain means reward a fast start as much as a low end.
    | LateLogLoss

    static member Parse(text: string) =
        match text.Trim().ToLowerInvariant() with
        | "mean" -> MeanLoss
        | "log" -> MeanLogLoss
        | "late-log" -> LateLogLoss
        | t -> Tensors.invalidArg "meta-objective" $"unknown meta objective '{t}'; valid: mean (the mean loss, the papers'), log (the mean log loss), late-log (the log loss weighted by 2 t / (T + 1))"

/// Settings of a meta-training run.
type MetaSettings =
    { Kind: LearnedKind
      KindOptions: (string * string) list
      /// The optimizee problem for a data seed (its minibatch order): each episode draws a fresh
      /// instance, initial weights and minibatch order both from the episode's own seed, so theta
      /// never sees one fixed batch sequence; validation seeds likewise.
      Task: int -> Task
      /// Theta to start from (a trained file's, to continue on another task), or None: the kind's
      /// own initialisation from Seed.
      InitTheta: Tree option
      /// Steps per episode (T) and per truncated-backprop window; T is cut into T / Window windows.
      Horizon: int
      Window: int
      Episodes: int
      /// The meta-optimizer is Adam whose learning rate decays exponentially from MetaLr to MetaLrFinal.
      MetaLr: float
      MetaLrFinal: float
      Objective: MetaObjective
      /// Random scaling of the optimizee with c = exp(U(-r, r)) (Lv et al.), or None.
      RandomScaling: float option
      /// An extra convex term over a k-dimensional variable (Lv et al.), or None.
      ConvexTerm: int option
      /// Random resets (the thesis's train_reset, seed 004 section 2.2): each episode runs a
      /// number of steps drawn uniformly from [lo, hi] (cut to whole windows) before the
      /// optimizee is reset to a fresh random start; None: every episode runs Horizon steps.
      ResetRange: (int * int) option
      /// Every this many episodes, `validationLoss` averaged over the validation seeds (on the
      /// plain task, without the tricks); the best Theta so far is kept.
      ValidateEvery: int
      ValidationSeeds: int list
      /// The split whose loss after the horizon validates a data-driven task: Validation (data the
      /// optimizees never trained on) or Train (the whole training split: what the claims of
      /// Table 1 read, final:train_loss).
      ValidationSplit: Split
      /// Where checkpoints go (every CheckpointEvery episodes), and where a rerun resumes from.
      CheckpointDir: string option
      CheckpointEvery: int
      Seed: int
      Dtype: torch.ScalarType }

/// What a progress callback sees after each episode.
type MetaProgress =
    { Episode: int
      Episodes: int
      MetaLoss: float
      Validation: float option
      BestValidation: float
      Skipped: bool }

/// The result: the best Theta (by validation) and the last one, with the history of meta-losses.
type MetaResult =
    { Best: TrainedOptimizer
      Last: TrainedOptimizer
      MetaLosses: float list
      Validations: (int * float) list }

/// Meta-training (HyperAdam's L(Theta), seed 000; the thesis's loop, seed 004 section 2.2):
/// unroll T steps of the learned optimizer on an optimizee, meta-loss = mean optimizee loss
/// L(w_t) over the steps of a window, backpropagate into Theta through the window (truncated
/// backprop: the optimizee and optimizer state carry over between windows, detached), update
/// Theta with Adam. The optimizee's gradient is an input to the optimizer, not differentiated
/// through (no second derivatives, as in Andrychowicz et al. and the HyperAdam code).
/// Every episode starts a fresh optimizee drawn from (Seed, episode), so a run is determined by
/// its settings, and a checkpointed run resumed after a kill gives the same result bit for bit.
module MetaTrain =

    let private episodeSeed (seed: int) (episode: int) = seed * 1_000_003 + episode

    /// The optimizee of an episode (with the tricks applied).
    let optimizee (s: MetaSettings) (seed: int) : Task =
        let plain = s.Task seed
        let t = match s.RandomScaling with Some r -> Tricks.randomScaling r (seed + 17) plain | None -> plain
        match s.ConvexTerm with Some k -> Tricks.convexTerm k (seed + 31) t | None -> t

    let private validate (s: MetaSettings) =
        if s.Horizon < 1 then Tensors.invalidArg "horizon" $"horizon = {s.Horizon} is invalid; it must be >= 1"
        if s.Window < 1 || s.Horizon % s.Window <> 0 then
            Tensors.invalidArg "window" $"window = {s.Window} is invalid; it must be >= 1 and divide the horizon {s.Horizon}"
        if s.Episodes < 1 then Tensors.invalidArg "episodes" $"episodes = {s.Episodes} is invalid; it must be >= 1"
        Hyper.checkFloat "meta-train" "meta_lr" (fun v -> v > 0.0) "> 0" s.MetaLr
        Hyper.checkFloat "meta-train" "meta_lr_final" (fun v -> v > 0.0 && v <= s.MetaLr) "> 0 and <= meta_lr" s.MetaLrFinal
        if s.ValidateEvery < 1 then Tensors.invalidArg "validate_every" "validate_every must be >= 1"
        if s.CheckpointEvery < 1 then Tensors.invalidArg "checkpoint_every" "checkpoint_every must be >= 1"
        match s.ResetRange with
        | Some(lo, hi) when lo < s.Window || hi < lo ->
            Tensors.invalidArg "reset_range" $"reset range {lo}..{hi} is invalid; it needs window ({s.Window}) <= lo <= hi"
        | _ -> ()

    /// The number of windows episode `episode` runs: Horizon / Window, or with random resets a
    /// length drawn from the episode's own seed (so a resumed run draws the same lengths).
    let episodeWindows (s: MetaSettings) (episode: int) : int =
        match s.ResetRange with
        | None -> s.Horizon / s.Window
        | Some(lo, hi) -> Random(episodeSeed s.Seed episode + 53).Next(lo, hi + 1) / s.Window

    /// The expected number of meta-updates of a run (the meta learning rate decays over them).
    let private expectedUpdates (s: MetaSettings) : float =
        match s.ResetRange with
        | None -> float (s.Episodes * (s.Horizon / s.Window))
        | Some(lo, hi) -> float s.Episodes * (float (lo + hi) / 2.0 / float s.Window)

    /// The mean loss over `steps` steps of `opt` from the task's start for `seed` (no graph).
    let objective (task: Task) (opt: Transformation) (dtype: torch.ScalarType) (seed: int) (steps: int) : float =
        let start = task.Init { TaskInit.Default with Seed = seed; Dtype = dtype }
        let mutable sum = 0.0
        try
            let p, st = Run.optimize task opt start steps (fun k l _ -> if k > 0 then sum <- sum + l)
            Tree.dispose p
            State.dispose st
            sum / float steps
        with DivergedException _ -> nan
        |> fun v -> Tree.dispose start; v

    /// The validation measure of one optimizee: for data-driven tasks the loss on `split` after
    /// `steps` steps (the final loss the optimizer is judged on), else the mean training loss over
    /// the run (the meta-objective).
    let validationLossOn (split: Split) (task: Task) (opt: Transformation) (dtype: torch.ScalarType) (seed: int) (steps: int) : float =
        match task.Evaluate with
        | None -> objective task opt dtype seed steps
        | Some evaluate ->
            let start = task.Init { TaskInit.Default with Seed = seed; Dtype = dtype }
            try
                try
                    let p, st = Run.optimize task opt start steps (fun _ _ _ -> ())
                    let v = (evaluate split p).Loss
                    Tree.dispose p
                    State.dispose st
                    v
                with DivergedException _ -> nan
            finally Tree.dispose start

    /// `validationLossOn` the validation split: the loss on data the optimizees never trained on.
    let validationLoss (task: Task) (opt: Transformation) (dtype: torch.ScalarType) (seed: int) (steps: int) : float =
        validationLossOn Split.Validation task opt dtype seed steps

    /// The seeds of n validation optimizees: -1001, -1002, ..., never a training episode's
    /// (episodes use Seed * 1,000,003 + episode) nor an evaluation seed (0, 1, ...).
    let validationSeeds (n: int) : int list = [ for i in 1 .. n -> -1000 - i ]

    /// `validationLoss` of `opt` averaged over the settings' validation optimizees.
    let meanValidationLoss (s: MetaSettings) (opt: Transformation) : float =
        s.ValidationSeeds |> List.averageBy (fun vs -> validationLossOn s.ValidationSplit (s.Task vs) opt s.Dtype vs s.Horizon)

    /// The loss of step `t` at `p` (no graph) and its gradient, the optimizer's input.
    let private lossAndGradient (task: Task) (t: int) (p: Tree) : Tensor * Tree =
        let leaves = Tree.asLeaves p
        let loss = task.Loss t leaves
        let g = torch.autograd.grad([| loss |], leaves.Values)
        loss.detach(), { Names = p.Names; Values = Array.ofSeq g }

    /// The steps of one window from (p, state) with Theta in the graph: the mean loss L(w_t) (or
    /// log L(w_t), by the objective) over the window's W updates (a value, no graph), a surrogate
    /// whose gradient with respect to Theta is that of the mean, and the final params and state
    /// (still in the graph).
    /// The surrogate is mean_t <g_t, w_t> with g_t = dL(w_t)/dw_t held constant: the optimizee's
    /// gradient is not differentiated through, so dL(w_t)/dTheta = g_t . dw_t/dTheta exactly, and
    /// the backward pass skips the optimizee's network (its graph is freed after each step).
    let window (s: MetaSettings) (task: Task) (opt: Transformation) (t0: int) (p0: Tree) (s0: State) =
        let mutable p = p0
        let mutable st = s0
        let losses = Collections.Generic.List<Tensor>()
        let terms = Collections.Generic.List<Tensor>()
        // the loss after t updates, t = t0 + 1 .. t0 + Window
        let record (t: int) (loss: Tensor) (g: Tree) (p: Tree) =
            let term = torch.dot(Cells.flatten g, Cells.flatten p)
            // d log L(w)/dTheta = (g / L) . dw/dTheta, with L held constant like g.
            let logged (weight: float) =
                let l = loss.clamp_min(1e-30)
                losses.Add(Tensors.mulNum (l.log()) weight)
                terms.Add(Tensors.mulNum (term / l) weight)
            match s.Objective with
            | MetaObjective.MeanLoss ->
                losses.Add loss
                terms.Add term
            | MetaObjective.MeanLogLoss -> logged 1.0
            | MetaObjective.LateLogLoss -> logged (2.0 * float t / float (s.Horizon + 1))
        for i in 0 .. s.Window - 1 do
            let loss, grads = lossAndGradient task (t0 + i) p
            if i > 0 then record (t0 + i) loss grads p
            let p', st' = Transform.step opt grads st p
            p <- p'
            st <- st'
        let loss, grads = lossAndGradient task (t0 + s.Window) p
        record (t0 + s.Window) loss grads p
        torch.stack(losses).mean(), torch.stack(terms).mean(), p, st

    type private Checkpoint =
        { Episode: int
          Theta: Tree
          MetaState: State
          BestTheta: Tree
          BestValidation: float
          MetaLosses: float list
          Validations: (int * float) list }

    let private metaOptimizer (s: MetaSettings) =
        let total = expectedUpdates s
        let decay = (s.MetaLrFinal / s.MetaLr) ** (1.0 / max 1.0 total)
        Adam.create { Adam.defaults with Lr = Hyper.Scheduled(fun k -> s.MetaLr * decay ** float k) }

    let private trained (s: MetaSettings) (theta: Tree) (info: (string * string) list) : TrainedOptimizer =
        { Kind = s.Kind.Kind; Options = s.KindOptions; Theta = Tree.map (fun t -> t.detach().clone()) theta; Info = Map.ofList info }

    let private saveCheckpoint (dir: string) (s: MetaSettings) (c: Checkpoint) =
        Directory.CreateDirectory dir |> ignore
        LearnedOptimizer.save (Path.Combine(dir, "theta.bin")) (trained s c.Theta [])
        LearnedOptimizer.save (Path.Combine(dir, "best.bin")) (trained s c.BestTheta [])
        Serialization.saveState (Path.Combine(dir, "meta-optimizer.state")) (metaOptimizer s) c.MetaState
        let progress = JsonObject()
        progress["episode"] <- JsonValue.Create c.Episode
        progress["best_validation"] <- JsonValue.Create(if Double.IsNaN c.BestValidation then "nan" else c.BestValidation.ToString("R"))
        progress["meta_losses"] <- JsonArray(c.MetaLosses |> List.map (fun v -> JsonValue.Create(v.ToString("R")) :> JsonNode) |> Array.ofList)
        progress["validations"] <- JsonArray(c.Validations |> List.map (fun (e, v) -> JsonArray(JsonValue.Create e, JsonValue.Create(v.ToString("R"))) :> JsonNode) |> Array.ofList)
        // progress.json is written last and renamed into place: it marks a complete checkpoint.
        let tmp = Path.Combine(dir, "progress.json.tmp")
        File.WriteAllText(tmp, progress.ToJsonString())
        File.Move(tmp, Path.Combine(dir, "progress.json"), true)

    let private loadCheckpoint (dir: string) (s: MetaSettings) : Checkpoint option =
        let file = Path.Combine(dir, "progress.json")
        if not (File.Exists file) then None
        else
            let progress = JsonNode.Parse(File.ReadAllText file)
            let f (n: JsonNode) = Double.Parse(n.GetValue<string>(), Globalization.CultureInfo.InvariantCulture)
            let theta = LearnedOptimizer.load (Path.Combine(dir, "theta.bin"))
            if theta.Kind <> s.Kind.Kind then
                raise (InvalidDataException($"{dir}: the checkpoint is of a '{theta.Kind}', not of a '{s.Kind.Kind}'; use another --checkpoint directory"))
            Some
                { Episode = progress["episode"].GetValue<int>()
                  Theta = theta.Theta
                  BestTheta = (LearnedOptimizer.load (Path.Combine(dir, "best.bin"))).Theta
                  MetaState = Serialization.loadState (Path.Combine(dir, "meta-optimizer.state")) (metaOptimizer s)
                  BestValidation = (match progress["best_validation"].GetValue<string>() with "nan" -> nan | v -> Double.Parse(v, Globalization.CultureInfo.InvariantCulture))
                  MetaLosses = progress["meta_losses"].AsArray() |> Seq.map f |> List.ofSeq
                  Validations = progress["validations"].AsArray() |> Seq.map (fun p -> p[0].GetValue<int>(), f p[1]) |> List.ofSeq }

    /// Meta-train; `onEpisode` is called after each episode (for a progress bar).
    let train (s: MetaSettings) (onEpisode: MetaProgress -> unit) : MetaResult =
        validate s
        let values = LearnedOptimizer.values s.Kind s.KindOptions
        let metaOpt = metaOptimizer s
        let keep (t: Tree) = t |> Tree.map (fun x -> x.DetachFromDisposeScope())
        let fresh () =
            let initial = match s.InitTheta with Some t -> Tree.map (fun (x: Tensor) -> x.detach().clone()) t | None -> s.Kind.InitTheta values s.Seed
            let theta = initial |> Tree.map (fun x -> x.``to``(s.Dtype)) |> keep
            { Episode = -1; Theta = theta; MetaState = metaOpt.Init theta |> State.detachFromScopes
              BestTheta = theta; BestValidation = nan; MetaLosses = []; Validations = [] }
        let mutable c =
            match s.CheckpointDir |> Option.bind (fun d -> loadCheckpoint d s) with
            | Some c -> { c with Theta = Tree.map (fun x -> x.``to``(s.Dtype)) c.Theta; BestTheta = Tree.map (fun x -> x.``to``(s.Dtype)) c.BestTheta }
            | None -> fresh ()
        for episode in c.Episode + 1 .. s.Episodes - 1 do
            let windows = episodeWindows s episode
            let seed = episodeSeed s.Seed episode
            let task = optimizee s seed
            let mutable p = task.Init { TaskInit.Default with Seed = seed; Dtype = s.Dtype } |> keep
            let mutable st = (s.Kind.Create values c.Theta).Init p |> State.detachFromScopes
            let mutable theta = c.Theta
            let mutable metaState = c.MetaState
            let mutable sum, skipped = 0.0, false
            let mutable w = 0
            while w < windows && not skipped do
                use scope = torch.NewDisposeScope()
                let leaves = Tree.asLeaves theta
                let opt = s.Kind.Create values leaves
                let metaLoss, surrogate, p', st' = window s task opt (w * s.Window) p st
                let l = metaLoss.ToDouble()
                if Double.IsNaN l || Double.IsInfinity l then skipped <- true
                else
                    let g = torch.autograd.grad([| surrogate |], leaves.Values)
                    let grads = { Names = theta.Names; Values = Array.ofSeq g }
                    let theta', metaState' = using (torch.no_grad()) (fun _ -> Transform.step metaOpt grads metaState theta)
                    sum <- sum + l
                    let old = Seq.concat [ p.Values :> seq<_>; State.tensors st; (if obj.ReferenceEquals(theta, c.Theta) then Seq.empty else theta.Values); State.tensors metaState |> Seq.filter (fun t -> not (List.exists (fun x -> obj.ReferenceEquals(x, t)) (State.tensors c.MetaState))) ] |> Array.ofSeq
                    p <- Tree.map (fun x -> x.detach().DetachFromDisposeScope()) p'
                    st <- State.detach st' |> State.detachFromScopes
                    theta <- Tree.map (fun x -> x.detach().DetachFromDisposeScope()) theta'
                    metaState <- State.detach metaState' |> State.detachFromScopes
                    Run.disposeReplaced old (Seq.concat [ p.Values :> seq<_>; State.tensors st; theta.Values; State.tensors metaState ])
                w <- w + 1
                Memory.afterStep ()
            Tree.dispose p
            State.dispose st
            let metaLoss = if skipped then nan else sum / float windows
            let validation =
                if (episode + 1) % s.ValidateEvery = 0 && not s.ValidationSeeds.IsEmpty then
                    let opt = s.Kind.Create values theta
                    // On the plain task, without the tricks: the problem the optimizer is meant for (the
                    // authors' code also tests on the untricked MNIST net).
                    Some(meanValidationLoss s opt)
                else None
            let best, bestTheta =
                match validation with
                | Some v when not (Double.IsNaN v) && (Double.IsNaN c.BestValidation || v < c.BestValidation) -> v, theta
                | _ -> c.BestValidation, (if c.Validations.IsEmpty && validation.IsNone then theta else c.BestTheta)
            c <-
                { Episode = episode
                  Theta = theta
                  MetaState = metaState
                  BestTheta = bestTheta
                  BestValidation = best
                  MetaLosses = c.MetaLosses @ [ metaLoss ]
                  Validations = c.Validations @ (validation |> Option.map (fun v -> episode, v) |> Option.toList) }
            match s.CheckpointDir with
            | Some dir when (episode + 1) % s.CheckpointEvery = 0 || episode = s.Episodes - 1 -> saveCheckpoint dir s c
            | _ -> ()
            onEpisode { Episode = episode; Episodes = s.Episodes; MetaLoss = metaLoss; Validation = validation; BestValidation = best; Skipped = skipped }
        let info =
            [ "episodes", string s.Episodes; "horizon", string s.Horizon; "window", string s.Window
              "task", (s.Task s.Seed).Name; "seed", string s.Seed
              "best_validation", c.BestValidation.ToString("R", Globalization.CultureInfo.InvariantCulture) ]
        { Best = trained s c.BestTheta info
          Last = trained s c.Theta info
          MetaLosses = c.MetaLosses
          Validations = c.Validations }
