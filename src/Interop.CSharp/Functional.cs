using TorchSharp;
using static TorchSharp.torch;
using Core = Optimizers;

namespace Optimizers.Interop;

/// <summary>
/// The functional core from C#: an optimizer as a pair of pure functions in the manner of optax,
/// <see cref="Init"/>(parameters) → state and <see cref="Update"/>(gradients, state, parameters)
/// → (updates, new state), with <see cref="ApplyUpdates"/> adding the updates to the parameters.
/// Nothing is changed in place and the autograd graph is kept, so a run of steps is a
/// differentiable expression: give hyperparameters as tensors that require grad (see
/// <see cref="Create"/>) and differentiate a loss after the steps with respect to them
/// (meta-gradients, hypergradients). Parameters, gradients and updates are lists of tensors in
/// the same order. Outside meta-learning, prefer <see cref="Optimizer"/> (in place, faster).
/// </summary>
/// <example><code>
/// using var lr = torch.tensor(0.1).requires_grad_();
/// var sgd = GradientTransformation.Create("sgd", tensors: new Dictionary&lt;string, Tensor&gt; { ["lr"] = lr });
/// var ps = new[] { w0 };                       // leaves
/// using var s0 = sgd.Init(ps);
/// var step = sgd.Step(Grad(Loss(ps), ps, createGraph: true), s0, ps);
/// var meta = torch.autograd.grad(new[] { Loss(step.Parameters) }, new[] { lr })[0];   // d loss / d lr
/// </code></example>
public sealed class GradientTransformation
{
    private readonly Core.Transformation _t;

    private GradientTransformation(Core.Transformation t) => _t = t;

    /// <summary>
    /// Any registered optimizer by name (<see cref="Optimizer.Names"/>), with options as for
    /// <see cref="Optimizer.Create(string, IEnumerable{TorchSharp.Modules.Parameter}, IReadOnlyDictionary{string, object}?)"/>.
    /// </summary>
    /// <param name="name">The registered name, e.g. "adam".</param>
    /// <param name="options">Options by name (numbers, bools, strings, arrays of numbers).</param>
    /// <param name="tensors">Hyperparameters given as 0-d tensors, e.g. <c>["lr"] = lrTensor</c>:
    /// the steps read their current value and, when they require grad, carry gradients to them.</param>
    /// <exception cref="ArgumentException">An unknown name or option, an invalid value, or a
    /// hyperparameter the optimizer takes as a plain number only; ParamName names it.</exception>
    public static GradientTransformation Create(string name, IReadOnlyDictionary<string, object>? options = null, IReadOnlyDictionary<string, Tensor>? tensors = null)
    {
        ArgumentNullException.ThrowIfNull(name);
        var hypers = (tensors ?? new Dictionary<string, Tensor>())
            .Select(kv => KeyValuePair.Create(kv.Key, Core.Hyper.NewLearnable(kv.Value ?? throw new ArgumentException($"tensor hyperparameter {kv.Key} is null", kv.Key))));
        Engine.Start();
        return new(Errors.Guard(() => Core.Registry.createOptimizerWith(name, Fs.Pairs(Fs.Texts(options)), Fs.Hypers(hypers))));
    }

    /// <summary>The transformation's name (also the kind of its states).</summary>
    public string Name => _t.Name;

    /// <summary>The initial state for these parameters (moments at zero, step count 0).</summary>
    public OptimizerState Init(IEnumerable<Tensor> parameters)
    {
        var p = Tree(parameters, nameof(parameters));
        return new OptimizerState(Errors.Guard(() => _t.Init.Invoke(p)), p.Count);
    }

    /// <summary>
    /// The updates for these gradients and the next state; nothing is changed. Add the updates to
    /// the parameters with <see cref="ApplyUpdates"/> (or use <see cref="Step"/>).
    /// </summary>
    /// <exception cref="ArgumentException">Lists of different lengths, or a state of another optimizer or of other parameters.</exception>
    public UpdateResult Update(IEnumerable<Tensor> gradients, OptimizerState state, IEnumerable<Tensor> parameters)
    {
        var (g, s, p) = Inputs(gradients, state, parameters);
        var r = Errors.Guard(() => _t.Update.Invoke(g).Invoke(s).Invoke(p));
        return new UpdateResult(r.Item1.Values, new OptimizerState(r.Item2, p.Count));
    }

    /// <summary>
    /// One step: the new parameters (parameters + updates, new tensors) and the next state. When
    /// nothing requires grad (or under <c>no_grad</c>) an optimizer with a fused kernel computes it
    /// in one pass; otherwise op by op, differentiable.
    /// </summary>
    /// <inheritdoc cref="Update"/>
    public StepResult Step(IEnumerable<Tensor> gradients, OptimizerState state, IEnumerable<Tensor> parameters)
    {
        var (g, s, p) = Inputs(gradients, state, parameters);
        var r = Errors.Guard(() => Core.Transform.step(_t, g, s, p));
        return new StepResult(r.Item1.Values, new OptimizerState(r.Item2, p.Count));
    }

    /// <summary>
    /// One step in place (not differentiable): the parameters' tensors are updated under
    /// <c>no_grad</c> by the fast path where the optimizer has one, and the next state is
    /// returned (it may hold the same tensors as <paramref name="state"/>; use only the returned one).
    /// </summary>
    /// <inheritdoc cref="Update"/>
    public OptimizerState StepInPlace(IEnumerable<Tensor> gradients, OptimizerState state, IEnumerable<Tensor> parameters)
    {
        var (g, s, p) = Inputs(gradients, state, parameters);
        return new OptimizerState(Errors.Guard(() => Core.Transform.stepInPlace(_t, g, s, p)), p.Count);
    }

    /// <summary>parameters + updates, element by element (new tensors; the graph is kept).</summary>
    /// <exception cref="ArgumentException">Lists of different lengths.</exception>
    public static IReadOnlyList<Tensor> ApplyUpdates(IEnumerable<Tensor> parameters, IEnumerable<Tensor> updates)
    {
        var p = Tree(parameters, nameof(parameters));
        var u = Tree(updates, nameof(updates));
        if (u.Count != p.Count)
            throw new ArgumentException($"{u.Count} updates for {p.Count} parameters; give one update per parameter", nameof(updates));
        return Errors.Guard(() => Core.Transform.applyUpdates(p, new Core.Tree(p.Names, u.Values)).Values);
    }

    private (Core.Tree g, Core.State s, Core.Tree p) Inputs(IEnumerable<Tensor> gradients, OptimizerState state, IEnumerable<Tensor> parameters)
    {
        ArgumentNullException.ThrowIfNull(state);
        var p = Tree(parameters, nameof(parameters));
        var g = Tree(gradients, nameof(gradients));
        if (g.Count != p.Count)
            throw new ArgumentException($"{g.Count} gradients for {p.Count} parameters; give one gradient per parameter", nameof(gradients));
        if (state.ParameterCount != p.Count)
            throw new ArgumentException($"the state was made for {state.ParameterCount} parameters, these are {p.Count}; call Init with these parameters", nameof(state));
        if (state.Inner.Kind != _t.Name)
            throw new ArgumentException($"'{_t.Name}' was given the state of '{state.Inner.Kind}'; pass the state returned by this optimizer's Init or Update", nameof(state));
        return (new Core.Tree(p.Names, g.Values), state.Inner, p);
    }

    private static Core.Tree Tree(IEnumerable<Tensor> values, string name)
    {
        ArgumentNullException.ThrowIfNull(values, name);
        var array = values.ToArray();
        if (array.Any(v => v is null)) throw new ArgumentException("the list holds a null tensor", name);
        return Fs.Tree(Fs.IndexNames(array.Length), array);
    }
}

/// <summary>The updates of one <see cref="GradientTransformation.Update"/> and the next state.</summary>
public sealed record UpdateResult(IReadOnlyList<Tensor> Updates, OptimizerState State);

/// <summary>The parameters after one <see cref="GradientTransformation.Step"/> and the next state.</summary>
public sealed record StepResult(IReadOnlyList<Tensor> Parameters, OptimizerState State);

/// <summary>
/// The state of a <see cref="GradientTransformation"/>: its tensors (moments, buffers, learned
/// rates) and step count. Immutable: updates return new states. Its tensors follow TorchSharp's
/// DisposeScopes like any tensor; <see cref="Dispose"/> frees them at once.
/// </summary>
public sealed class OptimizerState : IDisposable
{
    internal OptimizerState(Core.State state, int parameterCount)
    {
        Inner = state;
        ParameterCount = parameterCount;
    }

    internal Core.State Inner { get; }

    /// <summary>The number of parameter tensors it was made for.</summary>
    public int ParameterCount { get; }

    /// <summary>The name of the optimizer that made it.</summary>
    public string Kind => Inner.Kind;

    /// <summary>The number of updates made so far.</summary>
    public int StepCount => Inner.Count;

    /// <summary>Every tensor of the state, in a fixed order.</summary>
    public IReadOnlyList<Tensor> Tensors => Fs.Tensors(Inner);

    /// <summary>The same state cut from the autograd graph (the boundary of truncated backpropagation).</summary>
    public OptimizerState Detach() => new(Optimizers.StateModule.detach(Inner), ParameterCount);

    /// <summary>
    /// Values kept in the state under <paramref name="name"/> (e.g. "lr" of a hypergradient
    /// optimizer): "lr" for one value, "lr[i]" for one per parameter tensor.
    /// </summary>
    public IReadOnlyDictionary<string, Tensor> Watch(string name) =>
        Optimizers.StateModule.watch(name, Inner).ToDictionary(kv => kv.Item1, kv => kv.Item2);

    /// <summary>Free the state's tensors now.</summary>
    public void Dispose() => Optimizers.StateModule.dispose(Inner);
}
