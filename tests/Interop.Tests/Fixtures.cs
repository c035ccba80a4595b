using Optimizers.Interop;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

// torch.manual_seed is process-wide: tests that seed and then draw must not interleave.
[assembly: CollectionBehavior(DisableTestParallelization = true)]

namespace Optimizers.Interop.Tests;

/// Small models, data and helpers shared by the facade's tests.
internal static class Fixtures
{
    /// A tiny regression model and data, the same every time.
    public static (nn.Module<Tensor, Tensor> model, Tensor x, Tensor y) Problem(int seed = 1)
    {
        torch.manual_seed(seed);
        var model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 1));
        var x = torch.randn(16, 3);
        var y = torch.randn(16, 1);
        return (model, x, y);
    }

    /// `steps` ordinary training steps; the last loss.
    public static float Train(nn.Module<Tensor, Tensor> model, Optimizer opt, Tensor x, Tensor y, int steps, LRScheduler? sched = null)
    {
        float loss = 0;
        for (int i = 0; i < steps; i++)
        {
            using var scope = torch.NewDisposeScope();
            opt.zero_grad();
            var l = nn.functional.mse_loss(model.forward(x), y);
            l.backward();
            opt.step();
            sched?.step();
            loss = l.item<float>();
        }
        return loss;
    }

    /// The repository's root (the folder with Optimizers.sln above the test's output).
    public static string RepoRoot()
    {
        var d = new DirectoryInfo(AppContext.BaseDirectory);
        while (d is not null && !File.Exists(Path.Combine(d.FullName, "Optimizers.sln"))) d = d.Parent;
        return d?.FullName ?? throw new DirectoryNotFoundException("Optimizers.sln not found above " + AppContext.BaseDirectory);
    }

    /// Run a program in the repository root; its exit code and output (stdout then stderr).
    /// `environment`: variables to set, or with a null value to remove; `directory`: where it runs
    /// (default: the repository root).
    public static (int code, string output) RunProcess(string file, string arguments, int timeoutSeconds = 120,
        IReadOnlyDictionary<string, string?>? environment = null, string? directory = null)
    {
        var psi = new System.Diagnostics.ProcessStartInfo(file, arguments)
        {
            WorkingDirectory = directory ?? RepoRoot(),
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        psi.Environment["DOTNET_CLI_TELEMETRY_OPTOUT"] = "1";
        psi.Environment["DOTNET_NOLOGO"] = "1";
        foreach (var (k, v) in environment ?? new Dictionary<string, string?>())
            if (v is null) psi.Environment.Remove(k); else psi.Environment[k] = v;
        using var p = System.Diagnostics.Process.Start(psi)!;
        var stderr = p.StandardError.ReadToEndAsync();
        var stdout = p.StandardOutput.ReadToEnd();
        if (!p.WaitForExit(timeoutSeconds * 1000))
        {
            p.Kill(true);
            throw new TimeoutException($"{file} {arguments} ran over {timeoutSeconds} s");
        }
        return (p.ExitCode, stdout + stderr.Result);
    }

    public static void AssertClose(IEnumerable<Tensor> a, IEnumerable<Tensor> b, string what, double rtol = 1e-5, double atol = 1e-6)
    {
        var xs = a.ToArray();
        var ys = b.ToArray();
        Assert.Equal(xs.Length, ys.Length);
        for (int i = 0; i < xs.Length; i++)
            Assert.True(xs[i].allclose(ys[i], rtol: rtol, atol: atol),
                $"{what}: tensor {i} differs by up to {(xs[i] - ys[i]).abs().max().ToDouble()}");
    }

    public static void AssertEqual(IEnumerable<Tensor> a, IEnumerable<Tensor> b, string what)
    {
        foreach (var (p, q) in a.Zip(b))
            Assert.True(p.eq(q).all().item<bool>(), what);
    }
}
