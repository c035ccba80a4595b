using System.Globalization;
using System.Runtime.CompilerServices;
using Microsoft.FSharp.Collections;
using Microsoft.FSharp.Core;
using TorchSharp;
using static TorchSharp.torch;
using Core = Optimizers;

namespace Optimizers.Interop;

/// <summary>Conversions between the facade's C# types and the core's F# types (never public).</summary>
internal static class Fs
{
    /// An option value as the registry's text: numbers invariant, booleans true/false, arrays
    /// comma-separated. Fails naming the option for values the registry cannot read.
    public static string Text(string name, object? value) => value switch
    {
        null => throw new ArgumentException($"option {name} is null; give a value or leave the option out", name),
        string s => s,
        bool b => b ? "true" : "false",
        double or float or decimal or int or long or short or byte => Convert.ToString(value, CultureInfo.InvariantCulture)!,
        System.Collections.IEnumerable items => string.Join(",", items.Cast<object?>().Select(x => Text(name, x))),
        _ => throw new ArgumentException($"option {name} has a value of type {value.GetType().Name}; give a number, a bool, a string or an array of numbers", name),
    };

    /// Options by name as ordered text pairs.
    public static List<KeyValuePair<string, string>> Texts(IReadOnlyDictionary<string, object>? options) =>
        (options ?? new Dictionary<string, object>()).Select(kv => KeyValuePair.Create(kv.Key, Text(kv.Key, kv.Value))).ToList();

    /// `over` with the pairs of `with` added or replacing those of the same name.
    public static List<KeyValuePair<string, string>> Merge(IEnumerable<KeyValuePair<string, string>> over, IEnumerable<KeyValuePair<string, string>> with)
    {
        var result = over.ToList();
        foreach (var kv in with)
        {
            int i = result.FindIndex(p => p.Key == kv.Key);
            if (i >= 0) result[i] = kv; else result.Add(kv);
        }
        return result;
    }

    public static FSharpList<Tuple<string, string>> Pairs(IEnumerable<KeyValuePair<string, string>> pairs) =>
        ListModule.OfSeq(pairs.Select(kv => Tuple.Create(kv.Key, kv.Value)));

    public static FSharpMap<string, Core.Hyper> Hypers(IEnumerable<KeyValuePair<string, Core.Hyper>> hypers) =>
        MapModule.OfSeq(hypers.Select(kv => Tuple.Create(kv.Key, kv.Value)));

    /// A hyperparameter whose value is read from `box` at every step (a learning rate that a
    /// scheduler or the user sets between steps).
    public static Core.Hyper Boxed(StrongBox<double> box) =>
        Core.Hyper.NewScheduled(FSharpFunc<int, double>.FromConverter(_ => box.Value));

    /// Names "0", "1", ... for a list of n tensors.
    public static string[] IndexNames(int n) =>
        Enumerable.Range(0, n).Select(i => i.ToString(CultureInfo.InvariantCulture)).ToArray();

    public static Core.Tree Tree(string[] names, IReadOnlyList<Tensor> values) => new(names, values.ToArray());

    /// The same state with every tensor copied, detached and out of every DisposeScope.
    public static Core.State Copy(Core.State s) =>
        Core.StateModule.detachFromScopes(Core.StateModule.mapTensors(FSharpFunc<Tensor, Tensor>.FromConverter(t => t.detach().clone()), s));

    public static IReadOnlyList<Tensor> Tensors(Core.State s) => Core.StateModule.tensors(s).ToList();
}
