using Optimizers.Interop;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace Optimizers.Interop.Tests;

public class OptimizerTests
{
    private static (nn.Module<Tensor, Tensor> model, Tensor x, Tensor y) Problem() => Fixtures.Problem();

    private static float Train(nn.Module<Tensor, Tensor> model, Optimizer opt, Tensor x, Tensor y, int steps) =>
        Fixtures.Train(model, opt, x, y, steps);

    /// Ranger (k = 6) after 8 steps: its slow weights are where the synchronisation at step 6 left
    /// the parameters; inside EvaluationWeights the parameters are those, afterwards the fast ones again.
    [Fact]
    public void EvaluationWeightsAreLookaheadsSlowWeightsAndThenTheParametersAgain()
    {
        var (model, x, y) = Problem();
        using var opt = Optimizer.Ranger(model.parameters(), lr: 0.01);
        Train(model, opt, x, y, 6);
        var atSync = model.parameters().Select(p => p.detach().clone()).ToArray();
        Train(model, opt, x, y, 2);
        var fast = model.parameters().Select(p => p.detach().clone()).ToArray();
        Assert.False(fast.Zip(atSync).All(ab => ab.First.eq(ab.Second).all().item<bool>()), "two fast steps moved the parameters");
        using (opt.EvaluationWeights())
            // (the parameters after step 6 are p + (phi - p), phi itself up to rounding)
            Assert.True(model.parameters().Zip(atSync).All(ab => ab.First.allclose(ab.Second, 1e-6, 1e-7)), "inside: the slow weights of step 6");
        Assert.True(model.parameters().Zip(fast).All(ab => ab.First.eq(ab.Second).all().item<bool>()), "after: the fast weights again");
        Train(model, opt, x, y, 1); // and training goes on from them

        var (m2, x2, y2) = Problem();
        using var adam = Optimizer.Adam(m2.parameters(), lr: 0.01);
        Train(m2, adam, x2, y2, 3);
        var p3 = m2.parameters().Select(p => p.detach().clone()).ToArray();
        using (adam.EvaluationWeights())
            Assert.True(m2.parameters().Zip(p3).All(ab => ab.First.eq(ab.Second).all().item<bool>()), "adam: the parameters themselves");
    }

    [Theory]
    [InlineData("sgd")]
    [InlineData("momentum")]
    [InlineData("nesterov")]
    [InlineData("adam")]
    public void EveryOptimizerTrainsAModel(string name)
    {
        var (model, x, y) = Problem();
        using var opt = Optimizer.Create(name, model.parameters(), new Dictionary<string, object> { ["lr"] = 0.01 });
        float first = Train(model, opt, x, y, 1);
        float last = Train(model, opt, x, y, 100);
        Assert.True(last < first, $"{name}: loss {first} -> {last}");
        Assert.Equal(101, opt.StepCount);
    }

    [Fact]
    public void AdamMatchesTorchSharpsOwnAdam()
    {
        var (model, x, y) = Problem();
        var (twin, _, _) = Problem();
        using var ours = Optimizer.Adam(model.parameters(), lr: 0.01);
        var theirs = torch.optim.Adam(twin.parameters(), lr: 0.01);
        for (int i = 0; i < 20; i++)
        {
            ours.zero_grad();
            nn.functional.mse_loss(model.forward(x), y).backward();
            ours.step();
            theirs.zero_grad();
            nn.functional.mse_loss(twin.forward(x), y).backward();
            theirs.step();
        }
        foreach (var (a, b) in model.parameters().Zip(twin.parameters()))
            Assert.True(a.allclose(b, rtol: 1e-5, atol: 1e-6), "parameters after 20 steps");
    }

    [Theory]
    [InlineData("sgd")]
    [InlineData("momentum")]
    [InlineData("nesterov")]
    [InlineData("adam")]
    public void TheFastPathGivesThePurePathsNumbers(string name)
    {
        var (model, x, y) = Problem();
        var (twin, _, _) = Problem();
        var options = new Dictionary<string, object> { ["lr"] = 0.01, ["weight_decay"] = 0.01 };
        using var fast = Optimizer.Create(name, model.parameters(), options);
        using var pure = Optimizer.Create(name, twin.parameters(), options);
        Assert.True(fast.UseFastPath, "the fast path is the default");
        pure.UseFastPath = false;
        Train(model, fast, x, y, 30);
        Train(twin, pure, x, y, 30);
        Fixtures.AssertClose(model.parameters(), twin.parameters(), $"{name}: parameters after 30 steps");
        Assert.Equal(pure.StepCount, fast.StepCount);
    }

    [Fact]
    public void BadArgumentsNameTheParameter()
    {
        var (model, _, _) = Problem();
        var e = Assert.ThrowsAny<ArgumentException>(() => Optimizer.Adam(model.parameters(), beta1: 1.5));
        Assert.Equal("beta1", e.ParamName);
        Assert.Contains("[0, 1)", e.Message);
        e = Assert.ThrowsAny<ArgumentException>(() => Optimizer.Create("adamz", model.parameters()));
        Assert.Contains("sgd, momentum, nesterov, adam", e.Message);
        Assert.Equal("optimizer", e.ParamName);
        e = Assert.ThrowsAny<ArgumentException>(() => Optimizer.SGD(Array.Empty<TorchSharp.Modules.Parameter>()));
        Assert.Equal("parameters", e.ParamName);
    }

    [Fact]
    public void StepWithoutBackwardSaysWhatToDo()
    {
        var (model, _, _) = Problem();
        using var opt = Optimizer.SGD(model.parameters(), lr: 0.1);
        var e = Assert.Throws<InvalidOperationException>(() => opt.step());
        Assert.Contains("backward()", e.Message);
    }

    [Fact]
    public void StateRoundTripsThroughAFile()
    {
        var (model, x, y) = Problem();
        var (twin, _, _) = Problem();
        using var a = Optimizer.Adam(model.parameters(), lr: 0.01);
        using var b = Optimizer.Adam(twin.parameters(), lr: 0.01);
        Train(model, a, x, y, 5);
        Train(twin, b, x, y, 5);
        var path = Path.GetTempFileName();
        a.save_state_dict(path);
        using var c = Optimizer.Adam(twin.parameters(), lr: 0.01);
        c.load_state_dict(path);
        File.Delete(path);
        Assert.Equal(5, c.StepCount);
        Train(model, a, x, y, 3);
        Train(twin, c, x, y, 3);
        foreach (var (p, q) in model.parameters().Zip(twin.parameters()))
            Assert.True(p.eq(q).all().item<bool>(), "continuing from the loaded state is bit-identical");
        Assert.Contains("adam", Optimizer.Names);
    }
}
