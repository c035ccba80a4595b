using TorchSharp;
using static TorchSharp.torch;
using Parameter = TorchSharp.Modules.Parameter;
using Core = Optimizers;

namespace Optimizers.Interop;

/// <summary>
/// An optimizer of the Optimizers library used the way TorchSharp's <c>torch.optim</c> optimizers
/// are: construct it over a module's parameters, then <c>zero_grad()</c>, <c>backward()</c>,
/// <c>step()</c>. Switching from TorchSharp costs one line: <c>torch.optim.Adam(model.parameters(), lr: 1e-3)</c>
/// becomes <c>Optimizer.Adam(model.parameters(), lr: 1e-3)</c>.
/// <para>
/// Every optimizer of the catalog is here: by a named factory (<see cref="Adam"/>, <see cref="AdamHD"/>,
/// <see cref="Lookahead"/>, <see cref="HyperAdam"/>, ...) or by its registered name with
/// <see cref="Create(string, IEnumerable{Parameter}, IReadOnlyDictionary{string, object}?)"/>
/// (<see cref="Names"/> lists them, <see cref="Describe"/> gives their options and defaults).
/// Parameter groups (<see cref="ParamGroup"/>) may differ in any option; LR schedulers
/// (<see cref="LRScheduler"/>) set the groups' learning rates; <see cref="state_dict"/> and
/// <see cref="save_state_dict"/> save the state with the groups' options.
/// </para>
/// <para>
/// Each step updates the parameters in place, under <c>no_grad</c> and a DisposeScope: by default
/// through the fast path (<see cref="UseFastPath"/>), the optimizer's fused in-place kernel where
/// it has one, with the library's pure update as the fallback. For differentiating through
/// optimizer steps (meta-gradients) use <see cref="GradientTransformation"/> instead.
/// </para>
/// </summary>
public sealed partial class Optimizer : IDisposable
{
    private readonly string _name;
    private readonly List<KeyValuePair<string, string>> _defaults;
    private readonly List<ParamGroup> _groups = new();
    private bool _disposed;

    private Optimizer(string name, IReadOnlyDictionary<string, object>? options, IEnumerable<ParamGroup> groups)
    {
        ArgumentNullException.ThrowIfNull(name);
        ArgumentNullException.ThrowIfNull(groups, "parameters");
        _name = Core.Registry.findOptimizer(name).Name;
        _defaults = Fs.Texts(options);
        var list = groups.ToList();
        RequireModel(_name, _defaults, list);
        groups = list;
        try
        {
            foreach (var g in groups) add_param_group(g);
            if (_groups.Count == 0)
                throw new ArgumentException("the optimizer was given no parameters; pass module.parameters() or parameter groups", "parameters");
        }
        catch
        {
            Dispose();
            throw;
        }
    }

    /// A learned optimizer given neither a file nor init_seed needs its shipped model: say so in
    /// the terms of Create's options (the named factories check the same in their own terms).
    private static void RequireModel(string name, List<KeyValuePair<string, string>> defaults, List<ParamGroup> groups)
    {
        if (!Core.Registry.learnedKinds.Any(k => k.Kind == name)) return;
        bool given(IEnumerable<KeyValuePair<string, string>> o) => o.Any(kv => kv.Key is "file" or "init_seed");
        if (given(defaults) || groups.Count == 0 || groups.All(g => given(g.OwnOptions))) return;
        if (Core.Learned.LearnedOptimizer.shipped(name) is not null) return;
        throw new ArgumentException(
            $"no trained {name} was found: models/{name}.bin is not next to the program ({AppContext.BaseDirectory}) nor in a clone of the repository above the current directory; " +
            $"give the options [\"file\"] = \"PATH\" (a file made by optimizers meta-train --kind {name} --out PATH) or [\"init_seed\"] = N for untrained meta-parameters", "file");
    }

    /// <summary>The optimizer's registered name (e.g. "adam").</summary>
    public string Name => _name;

    /// <summary>The number of steps taken so far (by the first group; every group steps together).</summary>
    public int StepCount => _groups[0].StepCount;

    /// <summary>The parameter groups, in the order they were added.</summary>
    public IReadOnlyList<ParamGroup> ParamGroups => _groups;

    /// <summary>All parameters of all groups.</summary>
    public IEnumerable<Parameter> parameters() => _groups.SelectMany(g => g.Parameters);

    /// <summary>
    /// True (the default): <see cref="step"/> takes the fast path, the optimizer's in-place fused
    /// kernel where it has one (sgd, momentum, nesterov, adam, adamw, amsgrad, rmsprop, adagrad, adam-hd) and otherwise the pure update added
    /// into the parameters. False: always the pure update (for comparisons). Both give the same
    /// numbers and the same state, so this can change between steps.
    /// </summary>
    public bool UseFastPath { get; set; } = true;

    /// <summary>
    /// Any registered optimizer by name, with options by their registered names (PyTorch's where
    /// PyTorch has them), e.g. <c>Create("adam", ps, new Dictionary&lt;string, object&gt; { ["lr"] = 0.01, ["beta1"] = 0.8 })</c>.
    /// Options left out take their defaults (<see cref="Describe"/> lists them).
    /// </summary>
    /// <param name="name">A name of <see cref="Names"/>, e.g. "adam", "adam-hd", "lookahead", "hyperadam".</param>
    /// <param name="parameters">The parameters to optimize, e.g. <c>model.parameters()</c>.</param>
    /// <param name="options">Options by name: numbers, bools, strings or arrays of numbers.</param>
    /// <exception cref="ArgumentException">An unknown name or option, or an invalid value; the
    /// message lists what is valid and <see cref="ArgumentException.ParamName"/> names the option.</exception>
    public static Optimizer Create(string name, IEnumerable<Parameter> parameters, IReadOnlyDictionary<string, object>? options = null)
    {
        ArgumentNullException.ThrowIfNull(parameters);
        Engine.Start();
        return Errors.Guard(() => new Optimizer(name, options, new[] { new ParamGroup(parameters) }));
    }

    /// <summary>
    /// Any registered optimizer over parameter groups: <paramref name="options"/> are the defaults
    /// of every group, and each group's own options override them.
    /// </summary>
    /// <inheritdoc cref="Create(string, IEnumerable{Parameter}, IReadOnlyDictionary{string, object}?)"/>
    public static Optimizer Create(string name, IEnumerable<ParamGroup> groups, IReadOnlyDictionary<string, object>? options = null)
    {
        ArgumentNullException.ThrowIfNull(groups);
        Engine.Start();
        return Errors.Guard(() => new Optimizer(name, options, groups));
    }

    /// <summary>
    /// Add a parameter group (torch.optim's <c>add_param_group</c>): its parameters are optimized
    /// with the optimizer's options overridden by the group's own, starting from a fresh state.
    /// </summary>
    /// <exception cref="ArgumentException">A parameter that is already in a group, a group of
    /// another optimizer, or an invalid option of the group.</exception>
    public void add_param_group(ParamGroup param_group)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        ArgumentNullException.ThrowIfNull(param_group);
        if (_groups.Contains(param_group))
            throw new ArgumentException("this parameter group is already in the optimizer", nameof(param_group));
        var known = new HashSet<Parameter>(_groups.SelectMany(g => g.Parameters), ReferenceEqualityComparer.Instance);
        var seen = new HashSet<Parameter>(ReferenceEqualityComparer.Instance);
        foreach (var p in param_group.Parameters)
        {
            if (known.Contains(p))
                throw new ArgumentException("some parameters appear in more than one parameter group; give each parameter to one group", nameof(param_group));
            if (!seen.Add(p))
                throw new ArgumentException("a parameter appears twice in the group; give each parameter once", nameof(param_group));
        }
        Errors.Guard(() => param_group.Attach(this, _name, Fs.Merge(_defaults, param_group.OwnOptions)));
        _groups.Add(param_group);
    }

    /// <summary>Clear the parameters' gradients (sets them to null, as torch.optim does by default).</summary>
    public void zero_grad()
    {
        foreach (var p in parameters())
        {
            var g = p.grad;
            if (g is not null) { p.grad = null; g.Dispose(); }
        }
    }

    /// <summary>
    /// One optimizer step from the gradients that <c>backward()</c> left in the parameters.
    /// With a <paramref name="closure"/> (which should zero the gradients, compute the loss, call
    /// <c>backward()</c> and return the loss), it is called first and its loss returned, as in torch.optim.
    /// </summary>
    /// <returns>The closure's loss, or null without a closure.</returns>
    /// <exception cref="InvalidOperationException">A parameter has no gradient.</exception>
    /// <exception cref="ArithmeticException">The closure's loss is NaN or infinite (the run diverged).</exception>
    public Tensor? step(Func<Tensor>? closure = null)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        Tensor? loss = null;
        if (closure is not null)
        {
            using (torch.enable_grad()) loss = closure();
            double l = loss.ToDouble();
            if (double.IsNaN(l) || double.IsInfinity(l))
                throw new ArithmeticException($"the loss is {l} before step {StepCount + 1}: the run diverged; lower the learning rate or check the data");
        }
        Errors.Guard(StepGroups);
        Core.Memory.afterStep();
        Log();
        return loss;
    }

    private void StepGroups()
    {
        using var scope = torch.NewDisposeScope();
        using var noGrad = torch.no_grad();
        for (int gi = 0; gi < _groups.Count; gi++)
        {
            var group = _groups[gi];
            var ps = group.Parameters;
            var grads = new Tensor[ps.Count];
            for (int i = 0; i < ps.Count; i++)
                grads[i] = ps[i].grad ?? throw new InvalidOperationException(
                    $"parameter {i} of group {gi} has no gradient; call backward() before step(), or leave parameters that get no gradient out of the optimizer");
            var parameters = Fs.Tree(group.Names, ps.ToArray<Tensor>());
            Core.State next;
            if (UseFastPath)
                next = Core.Transform.stepInPlace(group.Transformation, Fs.Tree(group.Names, grads), group.State, parameters);
            else
            {
                var result = group.Transformation.Update.Invoke(Fs.Tree(group.Names, grads)).Invoke(group.State).Invoke(parameters);
                for (int i = 0; i < ps.Count; i++) ps[i].add_(result.Item1.Values[i]);
                next = result.Item2;
            }
            // The fast path returns the same (updated) tensors; the pure path new ones: free the old.
            var newState = Core.StateModule.detachFromScopes(next);
            Core.Run.disposeReplaced(Core.StateModule.tensors(group.State), Core.StateModule.tensors(newState));
            group.State = newState;
        }
    }

    /// <summary>
    /// Values kept in the optimizer's state under <paramref name="name"/>, by group and parameter:
    /// e.g. "lr" gives the learning rates that hypergradient optimizers learn. Keys are
    /// "group/name" ("0/lr", or "0/lr[3]" for one value per parameter tensor). Empty when the
    /// state keeps no such value.
    /// </summary>
    public IReadOnlyDictionary<string, double> Watch(string name)
    {
        ArgumentNullException.ThrowIfNull(name);
        var result = new Dictionary<string, double>();
        for (int gi = 0; gi < _groups.Count; gi++)
            foreach (var item in Core.StateModule.watch(name, _groups[gi].State))
                result[$"{gi}/{item.Item1}"] = item.Item2.ToDouble();
        return result;
    }

    /// <summary>
    /// Put the weights a model is measured at into the parameters until the returned handle is
    /// disposed, then put the parameters back: for <c>Lookahead</c> and <c>Ranger</c> the slow
    /// weights (their authors evaluate there; between two synchronisations the parameters are the
    /// fast weights, mid-excursion); for every other optimizer the parameters already are those
    /// weights and nothing changes. Evaluate inside it, train outside:
    /// <code>using (opt.EvaluationWeights()) { testLoss = Evaluate(model); }</code>
    /// </summary>
    public IDisposable EvaluationWeights()
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        var saved = new List<(Parameter param, Tensor backup)>();
        using (torch.no_grad())
            foreach (var group in _groups)
            {
                var ps = group.Parameters;
                var current = Fs.Tree(group.Names, ps.ToArray<Tensor>());
                var at = Core.Transform.evaluationParams(group.Transformation, group.State, current);
                if (ReferenceEquals(at, current)) continue;
                for (int i = 0; i < ps.Count; i++)
                {
                    var backup = ps[i].detach().clone().DetachFromDisposeScope();
                    saved.Add((ps[i], backup));
                    ps[i].copy_(at.Values[i]);
                }
            }
        return new Restore(saved);
    }

    /// Copies the saved parameters back once.
    private sealed class Restore(List<(Parameter param, Tensor backup)> saved) : IDisposable
    {
        public void Dispose()
        {
            using (torch.no_grad())
                foreach (var (param, backup) in saved) { param.copy_(backup); backup.Dispose(); }
            saved.Clear();
        }
    }

    /// <summary>Free the state's native memory.</summary>
    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        foreach (var g in _groups) Core.StateModule.dispose(g.State);
    }

    // ---- the catalog --------------------------------------------------------------------------

    /// <summary>The names of every registered optimizer.</summary>
    public static IReadOnlyList<string> Names => Core.Registry.optimizerNames.ToArray();

    /// <summary>A registered optimizer's summary, source and options with their defaults.</summary>
    /// <exception cref="ArgumentException">An unknown name; the message lists the valid ones.</exception>
    public static OptimizerInfo Describe(string name)
    {
        ArgumentNullException.ThrowIfNull(name);
        var e = Errors.Guard(() => Core.Registry.findOptimizer(name));
        return new OptimizerInfo(e.Name, e.Summary, e.Source,
            e.Options.Select(o => new OptionInfo(o.Name, o.Type.ToString(), o.Default, o.Doc)).ToArray());
    }
}

/// <summary>A registered optimizer: its name, what it does, where it comes from, and its options.</summary>
public sealed record OptimizerInfo(string Name, string Summary, string Source, IReadOnlyList<OptionInfo> Options);

/// <summary>One option of a registered optimizer: name, type (Number, Integer, Flag, Numbers,
/// Word, Text), default as text (empty: none) and a one-line description. The name "*" means the
/// optimizer hands options it does not declare on to the optimizer it wraps.</summary>
public sealed record OptionInfo(string Name, string Type, string Default, string Doc);
