namespace Optimizers

open System
open TorchSharp
open Optimizers.Tasks

/// One step of an LR range test.
type LrRangePoint =
    { /// 0-based step of the sweep
      Step: int
      /// the learning rate of this step
      Lr: float
      /// the training loss right after this step
      Loss: float
      /// the exponentially smoothed loss, bias-corrected
      Smoothed: float }

/// Why an LR range test stopped.
[<RequireQualifiedAccess>]
type LrRangeStop =
    /// Every step of the sweep ran.
    | Completed
    /// The smoothed loss exceeded ExplodeFactor times its minimum at this step (recorded).
    | Exploded of step: int
    /// The loss became NaN or infinite at this step (not recorded).
    | NonFinite of step: int

type LrRangeSettings =
    { MinLr: float
      MaxLr: float
      /// Number of optimizer steps of the sweep (the number of learning rates tried).
      Steps: int
      /// Smoothing of the loss: avg <- beta avg + (1 - beta) loss, smoothed = avg / (1 - beta^(i+1)).
      Beta: float
      /// Stop once the smoothed loss exceeds this factor times its minimum so far.
      ExplodeFactor: float
      /// Points left out at the start and the end when looking for the steepest descent
      /// (fastai's recorder.plot skip_start, skip_end), when enough points remain.
      SkipStart: int
      SkipEnd: int }

type LrRangeResult =
    { Settings: LrRangeSettings
      Points: LrRangePoint[]
      Stop: LrRangeStop
      /// The learning rate at the steepest descent of the smoothed loss (None: too few points).
      SuggestedLr: float option
      /// The learning rate where the smoothed loss was lowest (None: no point recorded).
      MinLossLr: float option }

/// The learning-rate range test (Smith, WACV 2017, section 3.3, "LR range test"; lecture seed 003;
/// in the form of fastai's lr_find): train from a start with a learning rate growing exponentially
/// from MinLr to MaxLr over Steps steps, record the loss after each step, smooth it with an
/// exponential moving average (beta = 0.98, bias-corrected), stop once the smoothed loss exceeds
/// 4 times its minimum (or becomes NaN), and suggest the learning rate where the smoothed loss
/// falls fastest (the most negative slope against log lr, by numpy.gradient's differences). The
/// suggestion is a starting point for a choice, not a tuned value: fastai suggests about a tenth
/// of the minimum's learning rate as an alternative, also reported (MinLossLr).
module LrRangeTest =

    let defaults : LrRangeSettings =
        { MinLr = 1e-7; MaxLr = 10.0; Steps = 100; Beta = 0.98; ExplodeFactor = 4.0; SkipStart = 10; SkipEnd = 5 }

    let validate (s: LrRangeSettings) =
        let owner = "lr-range-test"
        Hyper.checkFloat owner "min_lr" (fun v -> v > 0.0 && not (Double.IsInfinity v)) "a finite number > 0" s.MinLr
        Hyper.checkFloat owner "max_lr" (fun v -> v > s.MinLr && not (Double.IsInfinity v)) $"a finite number > min_lr = {s.MinLr}" s.MaxLr
        if s.Steps < 2 then Tensors.invalidArg "steps" $"{owner}: steps = {s.Steps} is invalid; it must be a whole number >= 2"
        Hyper.checkFloat owner "beta" (fun v -> v >= 0.0 && v < 1.0) "in [0, 1)" s.Beta
        Hyper.checkFloat owner "explode_factor" (fun v -> v > 1.0) "> 1" s.ExplodeFactor
        if s.SkipStart < 0 || s.SkipEnd < 0 then
            Tensors.invalidArg "skip" $"{owner}: skip_start = {s.SkipStart} and skip_end = {s.SkipEnd} must be >= 0"

    /// The index of the steepest descent of `ys` (numpy.gradient: central differences inside,
    /// one-sided at the ends), looking only at ys[lo .. hi].
    let steepest (ys: float[]) (lo: int) (hi: int) : int =
        let n = hi - lo + 1
        if n < 2 then lo
        else
            let slope i =
                if i = lo then ys[lo + 1] - ys[lo]
                elif i = hi then ys[hi] - ys[hi - 1]
                else (ys[i + 1] - ys[i - 1]) / 2.0
            seq { lo..hi } |> Seq.minBy slope

    /// The suggestion from recorded points: the steepest descent of the smoothed loss, leaving out
    /// SkipStart points at the start and SkipEnd at the end when at least 3 points remain.
    let suggest (s: LrRangeSettings) (points: LrRangePoint[]) : float option =
        if points.Length < 2 then None
        else
            let ys = points |> Array.map (fun p -> p.Smoothed)
            let lo, hi =
                if points.Length - s.SkipStart - s.SkipEnd >= 3 then s.SkipStart, points.Length - 1 - s.SkipEnd
                else 0, points.Length - 1
            Some points[steepest ys lo hi].Lr

    /// Run the test: `makeOptimizer lr` builds the optimizer from the learning rate as a
    /// hyperparameter (it receives the exponential sweep as Hyper.Scheduled). The start is left
    /// untouched. Memory stays flat as in Run.optimize. Raises DivergedException when the loss at
    /// the start itself is not finite.
    let run (settings: LrRangeSettings) (task: Task) (makeOptimizer: Hyper -> Transformation) (start: Tree) : LrRangeResult =
        validate settings
        let sweep = Schedule.exponentialSweep settings.MinLr settings.MaxLr settings.Steps
        let opt = makeOptimizer (Hyper.Scheduled sweep)
        let points = ResizeArray<LrRangePoint>()
        let mutable p = Tree.clone start |> Tree.moveToOuterScope
        let mutable s = opt.Init p |> State.moveToOuterScope
        let mutable grads = Unchecked.defaultof<Tree>
        do
            use scope = torch.NewDisposeScope()
            let loss, g = Run.lossAndGrad task 0 p
            let l = loss.ToDouble()
            if Double.IsNaN l || Double.IsInfinity l then raise (DivergedException(0, l))
            grads <- Tree.moveToOuterScope g
        let mutable avg = 0.0
        let mutable best = Double.PositiveInfinity
        let mutable stop = LrRangeStop.Completed
        let mutable i = 0
        while i < settings.Steps && stop = LrRangeStop.Completed do
            use scope = torch.NewDisposeScope()
            let p', s' = using (torch.no_grad()) (fun _ -> Transform.step opt grads s p)
            let p' = Tree.moveToOuterScope p'
            let s' = State.moveToOuterScope s'
            Run.disposeReplaced (Seq.concat [ Seq.ofArray p.Values; Seq.ofList (State.tensors s); Seq.ofArray grads.Values ]) (Seq.append p'.Values (State.tensors s'))
            p <- p'
            s <- s'
            let loss, g = Run.lossAndGrad task (i + 1) p
            grads <- Tree.moveToOuterScope g
            let l = loss.ToDouble()
            if Double.IsNaN l || Double.IsInfinity l then stop <- LrRangeStop.NonFinite i
            else
                avg <- settings.Beta * avg + (1.0 - settings.Beta) * l
                let smoothed = avg / (1.0 - Math.Pow(settings.Beta, float (i + 1)))
                points.Add { Step = i; Lr = sweep i; Loss = l; Smoothed = smoothed }
                if smoothed < best then best <- smoothed
                if smoothed > settings.ExplodeFactor * best then stop <- LrRangeStop.Exploded i
            i <- i + 1
            Memory.afterStep ()
        Tree.dispose p
        Tree.dispose grads
        State.dispose s
        let points = points.ToArray()
        { Settings = settings
          Points = points
          Stop = stop
          SuggestedLr = suggest settings points
          MinLossLr = if points.Length = 0 then None else Some (points |> Array.minBy (fun q -> q.Smoothed)).Lr }
