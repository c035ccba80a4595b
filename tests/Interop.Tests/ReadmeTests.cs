using Optimizers.Interop;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace Optimizers.Interop.Tests;

/// The snippets of the README's "Using it from C#", as written there (small data), so that they
/// keep compiling and running.
public class ReadmeTests
{
    private static (Tensor, Tensor) NextBatch() => (torch.randn(16, 784), torch.randint(0, 10, new long[] { 16 }));

    [Fact]
    public void TheReadmeSnippetsRun()
    {
        var model = nn.Sequential(nn.Linear(784, 128), nn.ReLU(), nn.Linear(128, 10));
        using (var opt = Optimizer.Adam(model.parameters(), lr: 1e-3))
        {
            var sched = LRScheduler.CosineAnnealingLR(opt, T_max: 20);
            for (int i = 0; i < 20; i++)
            {
                using var scope = torch.NewDisposeScope();
                var (x, y) = NextBatch();
                opt.zero_grad();
                var loss = nn.functional.cross_entropy(model.forward(x), y);
                loss.backward();
                opt.step();
                sched.step();
            }
            var path = Path.GetTempFileName();
            opt.save_state_dict(path);
            opt.load_state_dict(path);
            File.Delete(path);
            Assert.Equal(20, opt.StepCount);
        }

        Assert.Contains("adam-hd", Optimizer.Names);
        var info = Optimizer.Describe("radam");
        Assert.Contains(info.Options, o => o.Name == "threshold" && o.Default == "5");
        using (var la = Optimizer.Create("lookahead", model.parameters(),
            new Dictionary<string, object> { ["inner"] = "sgd", ["lr"] = 0.1, ["momentum"] = 0.9, ["k"] = 5 }))
        {
            Assert.Equal("lookahead", la.Name);
            Assert.Equal("sgd", la.ParamGroups[0].Options["inner"]);
        }

        using (var ha = Optimizer.HyperAdam(model.parameters()))
            Assert.Equal("hyperadam", ha.Name);

        var body = nn.Linear(4, 4);
        var head = nn.Linear(4, 2);
        var extra = nn.Linear(2, 2);
        using (var opt = Optimizer.Create("adam", new[] {
                new ParamGroup(body.parameters()),
                new ParamGroup(head.parameters(), new Dictionary<string, object> { ["lr"] = 1e-2, ["beta1"] = 0.8 }) },
            new Dictionary<string, object> { ["lr"] = 1e-3 }))
        {
            opt.add_param_group(new ParamGroup(extra.parameters(), new Dictionary<string, object> { ["weight_decay"] = 1e-4 }));
            opt.ParamGroups[1].LearningRate = 5e-3;
            var s = LRScheduler.Create(opt, "warmup-cosine", steps: 1000, options: new Dictionary<string, object> { ["warmup_steps"] = 100 });
            Assert.Equal(new[] { 0.0, 0.0, 0.0 }, s.get_last_lr());
            s.step();
            Assert.Equal(1e-3 / 100, s.get_last_lr()[0], 12);
            Assert.Equal(1e-2 / 100, s.get_last_lr()[1], 12);     // from the group's own rate
        }

        var w = torch.tensor(new[] { 1.0f, -2.0f }).requires_grad_();
        Tensor Loss(IReadOnlyList<Tensor> ps) => (ps[0] * ps[0]).sum();
        var lr = torch.tensor(0.1).requires_grad_();
        var adam = GradientTransformation.Create("adam", tensors: new Dictionary<string, Tensor> { ["lr"] = lr });
        var ps = new[] { w };
        var state = adam.Init(ps);
        var g = torch.autograd.grad(new[] { Loss(ps) }, ps, create_graph: true, retain_graph: true);
        var next = adam.Step(g, state, ps);
        var dLdlr = torch.autograd.grad(new[] { Loss(next.Parameters) }, new[] { lr })[0];
        // One Adam step moves each coordinate by -lr * sign(g) (up to eps): dL/dlr = sum 2 w1 (-sign w0).
        var w1 = next.Parameters[0].detach();
        Assert.Equal((2 * w1 * -w.detach().sign()).sum().ToDouble(), dLdlr.ToDouble(), 4);
    }
}
