using System.Reflection;
using Optimizers.Interop;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;
using Parameter = TorchSharp.Modules.Parameter;

namespace Optimizers.Interop.Tests;

/// The facade's public surface is plain C#: no F# type in any signature, and every exception a
/// call raises for bad input is an ordinary .NET one in .NET's message format.
public class SurfaceTests
{
    /// Why `t` is an F# type (null when it is not): from FSharp.Core or the F# core, or compiled
    /// from an F# union, record, module or function.
    private static string? FSharpReason(Type t)
    {
        if (t.IsByRef || t.IsPointer || t.IsArray) return FSharpReason(t.GetElementType()!);
        if (t.IsGenericParameter) return null;
        if (t.IsGenericType)
            foreach (var a in t.GetGenericArguments())
                if (FSharpReason(a) is { } r) return r;
        var asm = t.Assembly.GetName().Name;
        if (asm == "FSharp.Core") return $"{t} is from FSharp.Core";
        if (asm == "Optimizers.Core") return $"{t} is a type of the F# core";
        if (t.GetCustomAttributes(false).Any(a => a.GetType().FullName == "Microsoft.FSharp.Core.CompilationMappingAttribute"))
            return $"{t} is compiled from F#";
        return null;
    }

    [Fact]
    public void NoPublicSignatureOfTheFacadeHasAnFSharpType()
    {
        var asm = typeof(Optimizer).Assembly;
        var problems = new List<string>();
        int checkedTypes = 0;
        void Check(Type? t, string where)
        {
            if (t is null) return;
            checkedTypes++;
            if (FSharpReason(t) is { } r) problems.Add($"{where}: {r}");
        }
        const BindingFlags all = BindingFlags.Public | BindingFlags.Instance | BindingFlags.Static | BindingFlags.DeclaredOnly;
        foreach (var type in asm.GetExportedTypes())
        {
            Check(type.BaseType, $"{type} base");
            foreach (var i in type.GetInterfaces()) Check(i, $"{type} interface");
            foreach (var m in type.GetMethods(all))
            {
                Check(m.ReturnType, $"{type}.{m.Name} return");
                foreach (var p in m.GetParameters()) Check(p.ParameterType, $"{type}.{m.Name}({p.Name})");
            }
            foreach (var c in type.GetConstructors(all))
                foreach (var p in c.GetParameters()) Check(p.ParameterType, $"{type}..ctor({p.Name})");
            foreach (var p in type.GetProperties(all)) Check(p.PropertyType, $"{type}.{p.Name}");
            foreach (var f in type.GetFields(all)) Check(f.FieldType, $"{type}.{f.Name}");
            foreach (var e in type.GetEvents(all)) Check(e.EventHandlerType, $"{type}.{e.Name}");
        }
        Assert.True(problems.Count == 0, "F# types on the facade's public surface:\n" + string.Join("\n", problems));
        Assert.True(checkedTypes > 300, $"only {checkedTypes} signature types looked at");
        // the check itself sees F# types
        Assert.NotNull(FSharpReason(typeof(Microsoft.FSharp.Collections.FSharpList<int>)));
        Assert.NotNull(FSharpReason(typeof(Optimizers.Hyper)));
        Assert.NotNull(FSharpReason(typeof(IReadOnlyList<Microsoft.FSharp.Core.FSharpOption<string>>)));
    }

    private static Exception Catch(Action a)
    {
        try { a(); }
        catch (Exception e) { return e; }
        throw new Xunit.Sdk.XunitException("no exception");
    }

    /// Bad inputs across the facade: each raises one of the ordinary exception types, from .NET
    /// itself, with ParamName the C# argument and .NET's "(Parameter 'name')" format.
    [Fact]
    public void BadInputsRaiseOrdinaryDotNetExceptionsNamingTheCSharpArgument()
    {
        var layer = nn.Linear(3, 2);
        var ps = layer.parameters().ToArray();
        using var sgd = Optimizer.SGD(ps, lr: 0.1);
        var notAModel = Path.GetTempFileName();
        File.WriteAllText(notAModel, "not a trained optimizer");
        var missing = Path.Combine(Path.GetTempPath(), "no-such-" + Guid.NewGuid() + ".bin");
        try
        {
            var cases = new (string what, Action call, Type type, string? param)[]
            {
                ("adam lr < 0", () => Optimizer.Adam(ps, lr: -1), typeof(ArgumentOutOfRangeException), "lr"),
                ("adam beta1 >= 1", () => Optimizer.Adam(ps, beta1: 1.5), typeof(ArgumentOutOfRangeException), "beta1"),
                ("sgd momentum NaN", () => Optimizer.SGD(ps, momentum: double.NaN), typeof(ArgumentOutOfRangeException), "momentum"),
                ("lookahead k = 0", () => Optimizer.Lookahead(ps, k: 0), typeof(ArgumentOutOfRangeException), "k"),
                ("adam-hd lr_guard", () => Optimizer.AdamHD(ps, lr_guard: "sometimes"), typeof(ArgumentException), "lr_guard"),
                ("unknown optimizer", () => Optimizer.Create("adamz", ps), typeof(ArgumentException), "optimizer"),
                ("unknown option", () => Optimizer.Create("adam", ps, new Dictionary<string, object> { ["betaX"] = 0.5 }), typeof(ArgumentException), "betaX"),
                ("option not a number", () => Optimizer.Create("sgd", ps, new Dictionary<string, object> { ["momentum"] = "lots" }), typeof(ArgumentException), "momentum"),
                ("unknown learned kind", () => Optimizer.Learned(ps, "hyperbole"), typeof(ArgumentException), "kind"),
                ("no shipped model", () => Optimizer.Learned(ps, "msadam-la"), typeof(ArgumentException), "file"),
                ("no shipped model, by name", () => Optimizer.Create("msadam-la", ps), typeof(ArgumentException), "file"),
                ("negative initSeed", () => Optimizer.HyperAdam(ps, initSeed: -2), typeof(ArgumentOutOfRangeException), "initSeed"),
                ("missing model file", () => Optimizer.HyperAdam(ps, file: missing), typeof(FileNotFoundException), null),
                ("corrupt model file", () => Optimizer.HyperAdam(ps, file: notAModel), typeof(InvalidDataException), null),
                ("step_size 0", () => LRScheduler.StepLR(sgd, step_size: 0), typeof(ArgumentOutOfRangeException), "step_size"),
                ("T_max 0", () => LRScheduler.CosineAnnealingLR(sgd, T_max: 0), typeof(ArgumentOutOfRangeException), "T_max"),
                ("unknown schedule", () => LRScheduler.Create(sgd, "sine"), typeof(ArgumentException), "schedule"),
                ("negative learning rate", () => sgd.ParamGroups[0].LearningRate = -1, typeof(ArgumentOutOfRangeException), "LearningRate"),
                ("transformation option", () => GradientTransformation.Create("adam", new Dictionary<string, object> { ["eps"] = -1.0 }), typeof(ArgumentOutOfRangeException), "eps"),
                ("state_dict not a file", () => OptimizerStateDict.Load(notAModel), typeof(InvalidDataException), null),
                ("mnist folder", () => Mnist.Load(missing), typeof(DirectoryNotFoundException), null),
            };
            var wrong = new List<string>();
            foreach (var (what, call, type, param) in cases)
            {
                var e = Catch(call);
                if (e.GetType() != type) { wrong.Add($"{what}: {e.GetType().FullName} ({e.Message}), expected {type.Name}"); continue; }
                if (e.GetType().Assembly != typeof(object).Assembly) wrong.Add($"{what}: {e.GetType()} is not a .NET type");
                if (e.InnerException is { } inner && FSharpReason(inner.GetType()) is not null) wrong.Add($"{what}: inner exception {inner.GetType()}");
                if (e is ArgumentException a)
                {
                    if (a.ParamName != param) wrong.Add($"{what}: ParamName {a.ParamName}, expected {param}");
                    else if (!a.Message.EndsWith($" (Parameter '{param}')", StringComparison.Ordinal)) wrong.Add($"{what}: message not in .NET's format: {a.Message}");
                    if (a.Message.Contains("init_seed=") || a.Message.Contains("file=PATH")) wrong.Add($"{what}: the message gives the core's option syntax: {a.Message}");
                }
            }
            Assert.True(wrong.Count == 0, string.Join("\n", wrong));
            // the README's example, word for word
            Assert.Equal("adam: lr = -1 is invalid; it must be a finite number >= 0 (Parameter 'lr')", Catch(() => Optimizer.Adam(ps, lr: -1)).Message);
            var noModel = (ArgumentException)Catch(() => Optimizer.Learned(ps, "msadam-la"));
            Assert.Contains("initSeed: N", noModel.Message);
            Assert.Contains("file: \"PATH\"", noModel.Message);
        }
        finally { File.Delete(notAModel); }
    }

    [Fact]
    public void EngineReportsAndSetsTheOpenMpAndThreadSettings()
    {
        // (That the startup hook sets it before Main is checked where a child process starts
        // without either variable: ExamplesTests and PackageTests.)
        Assert.Matches(@"^(GOMP_SPINCOUNT|OMP_WAIT_POLICY)=\S+$", Engine.SpinSetting);
        Assert.Equal(Engine.SpinSetting, Engine.LimitSpinning());
        Assert.True(Engine.LibTorchLoaded || !OperatingSystem.IsLinux(), "a tensor exists, so LibTorch is loaded");
        var before = Engine.Threads;
        Engine.Threads = 1;
        Assert.Equal(1, torch.get_num_threads());
        Engine.Threads = before;
        Assert.Throws<ArgumentOutOfRangeException>(() => Engine.Threads = 0);
    }
}
