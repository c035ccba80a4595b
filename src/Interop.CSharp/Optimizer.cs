using System.Globalization;
using Microsoft.FSharp.Collections;
using TorchSharp;
using static TorchSharp.torch;
using Parameter = TorchSharp.Modules.Parameter;
using Core = Optimizers;

namespace Optimizers.Interop;

/// <summary>
/// An optimizer of the Optimizers library used the way TorchSharp's <c>torch.optim</c> optimizers
/// are: construct it over a module's parameters, then <c>ZeroGrad()</c>, <c>backward()</c>,
/// <c>Step()</c>. Each step updates the parameters in place, under <c>no_grad</c> and a
/// DisposeScope: by default through the fast path (<see cref="UseFastPath"/>), the optimizer's
/// fused in-place kernel, with the library's pure update as the fallback.
/// </summary>
public sealed class Optimizer : IDisposable
{
    private readonly Core.Transformation _transformation;
    private readonly Parameter[] _parameters;
    private readonly string[] _names;
    private Core.State _state;
    private bool _disposed;

    private Optimizer(Core.Transformation transformation, IEnumerable<Parameter> parameters)
    {
        _parameters = parameters?.ToArray() ?? throw new ArgumentNullException(nameof(parameters));
        if (_parameters.Length == 0)
            throw new ArgumentException("the optimizer was given no parameters; pass module.parameters()", nameof(parameters));
        _transformation = transformation;
        _names = _parameters.Select((_, i) => i.ToString(CultureInfo.InvariantCulture)).ToArray();
        using var _ = torch.no_grad();
        _state = Core.StateModule.detachFromScopes(transformation.Init.Invoke(Tree(_parameters)));
    }

    /// <summary>The optimizer's registered name (e.g. "adam").</summary>
    public string Name => _transformation.Name;

    /// <summary>The number of steps taken so far.</summary>
    public int StepCount => _state.Count;

    /// <summary>The names of every registered optimizer.</summary>
    public static IReadOnlyList<string> Names => Core.Registry.optimizerNames.ToArray();

    /// <summary>
    /// Any registered optimizer by name, with options by their PyTorch names
    /// (e.g. <c>("adam", ps, new() { ["lr"] = 0.01, ["beta1"] = 0.8 })</c>).
    /// </summary>
    /// <exception cref="ArgumentException">An unknown name or option, or an invalid value; the
    /// message lists what is valid.</exception>
    public static Optimizer Create(string name, IEnumerable<Parameter> parameters, IReadOnlyDictionary<string, object>? options = null)
    {
        ArgumentNullException.ThrowIfNull(name);
        var pairs = (options ?? new Dictionary<string, object>())
            .Select(kv => Tuple.Create(kv.Key, Convert.ToString(kv.Value, CultureInfo.InvariantCulture) ?? ""));
        return new Optimizer(Core.Registry.createOptimizer(name, ListModule.OfSeq(pairs)), parameters);
    }

    /// <summary>Stochastic gradient descent as <c>torch.optim.SGD</c>, with the same defaults.</summary>
    public static Optimizer SGD(IEnumerable<Parameter> parameters, double lr = 1e-3, double momentum = 0.0,
        double dampening = 0.0, double weightDecay = 0.0, bool nesterov = false) =>
        Create("sgd", parameters, new Dictionary<string, object>
        {
            ["lr"] = lr, ["momentum"] = momentum, ["dampening"] = dampening,
            ["weight_decay"] = weightDecay, ["nesterov"] = nesterov ? "true" : "false",
        });

    /// <summary>Adam as <c>torch.optim.Adam</c>, with the same defaults.</summary>
    public static Optimizer Adam(IEnumerable<Parameter> parameters, double lr = 1e-3, double beta1 = 0.9,
        double beta2 = 0.999, double eps = 1e-8, double weightDecay = 0.0) =>
        Create("adam", parameters, new Dictionary<string, object>
        {
            ["lr"] = lr, ["beta1"] = beta1, ["beta2"] = beta2, ["eps"] = eps, ["weight_decay"] = weightDecay,
        });

    /// <summary>Clear the parameters' gradients (sets them to null, as torch.optim does by default).</summary>
    public void ZeroGrad()
    {
        foreach (var p in _parameters)
        {
            var g = p.grad;
            if (g is not null) { p.grad = null; g.Dispose(); }
        }
    }

    /// <summary>
    /// True (the default): <see cref="Step"/> takes the fast path, the optimizer's in-place fused
    /// kernel where it has one (sgd, momentum, nesterov, adam) and otherwise the pure update added
    /// into the parameters. False: always the pure update (for comparisons). Both give the same
    /// numbers and the same state, so this can change between steps.
    /// </summary>
    public bool UseFastPath { get; set; } = true;

    /// <summary>One optimizer step from the gradients that <c>backward()</c> left in the parameters.</summary>
    /// <exception cref="InvalidOperationException">A parameter has no gradient.</exception>
    public void Step()
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        using var scope = torch.NewDisposeScope();
        using var noGrad = torch.no_grad();
        var grads = new Tensor[_parameters.Length];
        for (int i = 0; i < _parameters.Length; i++)
            grads[i] = _parameters[i].grad
                ?? throw new InvalidOperationException($"parameter {i} has no gradient; call backward() before Step()");
        var parameters = Tree(_parameters);
        Core.State next;
        if (UseFastPath)
            next = Core.Transform.stepInPlace(_transformation, Tree(grads), _state, parameters);
        else
        {
            var result = _transformation.Update.Invoke(Tree(grads)).Invoke(_state).Invoke(parameters);
            var updates = result.Item1;
            for (int i = 0; i < _parameters.Length; i++) _parameters[i].add_(updates.Values[i]);
            next = result.Item2;
        }
        // The fast path returns the same (updated) tensors; the pure path new ones: free the old.
        var newState = Core.StateModule.detachFromScopes(next);
        Core.Run.disposeReplaced(Core.StateModule.tensors(_state), Core.StateModule.tensors(newState));
        _state = newState;
        Core.Memory.afterStep();
    }

    /// <summary>Save the optimizer's state (moments, step count) to a file.</summary>
    public void SaveState(string path) => Core.Serialization.saveState(path, _transformation, _state);

    /// <summary>Load a state saved by <see cref="SaveState"/> from an optimizer of the same kind.</summary>
    /// <exception cref="InvalidDataException">The file is not a state file or holds another optimizer's state.</exception>
    public void LoadState(string path)
    {
        var loaded = Core.Serialization.loadState(path, _transformation);
        Core.StateModule.dispose(_state);
        _state = loaded;
    }

    /// <summary>Free the state's native memory.</summary>
    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        Core.StateModule.dispose(_state);
    }

    private Core.Tree Tree(IReadOnlyList<Tensor> values) => new(_names, values.ToArray());
}
