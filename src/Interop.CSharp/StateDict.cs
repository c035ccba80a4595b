using System.Globalization;
using System.Text.Json.Nodes;
using TorchSharp;
using static TorchSharp.torch;
using Core = Optimizers;

namespace Optimizers.Interop;

/// <summary>
/// A snapshot of an optimizer (torch.optim's <c>state_dict()</c>): its name and, per parameter
/// group, the options, the current learning rate and the state (moments, buffers, step counts),
/// copied so that later steps do not change it. Load it into an optimizer of the same name over
/// parameters of the same shapes with <see cref="Optimizer.load_state_dict(OptimizerStateDict)"/>;
/// save it to a file with <see cref="Save"/>. Dispose it to free its tensors at once.
/// </summary>
public sealed class OptimizerStateDict : IDisposable
{
    private const string FileKind = "OPTGROUP";
    private const string What = "optimizer state_dict file";

    internal sealed record Group(List<KeyValuePair<string, string>> Options, double LearningRate, int Version, long[][] Shapes, Core.State State);

    internal IReadOnlyList<Group> Entries { get; }

    internal OptimizerStateDict(string optimizer, IReadOnlyList<Group> groups)
    {
        Optimizer = optimizer;
        Entries = groups;
    }

    /// <summary>The registered name of the optimizer it was taken from.</summary>
    public string Optimizer { get; }

    /// <summary>The number of parameter groups.</summary>
    public int GroupCount => Entries.Count;

    /// <summary>The options of group <paramref name="group"/>, by name.</summary>
    public IReadOnlyDictionary<string, string> Options(int group) => Entries[group].Options.ToDictionary(kv => kv.Key, kv => kv.Value);

    /// <summary>The learning rate of group <paramref name="group"/> when saved (NaN when it has no settable rate).</summary>
    public double LearningRate(int group) => Entries[group].LearningRate;

    /// <summary>The number of updates group <paramref name="group"/> had made.</summary>
    public int StepCount(int group) => Entries[group].State.Count;

    /// <summary>Every tensor of group <paramref name="group"/>'s state, in a fixed order (for inspection and tests).</summary>
    public IReadOnlyList<Tensor> Tensors(int group) => Fs.Tensors(Entries[group].State);

    /// <summary>
    /// Write to <paramref name="path"/> (a TensorFile of kind OPTGROUP: a JSON header with the
    /// groups' options, learning rates and states, then the tensors' bytes). The file is written
    /// whole under a temporary name and renamed.
    /// </summary>
    public void Save(string path)
    {
        ArgumentNullException.ThrowIfNull(path);
        var w = new Core.TensorFile.Writer();
        var groups = new JsonArray();
        foreach (var g in Entries)
        {
            var options = new JsonObject();
            foreach (var kv in g.Options) options[kv.Key] = kv.Value;
            groups.Add(new JsonObject
            {
                ["options"] = options,
                ["lr"] = double.IsNaN(g.LearningRate) ? null : JsonValue.Create(g.LearningRate),
                ["version"] = g.Version,
                ["shapes"] = new JsonArray(g.Shapes.Select(s => (JsonNode)new JsonArray(s.Select(d => (JsonNode)d).ToArray())).ToArray()),
                ["state"] = Core.Serialization.writeState(w, g.State),
            });
        }
        var header = new JsonObject
        {
            ["optimizer"] = Optimizer,
            ["library"] = typeof(Core.State).Assembly.GetName().Version?.ToString(),
            ["groups"] = groups,
        };
        Core.TensorFile.write(path, FileKind, header, w);
    }

    /// <summary>Read a file written by <see cref="Save"/>.</summary>
    /// <exception cref="FileNotFoundException">No such file.</exception>
    /// <exception cref="InvalidDataException">Not such a file, or a truncated or corrupt one; the message names the file.</exception>
    public static OptimizerStateDict Load(string path)
    {
        ArgumentNullException.ThrowIfNull(path);
        var (header, r) = Core.TensorFile.read(path, FileKind, What).ToValueTuple();
        return Core.TensorFile.guard(path, Microsoft.FSharp.Core.FSharpFunc<Microsoft.FSharp.Core.Unit, OptimizerStateDict>.FromConverter(_ =>
        {
            var groups = new List<Group>();
            foreach (var node in header["groups"]!.AsArray())
            {
                var options = node!["options"]!.AsObject().Select(kv => KeyValuePair.Create(kv.Key, kv.Value!.GetValue<string>())).ToList();
                var lr = node["lr"] is JsonNode l ? l.GetValue<double>() : double.NaN;
                var shapes = node["shapes"]!.AsArray().Select(s => s!.AsArray().Select(d => d!.GetValue<long>()).ToArray()).ToArray();
                var state = Core.StateModule.detachFromScopes(Core.Serialization.readState(r, node["state"]));
                groups.Add(new Group(options, lr, node["version"]!.GetValue<int>(), shapes, state));
            }
            return new OptimizerStateDict(r.Str(header, "optimizer"), groups);
        }));
    }

    /// <summary>Free the snapshot's tensors.</summary>
    public void Dispose()
    {
        foreach (var g in Entries) Core.StateModule.dispose(g.State);
    }

    internal static string Shape(long[] s) => "[" + string.Join(", ", s.Select(d => d.ToString(CultureInfo.InvariantCulture))) + "]";
}

public sealed partial class Optimizer
{
    /// <summary>
    /// A snapshot of the optimizer: every group's options, learning rate and state (copies).
    /// Load it back with <see cref="load_state_dict(OptimizerStateDict)"/>.
    /// </summary>
    public OptimizerStateDict state_dict()
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        return new OptimizerStateDict(_name, _groups.Select(g => new OptimizerStateDict.Group(
            g.Options.ToList(), g.HasLearningRate ? g.LearningRate : double.NaN, g.Transformation.Version,
            g.Parameters.Select(p => p.shape).ToArray(), Fs.Copy(g.State))).ToList());
    }

    /// <summary>
    /// Take the options, learning rates and states of a snapshot: each group is rebuilt with the
    /// snapshot's options and continues from its state, as if the steps had been taken here.
    /// The snapshot stays usable (its tensors are copied).
    /// </summary>
    /// <exception cref="ArgumentException">A snapshot of another optimizer, with another number of
    /// groups or parameters, or with other parameter shapes; the message says which.</exception>
    public void load_state_dict(OptimizerStateDict state_dict)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        ArgumentNullException.ThrowIfNull(state_dict);
        string Fail(string what) => throw new ArgumentException($"cannot load the state_dict: {what}", nameof(state_dict));
        if (state_dict.Optimizer != _name)
            Fail($"it holds the state of '{state_dict.Optimizer}', not of '{_name}'; load it into an optimizer made with Optimizer.Create(\"{state_dict.Optimizer}\", ...)");
        if (state_dict.GroupCount != _groups.Count)
            Fail($"it has {state_dict.GroupCount} parameter group(s), this optimizer {_groups.Count}");
        for (int gi = 0; gi < _groups.Count; gi++)
        {
            var (g, e) = (_groups[gi], state_dict.Entries[gi]);
            if (e.Shapes.Length != g.Parameters.Count)
                Fail($"group {gi} has {e.Shapes.Length} parameters there, {g.Parameters.Count} here");
            for (int i = 0; i < e.Shapes.Length; i++)
                if (!e.Shapes[i].SequenceEqual(g.Parameters[i].shape))
                    Fail($"parameter {i} of group {gi} has shape {OptimizerStateDict.Shape(e.Shapes[i])} there, {OptimizerStateDict.Shape(g.Parameters[i].shape)} here");
        }
        // Rebuild every group first (this validates the options) and swap the states in only then,
        // so a failure leaves the optimizer as it was.
        var rebuilt = new List<(ParamGroup group, List<KeyValuePair<string, string>> options, OptimizerStateDict.Group entry)>();
        for (int gi = 0; gi < _groups.Count; gi++)
        {
            var e = state_dict.Entries[gi];
            var probe = Errors.Guard(() => ParamGroup.Build(_name, e.Options, new System.Runtime.CompilerServices.StrongBox<double>()).transformation);
            if (probe.Name != e.State.Kind || probe.Version != e.Version)
                Fail($"group {gi} holds the state of '{e.State.Kind}' (layout version {e.Version}); its options make '{probe.Name}' (version {probe.Version})");
            rebuilt.Add((_groups[gi], e.Options, e));
        }
        foreach (var (group, options, entry) in rebuilt)
        {
            Errors.Guard(() => group.Attach(this, _name, options));
            group.ReplaceState(Fs.Copy(entry.State));
            if (group.HasLearningRate && !double.IsNaN(entry.LearningRate)) group.LearningRate = entry.LearningRate;
        }
    }

    /// <summary>Save <see cref="state_dict"/> to a file (TorchSharp's <c>save_state_dict</c>).</summary>
    public void save_state_dict(string location)
    {
        using var sd = state_dict();
        sd.Save(location);
    }

    /// <summary>Load a file written by <see cref="save_state_dict"/> (TorchSharp's <c>load_state_dict(string)</c>).</summary>
    /// <exception cref="FileNotFoundException">No such file.</exception>
    /// <exception cref="InvalidDataException">Not a state_dict file, or a corrupt one.</exception>
    /// <exception cref="ArgumentException">The file holds the state of another optimizer or of other parameters.</exception>
    public void load_state_dict(string location)
    {
        using var sd = OptimizerStateDict.Load(location);
        load_state_dict(sd);
    }
}
