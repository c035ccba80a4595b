using System.Globalization;
using System.Reflection;
using Optimizers.Interop;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;
using Parameter = TorchSharp.Modules.Parameter;

namespace Optimizers.Interop.Tests;

/// Every optimizer of the catalog from C#, the named factories' defaults, and argument errors.
public class CatalogTests
{
    /// Options that make a registered optimizer constructible here: learned kinds without a
    /// shipped model get fresh meta-parameters (init_seed); the shipped ones load models/KIND.bin.
    private static Dictionary<string, object> OptionsFor(string name)
    {
        var info = Optimizer.Describe(name);
        bool learned = info.Options.Any(o => o.Name == "init_seed");
        if (learned && !File.Exists(Path.Combine(Fixtures.RepoRoot(), "models", name + ".bin")))
            return new() { ["init_seed"] = 1 };
        return new();
    }

    public static IEnumerable<object[]> AllNames() => Optimizer.Names.Select(n => new object[] { n });

    [Theory]
    [MemberData(nameof(AllNames))]
    public void EveryRegisteredOptimizerIsConstructibleFromCSharpAndSteps(string name)
    {
        var (model, x, y) = Fixtures.Problem();
        using var opt = Optimizer.Create(name, model.parameters(), OptionsFor(name));
        var before = model.parameters().Select(p => p.detach().clone()).ToArray();
        float loss = Fixtures.Train(model, opt, x, y, 3);
        Assert.True(float.IsFinite(loss), $"{name}: loss {loss}");
        Assert.Equal(name, opt.Name);
        Assert.True(opt.StepCount >= 1, $"{name}: step count {opt.StepCount}");
        bool moved = model.parameters().Zip(before).Any(pq => !pq.First.eq(pq.Second).all().item<bool>());
        Assert.True(moved, $"{name}: three steps left every parameter where it was");
        Assert.Equal(name, Optimizer.Describe(name).Name);
    }

    [Fact]
    public void ShippedLearnedOptimizersLoadByDefaultAndFromAFile()
    {
        foreach (var kind in new[] { "hyperadam", "dmoptimizer", "rnnprop" })
        {
            var file = Path.Combine(Fixtures.RepoRoot(), "models", kind + ".bin");
            var (a, x, y) = Fixtures.Problem();
            var (b, _, _) = Fixtures.Problem();
            using var shipped = Optimizer.Learned(a.parameters(), kind);
            using var fromFile = Optimizer.Learned(b.parameters(), kind, file: file);
            Fixtures.Train(a, shipped, x, y, 3);
            Fixtures.Train(b, fromFile, x, y, 3);
            Fixtures.AssertEqual(a.parameters(), b.parameters(), $"{kind}: the shipped model is models/{kind}.bin");
        }
        var (m, _, _) = Fixtures.Problem();
        using var ha = Optimizer.HyperAdam(m.parameters(), lr: 0.001);
        Assert.Equal("0.001", ha.ParamGroups[0].Options["lr"]);
    }

    /// Each named factory and the registered optimizer it makes.
    private static readonly Dictionary<string, string> Factories = new()
    {
        ["SGD"] = "sgd", ["SGDW"] = "sgdw", ["GradientNoise"] = "gradient-noise", ["Adam"] = "adam", ["AMSGrad"] = "amsgrad",
        ["AdamW"] = "adamw", ["Adamax"] = "adamax", ["NAdam"] = "nadam", ["RAdam"] = "radam", ["AdaBound"] = "adabound",
        ["SWATS"] = "swats", ["Adagrad"] = "adagrad", ["RMSProp"] = "rmsprop", ["MNG"] = "mng", ["SGDHD"] = "sgd-hd",
        ["SGDNHD"] = "sgdn-hd", ["AdamHD"] = "adam-hd", ["AutoHD"] = "hd", ["Lookahead"] = "lookahead", ["Ranger"] = "ranger",
        ["HyperAdam"] = "hyperadam", ["DMOptimizer"] = "dmoptimizer", ["RNNProp"] = "rnnprop",
    };

    [Fact]
    public void NamedFactoriesHaveTheRegistrysDefaultsAndMakeTheirOptimizer()
    {
        var generic = new[] { "Create", "Hypergradient", "Learned" };
        var methods = typeof(Optimizer).GetMethods(BindingFlags.Public | BindingFlags.Static)
            .Where(m => m.ReturnType == typeof(Optimizer) && !generic.Contains(m.Name)).ToArray();
        Assert.Equal(Factories.Keys.OrderBy(k => k), methods.Select(m => m.Name).OrderBy(k => k));
        int compared = 0;
        foreach (var m in methods)
        {
            var info = Optimizer.Describe(Factories[m.Name]);
            foreach (var p in m.GetParameters().Where(p => p.HasDefaultValue && p.DefaultValue is not null))
            {
                var spec = info.Options.FirstOrDefault(o => o.Name == p.Name);
                if (spec is null) continue; // e.g. amsgrad, amsbound (choose the registered name), a wrapper's lr
                switch (p.DefaultValue)
                {
                    case double d:
                        Assert.Equal(double.Parse(spec.Default, CultureInfo.InvariantCulture), d, 12);
                        break;
                    case bool b:
                        Assert.Equal(spec.Default, b ? "true" : "false");
                        break;
                    default:
                        Assert.Equal(spec.Default, Convert.ToString(p.DefaultValue, CultureInfo.InvariantCulture));
                        break;
                }
                compared++;
            }
            var (model, _, _) = Fixtures.Problem();
            var args = m.GetParameters().Select((p, i) => i == 0 ? (object?)model.parameters() : p.DefaultValue).ToArray();
            using var opt = (Optimizer)m.Invoke(null, args)!;
            Assert.Equal(Factories[m.Name], opt.Name);
        }
        Assert.True(compared > 80, $"only {compared} defaults compared");
        var (mm, _, _) = Fixtures.Problem();
        using var ams = Optimizer.Adam(mm.parameters(), amsgrad: true);
        Assert.Equal("amsgrad", ams.Name);
        using var hd = Optimizer.Hypergradient(mm.parameters(), "sgdn", "adam");
        Assert.Equal("sgdn_op-adam_lop", hd.Name);
    }

    private static ArgumentException Throws(Action a) => Assert.ThrowsAny<ArgumentException>(a);

    [Fact]
    public void BadArgumentsGiveArgumentExceptionsNamingTheParameter()
    {
        var (model, _, _) = Fixtures.Problem();
        var ps = model.parameters();
        Assert.Equal("beta1", Throws(() => Optimizer.Adam(ps, beta1: 1.5)).ParamName);
        Assert.Equal("lr", Throws(() => Optimizer.SGD(ps, lr: -1)).ParamName);
        Assert.Equal("weight_decay", Throws(() => Optimizer.AdamW(ps, weight_decay: double.NaN)).ParamName);
        Assert.Equal("k", Throws(() => Optimizer.Lookahead(ps, k: 0)).ParamName);
        Assert.Equal("lr_guard", Throws(() => Optimizer.AdamHD(ps, lr_guard: "sometimes")).ParamName);
        var e = Throws(() => Optimizer.Create("adam", ps, new Dictionary<string, object> { ["betaX"] = 0.5 }));
        Assert.Equal("betaX", e.ParamName);
        Assert.Contains("beta1", e.Message);
        Assert.Equal("momentum", Throws(() => Optimizer.Create("sgd", ps, new Dictionary<string, object> { ["momentum"] = "lots" })).ParamName);
        Assert.Equal("optimizer", Throws(() => Optimizer.Create("adamz", ps)).ParamName);
        Assert.Equal("kind", Throws(() => Optimizer.Learned(ps, "hyperbole")).ParamName);
        Assert.Equal("inner", Throws(() => Optimizer.Lookahead(ps, inner: "lookahead")).ParamName);
        Assert.Equal("parameters", Throws(() => Optimizer.Adam(Array.Empty<Parameter>())).ParamName);
        Assert.Equal("file", Throws(() => Optimizer.Learned(ps, "msadam-la")).ParamName); // none shipped, no file given
        Assert.Throws<FileNotFoundException>(() => Optimizer.HyperAdam(ps, file: "/no/such/hyperadam.bin"));
        // groups
        var layer = nn.Linear(2, 2);
        Assert.Equal("parameters", Throws(() => new ParamGroup(Array.Empty<Parameter>())).ParamName);
        Assert.Equal("param_group", Throws(() => Optimizer.Create("sgd", new[] { new ParamGroup(layer.parameters()), new ParamGroup(layer.parameters()) })).ParamName);
        Assert.Equal("lr", Throws(() => Optimizer.Create("sgd", new[] { new ParamGroup(layer.parameters(), new Dictionary<string, object> { ["lr"] = -0.5 }) })).ParamName);
        // schedulers
        using var sgd = Optimizer.SGD(ps, lr: 0.1);
        Assert.Equal("step_size", Throws(() => LRScheduler.StepLR(sgd, step_size: 0)).ParamName);
        Assert.Equal("T_max", Throws(() => LRScheduler.CosineAnnealingLR(sgd, T_max: 0)).ParamName);
        Assert.Equal("T_mult", Throws(() => LRScheduler.CosineAnnealingWarmRestarts(sgd, T_0: 10, T_mult: 0)).ParamName);
        Assert.Equal("total_iters", Throws(() => LRScheduler.LinearLR(sgd, total_iters: 0)).ParamName);
        Assert.Equal("mode", Throws(() => LRScheduler.CyclicLR(sgd, 0.01, 0.1, mode: "sine")).ParamName);
        Assert.Equal("schedule", Throws(() => LRScheduler.Create(sgd, "cosine-ish")).ParamName);
        using var adamHd = Optimizer.AdamHD(ps);
        Assert.Equal("optimizer", Throws(() => LRScheduler.ExponentialLR(adamHd, 0.9)).ParamName);
        Assert.Throws<ArgumentOutOfRangeException>(() => sgd.ParamGroups[0].LearningRate = -1);
        Assert.Throws<InvalidOperationException>(() => adamHd.ParamGroups[0].LearningRate = 0.1);
        // functional
        Assert.Equal("lr", Throws(() => GradientTransformation.Create("adam-hd", tensors: new Dictionary<string, Tensor> { ["lr"] = torch.tensor(0.1) })).ParamName);
    }

    [Fact]
    public void StepWithAClosureReturnsTheLossAndStopsOnNaN()
    {
        var (model, x, y) = Fixtures.Problem();
        using var opt = Optimizer.SGD(model.parameters(), lr: 0.01);
        Tensor Closure()
        {
            opt.zero_grad();
            var l = nn.functional.mse_loss(model.forward(x), y);
            l.backward();
            return l;
        }
        var first = opt.step(Closure)!.item<float>();
        var second = opt.step(Closure)!.item<float>();
        Assert.True(second < first, $"loss {first} -> {second}");
        var e = Assert.Throws<ArithmeticException>(() => opt.step(() => { Closure(); return torch.tensor(float.NaN); }));
        Assert.Contains("diverged", e.Message);
    }
}
