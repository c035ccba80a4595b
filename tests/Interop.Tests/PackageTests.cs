using System.IO.Compression;
using Xunit;

namespace Optimizers.Interop.Tests;

/// The NuGet packages of the core and the facade (what `dotnet fsi build.fsx pack` makes), packed
/// here from the already built output into a temporary folder.
public class PackageTests
{
    [Theory]
    [InlineData("src/Core.FSharp", "Optimizers.Core")]
    [InlineData("src/Interop.CSharp", "Optimizers.Interop")]
    public void ThePackageHoldsReadmeLicenceVersionAndXmlDocs(string project, string id)
    {
        var config = AppContext.BaseDirectory.Contains($"{Path.DirectorySeparatorChar}Debug{Path.DirectorySeparatorChar}") ? "Debug" : "Release";
        var output = Directory.CreateTempSubdirectory("optimizers-pack-");
        try
        {
            var (code, log) = Fixtures.RunProcess("dotnet", $"pack {project} -c {config} --no-build -nologo -o \"{output.FullName}\"");
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
            using var doc = new StreamReader(zip.GetEntry($"lib/net10.0/{id}.xml")!.Open());
            Assert.Contains("<member name=", doc.ReadToEnd());
            using var readme = new StreamReader(zip.GetEntry("README.md")!.Open());
            Assert.Contains("Using it from C#", readme.ReadToEnd());
        }
        finally { output.Delete(true); }
    }
}
