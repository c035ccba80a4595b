using Microsoft.FSharp.Core;
using Core = Optimizers;

namespace Optimizers.Interop;

/// <summary>
/// A learning-rate scheduler used as torch.optim's: made over an optimizer, and
/// <see cref="step"/> called once after each <c>optimizer.step()</c>. It sets the learning rate of
/// every parameter group to the value of one of the library's schedules (the pure step-to-value
/// functions of the core's <c>Schedule</c> module, checked against PyTorch) at the number of
/// <see cref="step"/> calls so far; the decaying ones start from each group's
/// <see cref="ParamGroup.InitialLearningRate"/>. Values are those PyTorch's scheduler of the same
/// name gives after the same number of <c>scheduler.step()</c> calls.
/// </summary>
/// <example><code>
/// var opt = Optimizer.SGD(model.parameters(), lr: 0.1, momentum: 0.9);
/// var sched = LRScheduler.CosineAnnealingLR(opt, T_max: 1000);
/// for (int i = 0; i &lt; 1000; i++) { opt.zero_grad(); loss(model).backward(); opt.step(); sched.step(); }
/// </code></example>
public sealed class LRScheduler
{
    private readonly Optimizer _optimizer;
    private readonly FSharpFunc<int, double>[] _schedules;

    /// `renames` maps the core schedule's argument names to this class's where they differ, so
    /// that an ArgumentException's ParamName is the C# argument's.
    private LRScheduler(Optimizer optimizer, Func<ParamGroup, FSharpFunc<int, double>> make, params (string core, string csharp)[] renames)
    {
        ArgumentNullException.ThrowIfNull(optimizer);
        foreach (var g in optimizer.ParamGroups)
            if (!g.HasLearningRate)
                throw new ArgumentException(
                    $"'{optimizer.Name}' has no settable learning rate (it learns its rate or has none), so a scheduler cannot drive it", nameof(optimizer));
        _optimizer = optimizer;
        _schedules = Errors.Guard(() => optimizer.ParamGroups.Select(make).ToArray(),
            p => renames.Where(r => r.core == p).Select(r => r.csharp).FirstOrDefault() ?? p);
        Errors.Guard(Apply);
    }

    /// <summary>
    /// The number of <see cref="step"/> calls so far (PyTorch's <c>last_epoch</c>). Setting it
    /// moves the schedule there and sets the rates: to resume a run after
    /// <see cref="Optimizer.load_state_dict(OptimizerStateDict)"/>, make the scheduler as before
    /// and set LastEpoch to the number of steps taken.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">A negative value.</exception>
    public int LastEpoch
    {
        get => _lastEpoch;
        set
        {
            if (value < 0) throw new ArgumentOutOfRangeException(nameof(LastEpoch), $"LastEpoch = {value} is invalid; it must be >= 0");
            _lastEpoch = value;
            Apply();
        }
    }
    private int _lastEpoch;

    /// <summary>Advance by one step and set every group's learning rate to the schedule's value there.</summary>
    public void step()
    {
        LastEpoch = _lastEpoch + 1;
    }

    /// <summary>The learning rate of every group as last set (torch's <c>get_last_lr()</c>).</summary>
    public IReadOnlyList<double> get_last_lr() => _optimizer.ParamGroups.Select(g => g.LearningRate).ToArray();

    private void Apply()
    {
        for (int i = 0; i < _schedules.Length; i++)
            _optimizer.ParamGroups[i].LearningRate = _schedules[i].Invoke(_lastEpoch);
    }

    /// <summary>Step decay (torch StepLR): lr * gamma^floor(t / step_size).</summary>
    /// <param name="optimizer">The optimizer whose groups' rates it sets.</param>
    /// <param name="step_size">Steps between decays, at least 1.</param>
    /// <param name="gamma">Decay factor (default 0.1).</param>
    public static LRScheduler StepLR(Optimizer optimizer, int step_size, double gamma = 0.1) =>
        new(optimizer, g => Core.ScheduleModule.step(g.InitialLearningRate, step_size, gamma));

    /// <summary>Decay at milestones (torch MultiStepLR): lr * gamma^(number of milestones &lt;= t).</summary>
    /// <param name="optimizer">The optimizer whose groups' rates it sets.</param>
    /// <param name="milestones">Strictly increasing steps, at least 1.</param>
    /// <param name="gamma">Decay factor (default 0.1).</param>
    public static LRScheduler MultiStepLR(Optimizer optimizer, IEnumerable<int> milestones, double gamma = 0.1)
    {
        ArgumentNullException.ThrowIfNull(milestones);
        var ms = Microsoft.FSharp.Collections.ListModule.OfSeq(milestones.ToArray());
        return new(optimizer, g => Core.ScheduleModule.multistep(g.InitialLearningRate, ms, gamma));
    }

    /// <summary>Exponential decay (torch ExponentialLR): lr * gamma^t.</summary>
    /// <param name="optimizer">The optimizer whose groups' rates it sets.</param>
    /// <param name="gamma">Decay factor per step, >= 0.</param>
    public static LRScheduler ExponentialLR(Optimizer optimizer, double gamma) =>
        new(optimizer, g => Core.ScheduleModule.exponential(g.InitialLearningRate, gamma));

    /// <summary>Polynomial decay to 0 (torch PolynomialLR): lr * (1 - min(t, total_iters) / total_iters)^power.</summary>
    /// <param name="optimizer">The optimizer whose groups' rates it sets.</param>
    /// <param name="total_iters">Steps of the decay (default 5, as PyTorch).</param>
    /// <param name="power">Power of the decay (default 1).</param>
    public static LRScheduler PolynomialLR(Optimizer optimizer, int total_iters = 5, double power = 1.0) =>
        new(optimizer, g => Core.ScheduleModule.polynomial(g.InitialLearningRate, 0.0, power, total_iters));

    /// <summary>
    /// Linear change of the rate from start_factor * lr to end_factor * lr over total_iters steps,
    /// then constant (torch LinearLR; with end_factor = 1 it is a linear warm-up, Goyal et al. 2017).
    /// </summary>
    /// <param name="optimizer">The optimizer whose groups' rates it sets.</param>
    /// <param name="start_factor">Factor of lr at step 0 (default 1/3, as PyTorch).</param>
    /// <param name="end_factor">Factor of lr from step total_iters on (default 1).</param>
    /// <param name="total_iters">Steps of the change (default 5).</param>
    public static LRScheduler LinearLR(Optimizer optimizer, double start_factor = 1.0 / 3, double end_factor = 1.0, int total_iters = 5) =>
        new(optimizer, g => Core.ScheduleModule.linear(g.InitialLearningRate * start_factor, g.InitialLearningRate * end_factor, total_iters),
            ("init", nameof(start_factor)), ("end", nameof(end_factor)), ("steps", nameof(total_iters)));

    /// <summary>Linear warm-up from start_factor * lr to lr over warmup_steps, then lr (the core's warm-up schedule).</summary>
    /// <param name="optimizer">The optimizer whose groups' rates it sets.</param>
    /// <param name="warmup_steps">Steps of the warm-up, at least 1.</param>
    /// <param name="start_factor">Factor of lr at step 0, in [0, 1] (default 0).</param>
    public static LRScheduler Warmup(Optimizer optimizer, int warmup_steps, double start_factor = 0.0) =>
        new(optimizer, g => Core.ScheduleModule.warmup(g.InitialLearningRate, start_factor, warmup_steps));

    /// <summary>
    /// Cosine annealing (Loshchilov and Hutter 2017; torch CosineAnnealingLR):
    /// eta_min + (lr - eta_min) (1 + cos(pi t / T_max)) / 2.
    /// </summary>
    /// <param name="optimizer">The optimizer whose groups' rates it sets.</param>
    /// <param name="T_max">Steps of the half cosine.</param>
    /// <param name="eta_min">Minimum rate (default 0).</param>
    public static LRScheduler CosineAnnealingLR(Optimizer optimizer, int T_max, double eta_min = 0.0) =>
        new(optimizer, g => Core.ScheduleModule.cosine(g.InitialLearningRate, T_max, eta_min), ("t_max", nameof(T_max)));

    /// <summary>
    /// SGDR, cosine annealing with warm restarts (Loshchilov and Hutter, ICLR 2017; torch
    /// CosineAnnealingWarmRestarts): periods of T_0 * T_mult^i steps, each a cosine from lr to eta_min.
    /// </summary>
    /// <param name="optimizer">The optimizer whose groups' rates it sets.</param>
    /// <param name="T_0">Steps of the first period, at least 1.</param>
    /// <param name="T_mult">Growth factor of the periods, a whole number >= 1 (default 1).</param>
    /// <param name="eta_min">Minimum rate (default 0).</param>
    public static LRScheduler CosineAnnealingWarmRestarts(Optimizer optimizer, int T_0, int T_mult = 1, double eta_min = 0.0) =>
        new(optimizer, g => Core.ScheduleModule.sgdr(g.InitialLearningRate, T_0, T_mult, eta_min), ("t_0", nameof(T_0)), ("t_mult", nameof(T_mult)));

    /// <summary>
    /// Cyclical learning rate (Smith 2017; torch CyclicLR): up from base_lr to max_lr over
    /// step_size_up steps, back down over step_size_down, repeated; the amplitude is constant
    /// ("triangular"), halves every cycle ("triangular2") or shrinks by gamma^t ("exp_range").
    /// The same bounds for every group.
    /// </summary>
    /// <param name="optimizer">The optimizer whose groups' rates it sets.</param>
    /// <param name="base_lr">Lower bound.</param>
    /// <param name="max_lr">Upper bound.</param>
    /// <param name="step_size_up">Steps from base_lr up to max_lr (default 2000).</param>
    /// <param name="step_size_down">Steps back down (default: step_size_up).</param>
    /// <param name="mode">"triangular" (default), "triangular2" or "exp_range".</param>
    /// <param name="gamma">Amplitude factor per step of "exp_range", in (0, 1] (default 1).</param>
    public static LRScheduler CyclicLR(Optimizer optimizer, double base_lr, double max_lr, int step_size_up = 2000,
        int? step_size_down = null, string mode = "triangular", double gamma = 1.0)
    {
        var m = mode switch
        {
            "triangular" => Core.CyclicMode.Triangular,
            "triangular2" => Core.CyclicMode.Triangular2,
            "exp_range" => Core.CyclicMode.NewExpRange(gamma),
            _ => throw new ArgumentException($"mode '{mode}' is invalid; valid: triangular, triangular2, exp_range", nameof(mode)),
        };
        return new(optimizer, _ => Core.ScheduleModule.cyclic(m, base_lr, max_lr, step_size_up, step_size_down ?? step_size_up));
    }

    /// <summary>
    /// The 1cycle policy (Smith and Topin 2017; torch OneCycleLR): from max_lr / div_factor up to
    /// max_lr over pct_start of the cycle, then down to max_lr / div_factor / final_div_factor.
    /// The same bounds for every group.
    /// </summary>
    /// <param name="optimizer">The optimizer whose groups' rates it sets.</param>
    /// <param name="max_lr">Peak rate.</param>
    /// <param name="total_steps">Length of the cycle, at least 2.</param>
    /// <param name="pct_start">Fraction of the cycle spent rising (default 0.3).</param>
    /// <param name="anneal_strategy">"cos" (default) or "linear".</param>
    /// <param name="div_factor">Initial rate = max_lr / div_factor (default 25).</param>
    /// <param name="final_div_factor">Final rate = initial rate / final_div_factor (default 1e4).</param>
    /// <param name="three_phase">Come back down to the initial rate before the final annealing (default false).</param>
    public static LRScheduler OneCycleLR(Optimizer optimizer, double max_lr, int total_steps, double pct_start = 0.3,
        string anneal_strategy = "cos", double div_factor = 25.0, double final_div_factor = 1e4, bool three_phase = false)
    {
        bool linear = anneal_strategy switch
        {
            "cos" => false,
            "linear" => true,
            _ => throw new ArgumentException($"anneal_strategy '{anneal_strategy}' is invalid; valid: cos, linear", nameof(anneal_strategy)),
        };
        return new(optimizer, _ => Core.ScheduleModule.oneCycle(max_lr, total_steps, pct_start, div_factor, final_div_factor, three_phase, linear));
    }

    /// <summary>The rate lr * lr_lambda(t) (torch LambdaLR), for schedules of your own.</summary>
    /// <param name="optimizer">The optimizer whose groups' rates it sets.</param>
    /// <param name="lr_lambda">The factor of the initial rate at step t.</param>
    public static LRScheduler LambdaLR(Optimizer optimizer, Func<int, double> lr_lambda)
    {
        ArgumentNullException.ThrowIfNull(lr_lambda);
        return new(optimizer, g =>
        {
            double init = g.InitialLearningRate;
            return FSharpFunc<int, double>.FromConverter(t => init * lr_lambda(t));
        });
    }

    /// <summary>
    /// Any registered schedule by name (<see cref="Names"/>: constant, step, multistep,
    /// exponential, polynomial, cosine, sgdr, triangular, triangular2, exp-range, one-cycle,
    /// warmup, warmup-cosine), with its options by name as on the command line. The group's
    /// initial rate is the schedule's base or peak value.
    /// </summary>
    /// <param name="optimizer">The optimizer whose groups' rates it sets.</param>
    /// <param name="name">The schedule's registered name.</param>
    /// <param name="steps">The length of the run, the default of lengths such as cosine's t_max.</param>
    /// <param name="options">Options by name, e.g. <c>["warmup_steps"] = 100</c>.</param>
    /// <exception cref="ArgumentException">An unknown name or option, a missing required option, or an invalid value.</exception>
    public static LRScheduler Create(Optimizer optimizer, string name, int? steps = null, IReadOnlyDictionary<string, object>? options = null)
    {
        ArgumentNullException.ThrowIfNull(name);
        var pairs = Fs.Pairs(Fs.Texts(options));
        var length = steps is int n ? FSharpOption<int>.Some(n) : FSharpOption<int>.None;
        return new(optimizer, g => Core.Registry.createSchedule(name, g.InitialLearningRate, length, pairs));
    }

    /// <summary>The names of the registered schedules (for <see cref="Create"/>).</summary>
    public static IReadOnlyList<string> Names => Core.Registry.scheduleNames.ToArray();
}
