using System.Globalization;
using System.Text.RegularExpressions;
using Xunit;

namespace Optimizers.Interop.Tests;

/// The examples/ programs, built by the solution build, run with tiny step counts.
public class ExamplesTests
{
    private static (int code, string output) Run(string file, string arguments) => Fixtures.RunProcess(file, arguments);

    /// The C# example as built in the same configuration as these tests.
    private static string MnistMlp()
    {
        var config = AppContext.BaseDirectory.Contains($"{Path.DirectorySeparatorChar}Debug{Path.DirectorySeparatorChar}") ? "Debug" : "Release";
        var exe = Path.Combine(Fixtures.RepoRoot(), "examples", "MnistMlp", "bin", config, "net10.0", "linux-x64", "mnist-mlp");
        Assert.True(File.Exists(exe), $"{exe} is not built; build the solution first (dotnet fsi build.fsx build)");
        return exe;
    }

    private static double Accuracy(string output)
    {
        var m = Regex.Match(output, @"test accuracy: ([0-9.]+) after (\d+) steps");
        Assert.True(m.Success, "no test accuracy line in:\n" + output);
        return double.Parse(m.Groups[1].Value, CultureInfo.InvariantCulture);
    }

    /// The example references the facade by ProjectReference: the shipped HyperAdam is beside it
    /// (the core's build copies models/*.bin to every project that references it), the startup
    /// hook set the OpenMP spin limit before Main (both variables are removed from its
    /// environment here), and 50 steps of each optimizer lower the loss.
    [Theory]
    [InlineData("adam")]
    [InlineData("adam-hd")]
    [InlineData("hyperadam")]
    public void TheCSharpExampleTrainsAndPrintsTheTestAccuracy(string optimizer)
    {
        const int steps = 50;
        var (code, output) = Fixtures.RunProcess(MnistMlp(), $"{steps} {optimizer}", 300,
            new Dictionary<string, string?> { ["GOMP_SPINCOUNT"] = null, ["OMP_WAIT_POLICY"] = null });
        Assert.True(code == 0, $"exit code {code}:\n{output}");
        Assert.Contains("OpenMP at start: GOMP_SPINCOUNT=1000", output);
        Assert.Contains($"optimizer: {optimizer}, {steps} steps", output);
        var losses = Regex.Matches(output, @"^step\s+(\d+)\s+loss ([0-9.]+)", RegexOptions.Multiline)
            .ToDictionary(m => int.Parse(m.Groups[1].Value), m => double.Parse(m.Groups[2].Value, CultureInfo.InvariantCulture));
        Assert.True(losses.ContainsKey(1) && losses.ContainsKey(steps), "losses at steps 1 and 50 expected in:\n" + output);
        Assert.True(losses[steps] < losses[1] - 0.1, $"{optimizer}: the loss went from {losses[1]} to {losses[steps]} in {steps} steps");
        double accuracy = Accuracy(output);
        Assert.InRange(accuracy, 0.0, 1.0);
        if (optimizer == "adam-hd")
            Assert.Contains("learned learning rate 0/lr:", output);
    }

    [Fact]
    public void TheCSharpExampleRefusesBadArguments()
    {
        var (code, output) = Run(MnistMlp(), "10 adamz");
        Assert.Equal(2, code);
        Assert.Contains("unknown optimizer 'adamz'", output);
        (code, output) = Run(MnistMlp(), "-3");
        Assert.Equal(2, code);
        Assert.Contains("usage: mnist-mlp", output);
    }

    [Fact]
    public void TheFSharpHypergradientScriptRuns()
    {
        MnistMlp(); // the script loads this build's output
        var (code, output) = Run("dotnet", "fsi examples/hypergradient.fsx 12");
        Assert.True(code == 0, $"exit code {code}:\n{output}");
        var rows = Regex.Matches(output, @"^\s+(0\.0001|0\.001|0\.01)\s+([0-9.]+)\s+([0-9.]+)\s+([0-9.eE+-]+)\s*$", RegexOptions.Multiline);
        Assert.True(rows.Count == 3, "three rows of alpha_0, Adam, Adam-HD, learned alpha expected in:\n" + output);
        foreach (Match r in rows)
            Assert.NotEqual(r.Groups[1].Value, r.Groups[4].Value); // the learned rate moved from alpha_0
    }
}
