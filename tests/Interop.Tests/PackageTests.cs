using System.Globalization;
using System.IO.Compression;
using System.Text.RegularExpressions;
using Xunit;

namespace Optimizers.Interop.Tests;

/// The NuGet packages of the core and the facade (what `dotnet fsi build.fsx pack` makes), packed
/// here from the already built output into a temporary folder; and projects outside the
/// repository that use them as a new user would.
public class PackageTests
{
    private static string Config() =>
        AppContext.BaseDirectory.Contains($"{Path.DirectorySeparatorChar}Debug{Path.DirectorySeparatorChar}") ? "Debug" : "Release";

    /// Pack both libraries from the built output into `feed`, with `version` as package version.
    private static void Pack(string feed, string? version = null)
    {
        foreach (var project in new[] { "src/Core.FSharp", "src/Interop.CSharp" })
        {
            var v = version is null ? "" : $" -p:PackageVersion={version}";
            var (code, log) = Fixtures.RunProcess("dotnet", $"pack {project} -c {Config()} --no-build -nologo -o \"{feed}\"{v}", 300);
            Assert.True(code == 0, $"dotnet pack {project} failed:\n{log}");
        }
    }

    [Theory]
    [InlineData("src/Core.FSharp", "Optimizers.Core")]
    [InlineData("src/Interop.CSharp", "Optimizers.Interop")]
    public void ThePackageHoldsReadmeLicenceVersionAndXmlDocs(string project, string id)
    {
        var output = Directory.CreateTempSubdirectory("optimizers-pack-");
        try
        {
            var (code, log) = Fixtures.RunProcess("dotnet", $"pack {project} -c {Config()} --no-build -nologo -o \"{output.FullName}\"");
            Assert.True(code == 0, $"dotnet pack failed:\n{log}");
            var nupkg = Directory.GetFiles(output.FullName, id + ".*.nupkg").Single();
            using var zip = ZipFile.OpenRead(nupkg);
            var entries = zip.Entries.Select(e => e.FullName).ToHashSet();
            Assert.Contains("README.md", entries);
            Assert.Contains("LICENSE", entries);
            Assert.Contains($"lib/net10.0/{id}.dll", entries);
            Assert.Contains($"lib/net10.0/{id}.xml", entries);
            using var nuspec = new StreamReader(zip.GetEntry(id + ".nuspec")!.Open());
            var spec = nuspec.ReadToEnd();
            Assert.Contains("<license type=\"expression\">MIT</license>", spec);
            Assert.Contains("<readme>README.md</readme>", spec);
            Assert.Matches(@"<version>\d+\.\d+\.\d+", spec);
            // the TorchSharp it was built with, exactly
            Assert.Matches(@"<dependency id=""TorchSharp"" version=""\[\d+\.\d+\.\d+\]""", spec);
            using var doc = new StreamReader(zip.GetEntry($"lib/net10.0/{id}.xml")!.Open());
            Assert.Contains("<member name=", doc.ReadToEnd());
            using var readme = new StreamReader(zip.GetEntry("README.md")!.Open());
            Assert.Contains("Use it from your own project", readme.ReadToEnd());
            if (id == "Optimizers.Core")
            {
                // what a consuming project's build needs: the targets, the shipped models and MNIST subset
                Assert.Contains("buildTransitive/Optimizers.Core.targets", entries);
                foreach (var kind in new[] { "hyperadam", "dmoptimizer", "rnnprop" })
                    Assert.Contains($"optimizers/models/{kind}.bin", entries);
                Assert.Contains("optimizers/data/mnist-subset/train-images-idx3-ubyte.gz", entries);
                Assert.Contains("optimizers/data/mnist-subset/t10k-labels-idx1-ubyte.gz", entries);
                Assert.Contains("optimizers/data/mnist-20k/train-images-idx3-ubyte.gz", entries);
            }
            else
                Assert.Contains("<dependency id=\"Optimizers.Core\"", spec);
        }
        finally { output.Delete(true); }
    }

    /// The fenced blocks of a language in the README's "Use it from your own project" section.
    private static List<string> ReadmeBlocks(string language)
    {
        var readme = File.ReadAllText(Path.Combine(Fixtures.RepoRoot(), "README.md"));
        int start = readme.IndexOf("## Use it from your own project", StringComparison.Ordinal);
        Assert.True(start >= 0, "the README has no section \"Use it from your own project\"");
        int end = readme.IndexOf("\n## ", start + 5, StringComparison.Ordinal);
        var section = readme[start..(end < 0 ? readme.Length : end)];
        return Regex.Matches(section, "```" + language + "\n(.*?)```", RegexOptions.Singleline).Select(m => m.Groups[1].Value).ToList();
    }

    /// "step K: loss X" lines of the programs' output.
    private static SortedDictionary<int, double> Losses(string output)
    {
        var losses = new SortedDictionary<int, double>();
        foreach (Match m in Regex.Matches(output, @"^step (\d+): loss ([0-9.]+)\s*$", RegexOptions.Multiline))
            losses[int.Parse(m.Groups[1].Value)] = double.Parse(m.Groups[2].Value, CultureInfo.InvariantCulture);
        return losses;
    }

    // The README's loop in F#, for the F# consumer; it first reports the OpenMP setting that the
    // package's startup hook made before Main (the test removes both variables from its environment).
    private const string FSharpProgram = """
        open Optimizers.Interop
        open TorchSharp

        [<EntryPoint>]
        let main args =
            printfn "OpenMP at start: GOMP_SPINCOUNT=%s" (match System.Environment.GetEnvironmentVariable "GOMP_SPINCOUNT" with null -> "unset" | v -> v)
            let name = if args.Length > 0 then args[0] else "hyperadam"
            let steps = if args.Length > 1 then int args[1] else 200
            let mnist = Mnist.Load()
            torch.manual_seed 0L |> ignore
            let model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784L, 20L), torch.nn.Sigmoid(), torch.nn.Linear(20L, 10L))
            use opt = if name = "hyperadam" then Optimizer.HyperAdam(model.parameters()) else Optimizer.Create(name, model.parameters())
            for step in 1 .. steps do
                use _ = torch.NewDisposeScope()
                let batch = torch.randint(0L, mnist.Train.Count, [| 128L |])
                opt.zero_grad()
                let loss = torch.nn.functional.cross_entropy(model.forward(mnist.Train.Images[batch]), mnist.Train.Labels[batch])
                loss.backward()
                opt.step() |> ignore
                if step = 1 || step % 50 = 0 then printfn "step %d: loss %.4f" step (loss.item<float32>())
            0
        """;

    /// A C# console project outside the repository that references the facade by ProjectReference
    /// and imports the core's build targets, as the README's section says: it builds, loads
    /// LibTorch, finds the shipped HyperAdam and MNIST beside the program, and trains.
    [Fact]
    public void AProjectOutsideTheRepositoryWorksByProjectReference()
    {
        var root = Directory.CreateTempSubdirectory("optimizers-projectref-");
        try
        {
            var repo = Fixtures.RepoRoot();
            var readme = File.ReadAllText(Path.Combine(repo, "README.md"));
            var import = Regex.Match(readme, "`(<Import Project=\"/path/to/Optimizers/([^\"]+)\" />)`");
            Assert.True(import.Success, "the README names the targets file a ProjectReference consumer imports");
            File.WriteAllText(Path.Combine(root.FullName, "Directory.Build.props"), "<Project />");
            File.WriteAllText(Path.Combine(root.FullName, "Directory.Build.targets"), "<Project />");
            var xml = ReadmeBlocks("xml").Single();
            var reference = $"<ProjectReference Include=\"{Path.Combine(repo, "src", "Interop.CSharp", "Interop.CSharp.csproj")}\" />";
            var csproj = Regex.Replace(xml, "<PackageReference Include=\"Optimizers.Interop\"[^>]*/>", reference)
                .Replace("</Project>", $"  <Import Project=\"{Path.Combine(repo, import.Groups[2].Value)}\" />\n</Project>");
            Assert.Contains(reference, csproj);
            File.WriteAllText(Path.Combine(root.FullName, "MyTraining.csproj"), csproj);
            File.WriteAllText(Path.Combine(root.FullName, "Program.cs"), ReadmeBlocks("csharp").Single());
            var (code, log) = Fixtures.RunProcess("dotnet", $"build -c {Config()} -nologo -clp:NoSummary", 900, directory: root.FullName);
            Assert.True(code == 0, $"the build failed:\n{log}");
            var output = Path.Combine(root.FullName, "bin", Config(), "net10.0", "linux-x64");
            Assert.True(File.Exists(Path.Combine(output, "models", "hyperadam.bin")), "models/hyperadam.bin is not beside the program");
            Assert.True(File.Exists(Path.Combine(output, "data", "mnist-20k", "train-images-idx3-ubyte.gz")), "the default MNIST set is not beside the program");
            foreach (var optimizer in new[] { "adam", "adam-hd", "hyperadam" })
            {
                var (rc, text) = Fixtures.RunProcess(Path.Combine(output, "MyTraining"), $"{optimizer} 50", 600, directory: root.FullName);
                Assert.True(rc == 0, $"{optimizer}: exit code {rc}:\n{text}");
                var losses = Losses(text);
                Assert.True(losses.ContainsKey(1) && losses.ContainsKey(50) && losses[50] < losses[1] - 0.1, $"{optimizer}: the loss did not fall in 50 steps:\n{text}");
            }
        }
        finally { try { root.Delete(true); } catch (IOException) { } }
    }

    /// A new user's C# console project made from the README's section alone, and an F# one with
    /// the same package references, in a temporary folder outside the repository: they restore
    /// the freshly packed packages from a local folder feed (and TorchSharp-cpu from NuGet), build,
    /// find the shipped HyperAdam and MNIST beside the program, load LibTorch, and train MlpMnist
    /// 50 steps with Adam, Adam-HD and the default HyperAdam with a falling loss. Then the README's
    /// F# script does the same with the core package alone, under `dotnet fsi`.
    [Fact]
    public void ProjectsOutsideTheRepositoryBuildAgainstThePackagesAndTrain()
    {
        var root = Directory.CreateTempSubdirectory("optimizers-consumer-");
        // a version of its own, so that no earlier package of the same version in the NuGet cache is used
        var version = "0.0.0-consumer." + DateTime.UtcNow.ToString("yyyyMMddHHmmssfff", CultureInfo.InvariantCulture);
        var cache = Environment.GetEnvironmentVariable("NUGET_PACKAGES") is { Length: > 0 } c ? c
            : Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".nuget", "packages");
        try
        {
            var feed = Path.Combine(root.FullName, "feed");
            Pack(feed, version);
            // isolate from anything above the temporary folder; the local feed on top of the default sources
            File.WriteAllText(Path.Combine(root.FullName, "Directory.Build.props"), "<Project />");
            File.WriteAllText(Path.Combine(root.FullName, "Directory.Build.targets"), "<Project />");
            File.WriteAllText(Path.Combine(root.FullName, "nuget.config"), $"""
                <?xml version="1.0" encoding="utf-8"?>
                <configuration>
                  <packageSources>
                    <add key="optimizers" value="{feed}" />
                  </packageSources>
                </configuration>
                """);

            var xml = ReadmeBlocks("xml");
            var cs = ReadmeBlocks("csharp");
            Assert.True(xml.Count == 1 && cs.Count == 1, $"one project file and one Program.cs in the README's section, found {xml.Count} and {cs.Count}");
            Assert.Contains("<PackageReference Include=\"Optimizers.Interop\" Version=\"0.1.0\" />", xml[0]);
            var csproj = xml[0].Replace("Include=\"Optimizers.Interop\" Version=\"0.1.0\"", $"Include=\"Optimizers.Interop\" Version=\"{version}\"");
            Assert.True(cs[0].Split('\n').Length <= 30, "the README's program should stay short");

            var projects = new[]
            {
                ("csharp", "MyTraining.csproj", csproj, "Program.cs", cs[0]),
                ("fsharp", "MyTrainingFs.fsproj", csproj.Replace("<ImplicitUsings>enable</ImplicitUsings>", "").Replace("</PropertyGroup>",
                    "</PropertyGroup>\n  <ItemGroup>\n    <Compile Include=\"Program.fs\" />\n  </ItemGroup>"), "Program.fs", FSharpProgram),
            };
            var noSpin = new Dictionary<string, string?> { ["GOMP_SPINCOUNT"] = null, ["OMP_WAIT_POLICY"] = null };
            foreach (var (dir, projectFile, project, sourceFile, source) in projects)
            {
                var folder = Directory.CreateDirectory(Path.Combine(root.FullName, dir)).FullName;
                File.WriteAllText(Path.Combine(folder, projectFile), project);
                File.WriteAllText(Path.Combine(folder, sourceFile), source);
                var (code, log) = Fixtures.RunProcess("dotnet", "build -c Release -nologo -clp:NoSummary", 900, directory: folder);
                Assert.True(code == 0, $"{dir}: the build failed:\n{log}");
                var output = Path.Combine(folder, "bin", "Release", "net10.0", "linux-x64");
                var exe = Path.Combine(output, Path.GetFileNameWithoutExtension(projectFile));
                Assert.True(File.Exists(exe), $"{dir}: no {exe}");
                Assert.True(File.Exists(Path.Combine(output, "models", "hyperadam.bin")), $"{dir}: models/hyperadam.bin is not beside the program");
                Assert.True(File.Exists(Path.Combine(output, "data", "mnist-20k", "train-images-idx3-ubyte.gz")), $"{dir}: the default MNIST set is not beside the program");
                Assert.Contains("\"STARTUP_HOOKS\": \"Optimizers.Core\"", File.ReadAllText(Path.Combine(output, Path.GetFileNameWithoutExtension(projectFile) + ".runtimeconfig.json")));
                Assert.Contains("GLIBCXX_3.4.32 marked weak", log);
                foreach (var optimizer in new[] { "adam", "adam-hd", "hyperadam" })
                {
                    var (rc, text) = Fixtures.RunProcess(exe, $"{optimizer} 50", 600, noSpin, folder);
                    Assert.True(rc == 0, $"{dir} {optimizer}: exit code {rc}:\n{text}");
                    var losses = Losses(text);
                    Assert.True(losses.ContainsKey(1) && losses.ContainsKey(50), $"{dir} {optimizer}: no loss at steps 1 and 50 in:\n{text}");
                    Assert.True(losses[50] < losses[1] - 0.1, $"{dir} {optimizer}: the loss went from {losses[1]} to {losses[50]} in 50 steps");
                    if (dir == "fsharp")
                        Assert.Contains("OpenMP at start: GOMP_SPINCOUNT=1000", text); // set by the startup hook before Main
                }
            }

            // The README's F# script: no build, so the core must make LibTorch loadable itself (a
            // patched copy under XDG_DATA_HOME, here a folder of the test's) and find the models and
            // MNIST in its package.
            var scripts = ReadmeBlocks("fsharp");
            Assert.True(scripts.Count == 1, $"one F# script in the README's section, found {scripts.Count}");
            Assert.Contains("#i \"nuget: /path/to/Optimizers/artifacts\"", scripts[0]);
            Assert.Contains("#r \"nuget: Optimizers.Core, 0.1.0\"", scripts[0]);
            var scriptDir = Directory.CreateDirectory(Path.Combine(root.FullName, "script")).FullName;
            var script = scripts[0].Replace("/path/to/Optimizers/artifacts", feed).Replace("Optimizers.Core, 0.1.0", $"Optimizers.Core, {version}");
            File.WriteAllText(Path.Combine(scriptDir, "train.fsx"), script);
            var dataHome = Path.Combine(root.FullName, "data-home");
            var (src, stext) = Fixtures.RunProcess("dotnet", "fsi train.fsx", 900,
                new Dictionary<string, string?>(noSpin) { ["XDG_DATA_HOME"] = dataHome }, scriptDir);
            Assert.True(src == 0, $"the script failed (exit code {src}):\n{stext}");
            Assert.True(File.Exists(Path.Combine(dataHome, "optimizers", "libtorchsharp-0.107.0", "libLibTorchSharp.so")), $"no patched copy under {dataHome}:\n{stext}");
            foreach (var optimizer in new[] { "adam", "adam-hd", "hyperadam" })
            {
                var at = new SortedDictionary<int, double>();
                foreach (Match m in Regex.Matches(stext, $@"^{Regex.Escape(optimizer)} step (\d+): loss ([0-9.]+)\s*$", RegexOptions.Multiline))
                    at[int.Parse(m.Groups[1].Value)] = double.Parse(m.Groups[2].Value, CultureInfo.InvariantCulture);
                Assert.True(at.ContainsKey(1) && at.ContainsKey(50), $"script {optimizer}: no loss at steps 1 and 50 in:\n{stext}");
                Assert.True(at[50] < at[1] - 0.1, $"script {optimizer}: the loss went from {at[1]} to {at[50]} in 50 steps");
            }
        }
        finally
        {
            try { root.Delete(true); } catch (IOException) { }
            foreach (var id in new[] { "optimizers.core", "optimizers.interop" })
            {
                var d = Path.Combine(cache, id, version);
                if (Directory.Exists(d)) Directory.Delete(d, true);
            }
        }
    }
}
