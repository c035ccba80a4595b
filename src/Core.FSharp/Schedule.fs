namespace Optimizers

open System

/// The policy of a cyclical learning rate (Smith 2017, section 3.1; torch.optim.lr_scheduler.CyclicLR).
[<RequireQualifiedAccess>]
type CyclicMode =
    /// Triangle waves of constant amplitude.
    | Triangular
    /// The amplitude halves after every cycle.
    | Triangular2
    /// The amplitude is scaled by gamma^t (t the step).
    | ExpRange of gamma: float

/// Learning-rate schedules: pure functions from a 0-based step to a value (`Schedule = int -> float`,
/// defined next to `Hyper`). A schedule is passed to an optimizer as `Hyper.Scheduled`; nothing is
/// ever mutated, so a schedule can be called at any step, in any order, any number of times.
///
/// Values are absolute (the learning rate itself, not a factor of it). Where PyTorch has the
/// scheduler, the value at step t is the learning rate PyTorch reports after t calls of
/// `scheduler.step()` (t = 0: right after construction), i.e. the rate used by the (t+1)-th
/// optimizer step; `init` is then the `lr` the torch optimizer was built with. The tests check
/// this against values produced by PyTorch 1.13 (tests/reference/schedules.py).
///
/// Every constructor validates its arguments and raises InvalidOptionException naming the
/// schedule, the argument and the valid range. A schedule called at a negative step raises too.
[<CompilationRepresentation(CompilationRepresentationFlags.ModuleSuffix)>]
module Schedule =

    let private checkNonNegative owner name (v: float) =
        Hyper.checkFloat owner name (fun v -> v >= 0.0 && not (Double.IsInfinity v)) "a finite number >= 0" v

    let private checkPositive owner name (v: float) =
        Hyper.checkFloat owner name (fun v -> v > 0.0 && not (Double.IsInfinity v)) "a finite number > 0" v

    let private checkAtLeast owner name (least: int) (v: int) =
        if v < least then Tensors.invalidArg name $"{owner}: {name} = {v} is invalid; it must be a whole number >= {least}"

    let private checkStep (owner: string) (t: int) =
        if t < 0 then Tensors.invalidArg "step" $"{owner}: step = {t} is invalid; schedules are defined for steps >= 0"

    /// Cosine interpolation from `a` (at pct = 0) to `b` (at pct = 1), as PyTorch writes it:
    /// b + (a - b) / 2 * (1 + cos(pi * pct)).
    let private cosineBetween (a: float) (b: float) (pct: float) = b + (a - b) / 2.0 * (Math.Cos(Math.PI * pct) + 1.0)

    /// The same value at every step.
    let constant (value: float) : Schedule =
        checkNonNegative "constant schedule" "value" value
        fun t -> checkStep "constant schedule" t; value

    /// Step decay (torch StepLR): init * gamma^floor(t / stepSize).
    let step (init: float) (stepSize: int) (gamma: float) : Schedule =
        let owner = "step schedule"
        checkNonNegative owner "lr" init
        checkAtLeast owner "step_size" 1 stepSize
        checkNonNegative owner "gamma" gamma
        fun t -> checkStep owner t; init * Math.Pow(gamma, float (t / stepSize))

    /// Decay at milestones (torch MultiStepLR): init * gamma^(number of milestones <= t).
    /// Milestones must be strictly increasing steps >= 1.
    let multistep (init: float) (milestones: int list) (gamma: float) : Schedule =
        let owner = "multistep schedule"
        checkNonNegative owner "lr" init
        checkNonNegative owner "gamma" gamma
        if List.isEmpty milestones then Tensors.invalidArg "milestones" $"{owner}: milestones is empty; give at least one step >= 1"
        for m in milestones do checkAtLeast owner "milestones" 1 m
        if List.pairwise milestones |> List.exists (fun (a, b) -> b <= a) then
            Tensors.invalidArg "milestones" $"{owner}: milestones must be strictly increasing, got {Tensors.commas (List.map string milestones)}"
        let ms = Array.ofList milestones
        fun t ->
            checkStep owner t
            init * Math.Pow(gamma, float (ms |> Array.filter (fun m -> m <= t) |> Array.length))

    /// Exponential decay (torch ExponentialLR): init * gamma^t.
    let exponential (init: float) (gamma: float) : Schedule =
        let owner = "exponential schedule"
        checkNonNegative owner "lr" init
        checkNonNegative owner "gamma" gamma
        fun t -> checkStep owner t; init * Math.Pow(gamma, float t)

    /// Polynomial decay from init to endValue over `steps` steps, then endValue (optax's
    /// polynomial_schedule; with endValue = 0 it is torch PolynomialLR(total_iters = steps, power)):
    ///   (init - endValue) * (1 - min(t, steps) / steps)^power + endValue.
    let polynomial (init: float) (endValue: float) (power: float) (steps: int) : Schedule =
        let owner = "polynomial schedule"
        checkNonNegative owner "lr" init
        checkNonNegative owner "end_lr" endValue
        checkPositive owner "power" power
        checkAtLeast owner "total_iters" 1 steps
        fun t ->
            checkStep owner t
            (init - endValue) * Math.Pow(1.0 - float (min t steps) / float steps, power) + endValue

    /// Linear interpolation from init to endValue over `steps` steps, then endValue (optax's
    /// linear_schedule; torch LinearLR with start_factor = init / lr and end_factor = endValue / lr).
    let linear (init: float) (endValue: float) (steps: int) : Schedule =
        let owner = "linear schedule"
        checkNonNegative owner "init" init
        checkNonNegative owner "end" endValue
        checkAtLeast owner "steps" 1 steps
        fun t -> checkStep owner t; init + (endValue - init) * float (min t steps) / float steps

    /// Linear warm-up from startFactor * peak to peak over `steps` steps, then peak (torch
    /// LinearLR(start_factor, end_factor = 1, total_iters = steps); Goyal et al. 2017's gradual
    /// warm-up). startFactor in [0, 1]; 0 starts from a zero learning rate.
    let warmup (peak: float) (startFactor: float) (steps: int) : Schedule =
        let owner = "warmup schedule"
        checkNonNegative owner "lr" peak
        Hyper.checkFloat owner "start_factor" (fun v -> v >= 0.0 && v <= 1.0) "in [0, 1]" startFactor
        checkAtLeast owner "warmup_steps" 1 steps
        fun t ->
            checkStep owner t
            peak * (startFactor + (1.0 - startFactor) * float (min t steps) / float steps)

    /// Cosine annealing (Loshchilov and Hutter 2017, eq. 5 without restarts; torch CosineAnnealingLR):
    ///   etaMin + (init - etaMin) * (1 + cos(pi * t / tMax)) / 2.
    /// As in PyTorch the cosine goes on past tMax (back up to init at 2 tMax); use `sgdr` for
    /// restarts, or `join` with `constant` to stay at etaMin.
    let cosine (init: float) (tMax: int) (etaMin: float) : Schedule =
        let owner = "cosine schedule"
        checkNonNegative owner "lr" init
        checkAtLeast owner "t_max" 1 tMax
        checkNonNegative owner "eta_min" etaMin
        fun t -> checkStep owner t; cosineBetween init etaMin (float t / float tMax)

    /// SGDR: cosine annealing with warm restarts (Loshchilov and Hutter, ICLR 2017, eq. 5; torch
    /// CosineAnnealingWarmRestarts). The i-th period lasts T_i = t0 * tMult^i steps; within it,
    ///   etaMin + (init - etaMin) * (1 + cos(pi * T_cur / T_i)) / 2,
    /// T_cur the steps since the last restart. t0 >= 1 and tMult >= 1 are whole numbers, as in PyTorch.
    let sgdr (init: float) (t0: int) (tMult: int) (etaMin: float) : Schedule =
        let owner = "sgdr schedule"
        checkNonNegative owner "lr" init
        checkAtLeast owner "t_0" 1 t0
        checkAtLeast owner "t_mult" 1 tMult
        checkNonNegative owner "eta_min" etaMin
        fun t ->
            checkStep owner t
            let tCur, tI =
                if tMult = 1 then t % t0, t0
                else
                    // Periods grow geometrically, so this loop runs O(log t) times.
                    let mutable tCur = int64 t
                    let mutable tI = int64 t0
                    while tCur >= tI do
                        tCur <- tCur - tI
                        tI <- tI * int64 tMult
                    int tCur, int tI
            cosineBetween init etaMin (float tCur / float tI)

    /// Cyclical learning rate (Smith, WACV 2017; torch CyclicLR): the rate rises linearly from
    /// baseLr to maxLr over stepSizeUp steps, falls back over stepSizeDown steps, and repeats:
    ///   cycle = floor(1 + t / (up + down)),  x = 1 + t / (up + down) - cycle
    ///   scale = x / r if x <= r else (x - 1) / (r - 1),   r = up / (up + down)
    ///   lr = baseLr + (maxLr - baseLr) * scale * f,
    /// f = 1 (triangular), 1 / 2^(cycle - 1) (triangular2), gamma^t (exp_range).
    let cyclic (mode: CyclicMode) (baseLr: float) (maxLr: float) (stepSizeUp: int) (stepSizeDown: int) : Schedule =
        let owner = "cyclic schedule"
        checkNonNegative owner "base_lr" baseLr
        checkNonNegative owner "max_lr" maxLr
        checkAtLeast owner "step_size_up" 1 stepSizeUp
        checkAtLeast owner "step_size_down" 1 stepSizeDown
        match mode with
        | CyclicMode.ExpRange g -> Hyper.checkFloat owner "gamma" (fun v -> v > 0.0 && v <= 1.0) "in (0, 1]" g
        | _ -> ()
        let total = float (stepSizeUp + stepSizeDown)
        let ratio = float stepSizeUp / total
        fun t ->
            checkStep owner t
            let cycle = Math.Floor(1.0 + float t / total)
            let x = 1.0 + float t / total - cycle
            let scale = if x <= ratio then x / ratio else (x - 1.0) / (ratio - 1.0)
            let f =
                match mode with
                | CyclicMode.Triangular -> 1.0
                | CyclicMode.Triangular2 -> 1.0 / Math.Pow(2.0, cycle - 1.0)
                | CyclicMode.ExpRange g -> Math.Pow(g, float t)
            baseLr + (maxLr - baseLr) * scale * f

    /// The 1cycle policy (Smith and Topin 2017, "Super-convergence"), exactly as torch OneCycleLR:
    /// from maxLr / divFactor up to maxLr over the first pctStart * totalSteps - 1 steps, then down
    /// to maxLr / divFactor / finalDivFactor at step totalSteps - 1, annealing by cosine (or
    /// linearly when `linearAnneal`). With `threePhase` the rate comes back down to the initial
    /// rate symmetrically, and only a last phase anneals to the minimum (torch's three_phase).
    /// PyTorch defaults: pctStart 0.3, divFactor 25, finalDivFactor 1e4. After step totalSteps - 1
    /// the value stays at the minimum (PyTorch refuses to step past totalSteps).
    let oneCycle (maxLr: float) (totalSteps: int) (pctStart: float) (divFactor: float) (finalDivFactor: float) (threePhase: bool) (linearAnneal: bool) : Schedule =
        let owner = "one-cycle schedule"
        checkNonNegative owner "max_lr" maxLr
        checkAtLeast owner "total_steps" 2 totalSteps
        Hyper.checkFloat owner "pct_start" (fun v -> v >= 0.0 && v <= 1.0) "in [0, 1]" pctStart
        checkPositive owner "div_factor" divFactor
        checkPositive owner "final_div_factor" finalDivFactor
        let initial = maxLr / divFactor
        let minLr = initial / finalDivFactor
        let up = pctStart * float totalSteps - 1.0
        let last = float (totalSteps - 1)
        // (end step, start value, end value) of each phase, the first starting at step 0.
        let phases =
            if threePhase then [ up, initial, maxLr; 2.0 * pctStart * float totalSteps - 2.0, maxLr, initial; last, initial, minLr ]
            else [ up, initial, maxLr; last, maxLr, minLr ]
        let ends = 0.0 :: (phases |> List.map (fun (e, _, _) -> e))
        if List.pairwise ends |> List.exists (fun (a, b) -> b <= a) then
            let shape = if threePhase then "pct_start * total_steps > 1 and pct_start < (total_steps + 1) / (2 total_steps)" else "1 < pct_start * total_steps < total_steps"
            Tensors.invalidArg "pct_start"
                $"{owner}: pct_start = {pctStart} with total_steps = {totalSteps} leaves a phase without steps; it needs {shape}"
        let anneal a b pct = if linearAnneal then (b - a) * pct + a else cosineBetween a b pct
        let phases = Array.ofList phases
        fun t ->
            checkStep owner t
            if float t > last then minLr
            else
                // The first phase whose end is not before t (torch's loop over _schedule_phases).
                let i = phases |> Array.tryFindIndex (fun (e, _, _) -> float t <= e) |> Option.defaultValue (phases.Length - 1)
                let start = if i = 0 then 0.0 else (let e, _, _ = phases[i - 1] in e)
                let e, a, b = phases[i]
                anneal a b ((float t - start) / (e - start))

    /// An exponential sweep from minValue (step 0) to maxValue (step steps - 1), constant after:
    /// minValue * (maxValue / minValue)^(t / (steps - 1)). The LR range test's schedule (Smith 2017;
    /// fastai's lr_find).
    let exponentialSweep (minValue: float) (maxValue: float) (steps: int) : Schedule =
        let owner = "exponential sweep"
        checkPositive owner "min_lr" minValue
        checkPositive owner "max_lr" maxValue
        if maxValue <= minValue then
            Tensors.invalidArg "max_lr" $"{owner}: max_lr = {maxValue} is invalid; it must be greater than min_lr = {minValue}"
        checkAtLeast owner "steps" 2 steps
        fun t -> checkStep owner t; minValue * Math.Pow(maxValue / minValue, float (min t (steps - 1)) / float (steps - 1))

    /// Schedules one after another (optax's join_schedules): with boundaries b_1 < ... < b_{n-1},
    /// step t < b_1 takes schedules[0] at t, and b_i <= t < b_{i+1} takes schedules[i] at t - b_i,
    /// so every schedule starts from its own step 0. E.g. warm-up then cosine decay:
    ///   join [ warmup lr 0.0 100; cosine lr 900 0.0 ] [ 100 ].
    let join (schedules: Schedule list) (boundaries: int list) : Schedule =
        let owner = "join"
        if List.isEmpty schedules then Tensors.invalidArg "schedules" $"{owner}: no schedules given; give at least one"
        if boundaries.Length <> schedules.Length - 1 then
            Tensors.invalidArg "boundaries"
                $"{owner}: {schedules.Length} schedules need {schedules.Length - 1} boundaries, got {boundaries.Length}"
        for b in boundaries do checkAtLeast owner "boundaries" 1 b
        if List.pairwise boundaries |> List.exists (fun (a, b) -> b <= a) then
            Tensors.invalidArg "boundaries" $"{owner}: boundaries must be strictly increasing, got {Tensors.commas (List.map string boundaries)}"
        let parts = Array.ofList schedules
        let starts = Array.ofList (0 :: boundaries)
        fun t ->
            checkStep owner t
            let i = (starts |> Array.filter (fun b -> b <= t) |> Array.length) - 1
            parts[i] (t - starts[i])

    /// The schedule times a constant factor.
    let scale (factor: float) (s: Schedule) : Schedule = fun t -> factor * s t
