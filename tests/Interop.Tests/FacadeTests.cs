using System.Reflection;
using Microsoft.FSharp.Collections;
using Optimizers.Interop;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;
using Core = Optimizers;

namespace Optimizers.Interop.Tests;

/// The facade against the core: steps, parameter groups, schedulers, state_dict, the functional
/// surface, and the public surface's types.
public class FacadeTests
{
    private static Dictionary<string, object> O(params (string k, object v)[] kv) => kv.ToDictionary(p => p.k, p => p.v);

    // ---- the facade's step is the core's pure step ------------------------------------------

    public static IEnumerable<object[]> Compared() => new[]
    {
        new object[] { "adam", O(("lr", 0.01), ("weight_decay", 0.01)) },
        new object[] { "momentum", O(("lr", 0.05)) },
        new object[] { "rmsprop", O(("lr", 0.01), ("centered", true)) },
        new object[] { "radam", O(("lr", 0.01)) },
        new object[] { "adam-hd", O(("lr", 0.01), ("hypergrad_lr", 1e-4)) },
        new object[] { "lookahead", O(("inner", "sgd"), ("lr", 0.05), ("k", 2)) },
        new object[] { "hyperadam", O() },
    };

    /// The core's own pure loop (Registry, Transform.step), independent of the facade's code.
    private static IReadOnlyList<Tensor> CoreRun(string name, Dictionary<string, object> options, nn.Module<Tensor, Tensor> model, Tensor x, Tensor y, int steps)
    {
        var pairs = ListModule.OfSeq(options.Select(kv => Tuple.Create(kv.Key, kv.Value is bool b ? (b ? "true" : "false") : Convert.ToString(kv.Value, System.Globalization.CultureInfo.InvariantCulture)!)));
        var t = Core.Registry.createOptimizer(name, pairs);
        var names = model.parameters().Select((_, i) => i.ToString()).ToArray();
        var p = new Core.Tree(names, model.parameters().Select(q => q.detach().clone()).ToArray());
        var s = t.Init.Invoke(p);
        for (int k = 0; k < steps; k++)
        {
            var leaves = Core.TreeModule.asLeaves(p);
            var loss = nn.functional.mse_loss(Forward(leaves.Values, x), y);
            var grads = torch.autograd.grad(new[] { loss }, leaves.Values);
            using var noGrad = torch.no_grad();
            var r = Core.Transform.step(t, new Core.Tree(names, grads.ToArray()), s, p);
            (p, s) = (r.Item1, r.Item2);
        }
        return p.Values;
    }

    /// The 3-4-1 tanh network of Fixtures.Problem as a function of its parameter list.
    private static Tensor Forward(Tensor[] ps, Tensor x) =>
        nn.functional.linear(nn.functional.linear(x, ps[0], ps[1]).tanh(), ps[2], ps[3]);

    [Theory]
    [MemberData(nameof(Compared))]
    public void TheFacadesStepEqualsTheCoresPureStep(string name, Dictionary<string, object> options)
    {
        var (model, x, y) = Fixtures.Problem();
        var (twin, _, _) = Fixtures.Problem();
        var expected = CoreRun(name, options, twin, x, y, 6);
        using var opt = Optimizer.Create(name, model.parameters(), options);
        Fixtures.Train(model, opt, x, y, 6);
        Fixtures.AssertClose(model.parameters(), expected, $"{name} after 6 steps", rtol: 1e-4, atol: 1e-5);
        Assert.Equal(6, opt.StepCount);
    }

    // ---- parameter groups -------------------------------------------------------------------

    [Fact]
    public void ParamGroupsApplyTheirOwnOptions()
    {
        // Group 0: Adam lr 0.01 beta1 0.5; group 1: lr 0 (frozen). A separate Adam with group 0's
        // options over the same start must give group 0's numbers.
        torch.manual_seed(3);
        var body = nn.Linear(3, 4);
        var head = nn.Linear(4, 1);
        var x = torch.randn(8, 3);
        var y = torch.randn(8, 1);
        torch.manual_seed(3);
        var body2 = nn.Linear(3, 4);
        var head2 = nn.Linear(4, 1);
        var headStart = head.parameters().Select(p => p.detach().clone()).ToArray();
        using var opt = Optimizer.Create("adam",
            new[] { new ParamGroup(body.parameters(), O(("beta1", 0.5))), new ParamGroup(head.parameters(), O(("lr", 0.0))) },
            O(("lr", 0.01)));
        using var alone = Optimizer.Adam(body2.parameters(), lr: 0.01, beta1: 0.5);
        for (int i = 0; i < 5; i++)
        {
            opt.zero_grad();
            nn.functional.mse_loss(head.forward(body.forward(x).tanh()), y).backward();
            opt.step();
            alone.zero_grad();
            head2.zero_grad();
            nn.functional.mse_loss(head2.forward(body2.forward(x).tanh()), y).backward();
            alone.step();
        }
        Fixtures.AssertEqual(head.parameters(), headStart, "the lr = 0 group did not move");
        Fixtures.AssertClose(body.parameters(), body2.parameters(), "group 0 equals a separate Adam with its options");
        Assert.Equal("0.5", opt.ParamGroups[0].Options["beta1"]);
        Assert.Equal("0.01", opt.ParamGroups[0].Options["lr"]);
        Assert.Equal(0.0, opt.ParamGroups[1].LearningRate);
        Assert.Equal(4, opt.parameters().Count());
    }

    [Fact]
    public void AddParamGroupAndGroupsOfDifferentOptimizersKinds()
    {
        var (model, x, y) = Fixtures.Problem();
        var ps = model.parameters().ToArray();
        using var opt = Optimizer.SGD(ps.Take(2), lr: 0.05, momentum: 0.9);
        opt.add_param_group(new ParamGroup(ps.Skip(2), O(("momentum", 0.0), ("lr", 0.1))));
        Assert.Equal(2, opt.ParamGroups.Count);
        Assert.Equal(0.1, opt.ParamGroups[1].LearningRate);
        Assert.Equal("0.9", opt.ParamGroups[0].Options["momentum"]);
        float first = Fixtures.Train(model, opt, x, y, 1);
        float last = Fixtures.Train(model, opt, x, y, 30);
        Assert.True(last < first, $"loss {first} -> {last}");
        Assert.Throws<ArgumentException>(() => opt.add_param_group(new ParamGroup(ps.Take(1))));
    }

    // ---- schedulers -------------------------------------------------------------------------

    private static void AssertFollows(LRScheduler sched, Optimizer opt, Func<int, int, double> expected, int steps, string what)
    {
        for (int t = 0; t < steps; t++)
        {
            var lrs = sched.get_last_lr();
            for (int g = 0; g < lrs.Count; g++)
            {
                Assert.Equal(expected(g, t), lrs[g], 12);
                Assert.Equal(lrs[g], opt.ParamGroups[g].LearningRate);
            }
            Assert.Equal(t, sched.LastEpoch);
            sched.step();
        }
    }

    private static Optimizer TwoGroups(double lr0 = 0.1, double lr1 = 0.02)
    {
        var a = nn.Linear(2, 2);
        var b = nn.Linear(2, 1);
        return Optimizer.Create("sgd", new[] { new ParamGroup(a.parameters(), O(("lr", lr0))), new ParamGroup(b.parameters(), O(("lr", lr1))) });
    }

    [Fact]
    public void SchedulersGiveTheCoreSchedulesValuesPerGroup()
    {
        double[] init = { 0.1, 0.02 };
        using (var opt = TwoGroups())
            AssertFollows(LRScheduler.StepLR(opt, step_size: 3, gamma: 0.5), opt, (g, t) => Core.ScheduleModule.step(init[g], 3, 0.5).Invoke(t), 10, "StepLR");
        using (var opt = TwoGroups())
            AssertFollows(LRScheduler.MultiStepLR(opt, new[] { 2, 5 }), opt, (g, t) => Core.ScheduleModule.multistep(init[g], ListModule.OfArray(new[] { 2, 5 }), 0.1).Invoke(t), 8, "MultiStepLR");
        using (var opt = TwoGroups())
            AssertFollows(LRScheduler.ExponentialLR(opt, 0.9), opt, (g, t) => Core.ScheduleModule.exponential(init[g], 0.9).Invoke(t), 10, "ExponentialLR");
        using (var opt = TwoGroups())
            AssertFollows(LRScheduler.CosineAnnealingLR(opt, T_max: 7, eta_min: 0.001), opt, (g, t) => Core.ScheduleModule.cosine(init[g], 7, 0.001).Invoke(t), 10, "CosineAnnealingLR");
        using (var opt = TwoGroups())
            AssertFollows(LRScheduler.CosineAnnealingWarmRestarts(opt, T_0: 3, T_mult: 2), opt, (g, t) => Core.ScheduleModule.sgdr(init[g], 3, 2, 0.0).Invoke(t), 12, "CosineAnnealingWarmRestarts");
        using (var opt = TwoGroups())
            AssertFollows(LRScheduler.LinearLR(opt), opt, (g, t) => Core.ScheduleModule.linear(init[g] / 3, init[g], 5).Invoke(t), 8, "LinearLR");
        using (var opt = TwoGroups())
            AssertFollows(LRScheduler.Warmup(opt, 4), opt, (g, t) => Core.ScheduleModule.warmup(init[g], 0.0, 4).Invoke(t), 8, "Warmup");
        using (var opt = TwoGroups())
            AssertFollows(LRScheduler.PolynomialLR(opt, total_iters: 6, power: 2), opt, (g, t) => Core.ScheduleModule.polynomial(init[g], 0.0, 2.0, 6).Invoke(t), 8, "PolynomialLR");
        using (var opt = TwoGroups())
            AssertFollows(LRScheduler.OneCycleLR(opt, max_lr: 0.5, total_steps: 20), opt, (_, t) => Core.ScheduleModule.oneCycle(0.5, 20, 0.3, 25, 1e4, false, false).Invoke(t), 20, "OneCycleLR");
        using (var opt = TwoGroups())
            AssertFollows(LRScheduler.CyclicLR(opt, 0.01, 0.1, step_size_up: 3, mode: "triangular2"), opt, (_, t) => Core.ScheduleModule.cyclic(Core.CyclicMode.Triangular2, 0.01, 0.1, 3, 3).Invoke(t), 14, "CyclicLR");
        using (var opt = TwoGroups())
            AssertFollows(LRScheduler.LambdaLR(opt, t => 1.0 / (t + 1)), opt, (g, t) => init[g] / (t + 1), 5, "LambdaLR");
        using (var opt = TwoGroups())
            AssertFollows(LRScheduler.Create(opt, "warmup-cosine", steps: 10, options: O(("warmup_steps", 3))), opt,
                (g, t) => Core.Registry.createSchedule("warmup-cosine", init[g], Microsoft.FSharp.Core.FSharpOption<int>.Some(10),
                    ListModule.OfArray(new[] { Tuple.Create("warmup_steps", "3") })).Invoke(t), 10, "warmup-cosine");
    }

    [Fact]
    public void StepLRGivesPyTorchsValuesAndTheStepUsesThem()
    {
        // torch StepLR(step_size=2, gamma=0.1) from lr 1: 1, 1, 0.1, 0.1, 0.01 (by hand).
        var w = new TorchSharp.Modules.Parameter(torch.zeros(1));
        using var opt = Optimizer.SGD(new[] { w }, lr: 1.0);
        var sched = LRScheduler.StepLR(opt, step_size: 2);
        double[] expected = { 1, 1, 0.1, 0.1, 0.01 };
        double position = 0;
        foreach (var lr in expected)
        {
            Assert.Equal(lr, sched.get_last_lr()[0], 12);
            opt.zero_grad();
            (w * -1).sum().backward();     // gradient -1: the step moves w by +lr
            opt.step();
            position += lr;
            Assert.Equal(position, w.ToDouble(), 6);
            sched.step();
        }
    }

    // ---- state_dict -------------------------------------------------------------------------

    private static Optimizer GroupedAdam(nn.Module<Tensor, Tensor> model, double lr0, double lr1)
    {
        var ps = model.parameters().ToArray();
        return Optimizer.Create("adam",
            new[] { new ParamGroup(ps.Take(2), O(("lr", lr0), ("beta1", 0.8))), new ParamGroup(ps.Skip(2), O(("lr", lr1))) });
    }

    [Fact]
    public void StateDictRoundTripsThroughAFileWithGroupsAndScheduledRates()
    {
        var (model, x, y) = Fixtures.Problem();
        var (twin, _, _) = Fixtures.Problem();
        using var a = GroupedAdam(model, 0.01, 0.03);
        var sched = LRScheduler.ExponentialLR(a, 0.9);
        Fixtures.Train(model, a, x, y, 5, sched);
        using (torch.no_grad())
            foreach (var (p, q) in model.parameters().Zip(twin.parameters())) q.copy_(p);
        var path = Path.GetTempFileName();
        try
        {
            a.save_state_dict(path);
            using var c = GroupedAdam(twin, 0.5, 0.5);   // other rates and options: the file's win
            c.ParamGroups[1].LearningRate = 0.7;
            c.load_state_dict(path);
            Assert.Equal(5, c.StepCount);
            for (int g = 0; g < 2; g++)
            {
                Assert.Equal(a.ParamGroups[g].Options, c.ParamGroups[g].Options);
                Assert.Equal(a.ParamGroups[g].LearningRate, c.ParamGroups[g].LearningRate);
            }
            Assert.Equal(0.01 * Math.Pow(0.9, 5), c.ParamGroups[0].LearningRate, 12);
            var resumed = LRScheduler.ExponentialLR(c, 0.9);
            resumed.LastEpoch = 5;                          // the scheduler resumes where it was
            Assert.Equal(sched.get_last_lr(), resumed.get_last_lr());
            Fixtures.Train(model, a, x, y, 3, sched);
            Fixtures.Train(twin, c, x, y, 3, resumed);
            Assert.Equal(0.03 * Math.Pow(0.9, 8), c.ParamGroups[1].LearningRate, 12);
            Fixtures.AssertEqual(model.parameters(), twin.parameters(), "continuing from the loaded state is bit-identical");
        }
        finally { File.Delete(path); }
    }

    [Fact]
    public void StateDictIsASnapshotAndRefusesAMismatch()
    {
        var (model, x, y) = Fixtures.Problem();
        using var a = GroupedAdam(model, 0.01, 0.03);
        Fixtures.Train(model, a, x, y, 2);
        using var sd = a.state_dict();
        var saved = sd.Tensors(0).Select(t => t.clone()).ToArray();
        Fixtures.Train(model, a, x, y, 2);
        Fixtures.AssertEqual(sd.Tensors(0), saved, "later steps do not change a snapshot");
        Assert.Equal(2, sd.StepCount(0));
        Assert.Equal(2, sd.GroupCount);
        Assert.Equal("0.8", sd.Options(0)["beta1"]);
        a.load_state_dict(sd);
        Assert.Equal(2, a.StepCount);
        Fixtures.AssertEqual(Fs(a), saved, "loading puts the snapshot's state back");

        var (other, _, _) = Fixtures.Problem();
        using var sgd = Optimizer.SGD(other.parameters());
        Assert.Equal("state_dict", Assert.ThrowsAny<ArgumentException>(() => sgd.load_state_dict(sd)).ParamName);
        using var oneGroup = Optimizer.Adam(other.parameters());
        Assert.Contains("2 parameter group(s)", Assert.ThrowsAny<ArgumentException>(() => oneGroup.load_state_dict(sd)).Message);
        var wide = nn.Sequential(nn.Linear(3, 5), nn.Tanh(), nn.Linear(5, 1));
        using var shaped = GroupedAdam(wide, 0.01, 0.01);
        Assert.Contains("shape", Assert.ThrowsAny<ArgumentException>(() => shaped.load_state_dict(sd)).Message);
        var junk = Path.GetTempFileName();
        File.WriteAllText(junk, "not a state");
        try { Assert.Throws<InvalidDataException>(() => a.load_state_dict(junk)); }
        finally { File.Delete(junk); }
    }

    private static IEnumerable<Tensor> Fs(Optimizer o)
    {
        using var sd = o.state_dict();
        return sd.Tensors(0).Select(t => t.clone()).ToArray();
    }

    // ---- the functional surface -------------------------------------------------------------

    [Fact]
    public void FunctionalSgdGivesTheAnalyticMetaGradientOfItsLearningRate()
    {
        // L(w) = sum(w^2) / 2; one SGD step w1 = w0 - lr w0; dL(w1)/dlr = w1 . (-w0) = -(1 - lr) |w0|^2.
        var w0 = torch.tensor(new[] { 1.0, -2.0, 0.5 }, dtype: torch.float64).requires_grad_();
        var lr = torch.tensor(0.1, dtype: torch.float64).requires_grad_();
        var sgd = GradientTransformation.Create("sgd", tensors: new Dictionary<string, Tensor> { ["lr"] = lr });
        var ps = new[] { w0 };
        using var s0 = sgd.Init(ps);
        var loss0 = (w0 * w0).sum() / 2;
        var g = torch.autograd.grad(new[] { loss0 }, ps, create_graph: true, retain_graph: true);
        var step = sgd.Step(g, s0, ps);
        var w1 = step.Parameters[0];
        var meta = torch.autograd.grad(new[] { (w1 * w1).sum() / 2 }, new[] { lr })[0].ToDouble();
        Assert.Equal(-(1 - 0.1) * (1 + 4 + 0.25), meta, 10);
        Assert.Equal(1, step.State.StepCount);
        Assert.Equal("sgd", step.State.Kind);
    }

    [Fact]
    public void FunctionalAdamMatchesTheFacadeAndChecksItsInputs()
    {
        var (model, x, y) = Fixtures.Problem();
        var (twin, _, _) = Fixtures.Problem();
        using var opt = Optimizer.Adam(model.parameters(), lr: 0.01);
        Fixtures.Train(model, opt, x, y, 4);
        var adam = GradientTransformation.Create("adam", new Dictionary<string, object> { ["lr"] = 0.01 });
        IReadOnlyList<Tensor> ps = twin.parameters().Select(p => p.detach().clone()).ToArray();
        var state = adam.Init(ps);
        for (int i = 0; i < 4; i++)
        {
            var leaves = ps.Select(p => p.detach().requires_grad_()).ToArray();
            var loss = nn.functional.mse_loss(nn.functional.linear(nn.functional.linear(x, leaves[0], leaves[1]).tanh(), leaves[2], leaves[3]), y);
            var grads = torch.autograd.grad(new[] { loss }, leaves);
            var r = adam.Update(grads, state, ps);
            ps = GradientTransformation.ApplyUpdates(ps, r.Updates);
            state = r.State;
        }
        Fixtures.AssertClose(model.parameters(), ps, "functional Adam equals the facade's in-place Adam");
        Assert.Equal(4, state.StepCount);
        // StepInPlace (the fast path) gives Step's numbers, updating the given tensors.
        IReadOnlyList<Tensor> pure = ps.Select(p => p.clone()).ToArray();
        var inPlace = ps.Select(p => p.clone()).ToArray();
        var fixedGrads = ps.Select(p => p * 0.1f).ToArray();
        var (sPure, sInPlace) = (adam.Init(pure), adam.Init(inPlace));
        for (int i = 0; i < 3; i++)
        {
            var stepped = adam.Step(fixedGrads, sPure, pure);
            (pure, sPure) = (stepped.Parameters, stepped.State);
            sInPlace = adam.StepInPlace(fixedGrads, sInPlace, inPlace);
        }
        Fixtures.AssertClose(inPlace, pure, "StepInPlace equals Step");
        Assert.Equal(3, sInPlace.StepCount);
        Assert.Equal("state", Assert.ThrowsAny<ArgumentException>(() => GradientTransformation.Create("sgd").Update(ps, state, ps)).ParamName);
        Assert.Equal("gradients", Assert.ThrowsAny<ArgumentException>(() => adam.Update(ps.Take(2).ToArray(), state, ps)).ParamName);
        Assert.Equal("updates", Assert.ThrowsAny<ArgumentException>(() => GradientTransformation.ApplyUpdates(ps, ps.Take(1).ToArray())).ParamName);
    }

    [Fact]
    public void AdamHDLearnsItsRateAndWatchShowsIt()
    {
        var (model, x, y) = Fixtures.Problem();
        using var opt = Optimizer.AdamHD(model.parameters(), lr: 0.01, hypergrad_lr: 1e-3);
        Assert.False(opt.ParamGroups[0].HasLearningRate);
        Assert.Equal(0.01, opt.Watch("lr")["0/lr"], 12);
        Fixtures.Train(model, opt, x, y, 10);
        var lr = opt.Watch("lr")["0/lr"];
        Assert.NotEqual(0.01, lr);
        Assert.True(double.IsFinite(lr));
    }

    // ---- the public surface -----------------------------------------------------------------

    [Fact]
    public void ThePublicSurfaceHasNoFSharpOrCoreTypes()
    {
        var asm = typeof(Optimizer).Assembly;
        var bad = new List<string>();
        void Check(Type? t, string where)
        {
            if (t is null) return;
            if (t.HasElementType) { Check(t.GetElementType(), where); return; }
            var an = t.Assembly.GetName().Name;
            if (an == "FSharp.Core" || an == "Optimizers.Core" || t.FullName?.StartsWith("System.Tuple") == true)
                bad.Add($"{where}: {t}");
            if (t.IsGenericType) foreach (var a in t.GetGenericArguments()) Check(a, where);
        }
        int members = 0;
        foreach (var type in asm.GetExportedTypes())
        {
            Check(type.BaseType, type.Name);
            foreach (var i in type.GetInterfaces()) Check(i, type.Name);
            foreach (var m in type.GetMembers(BindingFlags.Public | BindingFlags.Instance | BindingFlags.Static | BindingFlags.DeclaredOnly))
            {
                members++;
                var where = $"{type.Name}.{m.Name}";
                switch (m)
                {
                    case MethodBase mb:
                        if (mb is MethodInfo mi) Check(mi.ReturnType, where);
                        foreach (var p in mb.GetParameters()) Check(p.ParameterType, where);
                        break;
                    case PropertyInfo pi: Check(pi.PropertyType, where); break;
                    case FieldInfo fi: Check(fi.FieldType, where); break;
                    case EventInfo ei: Check(ei.EventHandlerType, where); break;
                }
            }
        }
        Assert.True(members > 50, $"only {members} public members found");
        Assert.True(bad.Count == 0, "F# or core types in the public surface:\n" + string.Join("\n", bad));
    }
}
