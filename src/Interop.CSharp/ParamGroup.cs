using System.Runtime.CompilerServices;
using Microsoft.FSharp.Core;
using TorchSharp;
using static TorchSharp.torch;
using Parameter = TorchSharp.Modules.Parameter;
using Core = Optimizers;

namespace Optimizers.Interop;

/// <summary>
/// A group of parameters with its own options, as torch.optim's parameter groups: e.g. a higher
/// learning rate for a new head than for a pre-trained body. Options given here override the
/// optimizer's for this group only. Each group is optimized by its own instance of the optimizer
/// (its own state), so groups may differ in any option, not only the learning rate.
/// </summary>
/// <example><code>
/// var opt = Optimizer.Create("adam", new[] {
///     new ParamGroup(body.parameters()),
///     new ParamGroup(head.parameters(), new Dictionary&lt;string, object&gt; { ["lr"] = 1e-2, ["weight_decay"] = 1e-4 }) },
///     new Dictionary&lt;string, object&gt; { ["lr"] = 1e-3 });
/// </code></example>
public sealed class ParamGroup
{
    private readonly List<KeyValuePair<string, string>> _own;
    private List<KeyValuePair<string, string>> _options = new();
    private readonly StrongBox<double> _lr = new(double.NaN);
    private bool _hasLr;

    /// <summary>A group of <paramref name="parameters"/> with options that override the optimizer's.</summary>
    /// <param name="parameters">The parameters of the group, e.g. <c>layer.parameters()</c>.</param>
    /// <param name="options">Options of this group by their registered names (<c>Optimizer.Describe(name)</c>
    /// lists them), e.g. <c>["lr"] = 0.01</c>. Values: numbers, bools, strings or arrays of numbers.</param>
    /// <exception cref="ArgumentException">No parameters, a null parameter, or an option value of an unusable type.</exception>
    public ParamGroup(IEnumerable<Parameter> parameters, IReadOnlyDictionary<string, object>? options = null)
    {
        ArgumentNullException.ThrowIfNull(parameters);
        Parameters = parameters.ToArray();
        if (Parameters.Count == 0)
            throw new ArgumentException("the parameter group has no parameters; pass e.g. module.parameters()", nameof(parameters));
        if (Parameters.Any(p => p is null))
            throw new ArgumentException("the parameter group holds a null parameter", nameof(parameters));
        _own = Fs.Texts(options);
    }

    /// <summary>The parameters of the group.</summary>
    public IReadOnlyList<Parameter> Parameters { get; }

    /// <summary>The options in force for this group: the optimizer's, then the group's own on top
    /// (before the group joins an optimizer: the group's own). Options not listed take the
    /// registered defaults.</summary>
    public IReadOnlyDictionary<string, string> Options => (Optimizer is null ? _own : _options).ToDictionary(kv => kv.Key, kv => kv.Value);

    /// <summary>True when the group's learning rate can be read and set (<see cref="LearningRate"/>):
    /// optimizers with an <c>lr</c> option that is a plain step size. False for those that learn
    /// their rate (the hypergradient ones) or have none (MNG, most learned ones).</summary>
    public bool HasLearningRate => _hasLr;

    /// <summary>
    /// The learning rate used by the next step; setting it takes effect at the next step, on the
    /// fast and the pure path alike (what LR schedulers do). Same as TorchSharp's
    /// <c>ParamGroup.LearningRate</c>.
    /// </summary>
    /// <exception cref="InvalidOperationException">The group has no settable learning rate (see <see cref="HasLearningRate"/>).</exception>
    /// <exception cref="ArgumentOutOfRangeException">A negative, NaN or infinite value.</exception>
    public double LearningRate
    {
        get { RequireLr(); return _lr.Value; }
        set
        {
            RequireLr();
            if (!(value >= 0) || double.IsInfinity(value))
                throw new ArgumentOutOfRangeException(nameof(LearningRate), $"the learning rate {value} is invalid; it must be a finite number >= 0");
            _lr.Value = value;
        }
    }

    /// <summary>The learning rate the group was built with (the base value of LR schedulers).</summary>
    public double InitialLearningRate { get { RequireLr(); return _initialLr; } }
    private double _initialLr = double.NaN;

    /// <summary>The number of updates the group's optimizer has made.</summary>
    public int StepCount => State?.Count ?? 0;

    // ---- set when the group joins an optimizer ----------------------------------------------

    internal Optimizer? Optimizer { get; private set; }
    internal Core.Transformation Transformation { get; private set; } = null!;
    internal Core.State State { get; set; } = null!;
    internal string[] Names { get; private set; } = Array.Empty<string>();
    internal List<KeyValuePair<string, string>> OwnOptions => _own;

    /// <summary>Build the group's transformation from the optimizer's name and default options,
    /// and its initial state. `state` replaces the fresh state (loading).</summary>
    internal void Attach(Optimizer optimizer, string name, IEnumerable<KeyValuePair<string, string>> options)
    {
        if (Optimizer is not null && !ReferenceEquals(Optimizer, optimizer))
            throw new ArgumentException("this parameter group already belongs to another optimizer; make a new ParamGroup", "param_group");
        var merged = options.ToList();
        var (t, hasLr, lr) = Build(name, merged, _lr);
        if (State is not null) Core.StateModule.dispose(State);
        Optimizer = optimizer;
        Transformation = t;
        _options = merged;
        _hasLr = hasLr;
        _initialLr = lr;
        Names = Fs.IndexNames(Parameters.Count);
        using var noGrad = torch.no_grad();
        using var scope = torch.NewDisposeScope();
        State = Core.StateModule.detachFromScopes(t.Init.Invoke(Fs.Tree(Names, Parameters.ToArray<Tensor>())));
    }

    internal void ReplaceState(Core.State state)
    {
        Core.StateModule.dispose(State);
        State = state;
    }

    /// <summary>
    /// The transformation for `name` with `options`. Where the optimizer takes its learning rate as
    /// a step size (it reads "lr" as a hyperparameter), the rate is read from `box` at each step,
    /// so schedulers can change it without rebuilding anything; otherwise (hypergradient and
    /// learned optimizers read it as their initial value only) it is built from the text.
    /// </summary>
    internal static (Core.Transformation transformation, bool hasLr, double lr) Build(string name, List<KeyValuePair<string, string>> options, StrongBox<double> box)
    {
        double lr = InitialLr(name, options);
        if (!double.IsNaN(lr))
        {
            box.Value = lr;
            var t = Core.Registry.tryCreateOptimizerWith(name, Fs.Pairs(options), Fs.Hypers(new[] { KeyValuePair.Create("lr", Fs.Boxed(box)) }));
            if (FSharpOption<Core.Transformation>.get_IsSome(t))
                return (t.Value, true, lr);
            // None: the optimizer reads lr once, as its initial value; build it the plain way.
        }
        return (Core.Registry.createOptimizer(name, Fs.Pairs(options)), false, double.NaN);
    }

    /// The learning rate these options give (the optimizer's default when not given), NaN when
    /// the optimizer has no "lr" option.
    private static double InitialLr(string name, List<KeyValuePair<string, string>> options)
    {
        try { return Core.Registry.learningRateOf(name, Fs.Pairs(options)); }
        catch (ArgumentException e) when (e.ParamName == "optimizer") { return double.NaN; }
    }

    private void RequireLr()
    {
        if (!_hasLr)
            throw new InvalidOperationException(Optimizer is null
                ? "the group has not joined an optimizer yet; its learning rate is known once it has"
                : $"'{Transformation.Name}' has no settable learning rate (it learns its rate or has none); see ParamGroup.HasLearningRate");
    }
}
