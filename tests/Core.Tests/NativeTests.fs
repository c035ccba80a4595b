/// The engine: LibTorch loads on this machine (the native fix-up of Directory.Build.targets), and
/// OpenMP spinning is limited before it loads. Higher-order gradients through unrolled optimizer
/// steps are in HypergradientTests.fs.
module Optimizers.Tests.NativeTests

open System
open System.Runtime.InteropServices
open Expecto
open TorchSharp
open Optimizers

[<DllImport("libc")>]
extern nativeint getenv(string name)

/// The flags of every version need named `version` in an ELF64 file's .gnu.version_r section
/// (read independently of the MSBuild task that patches them).
let versionNeedFlags (path: string) (version: string) : int list =
    let b = System.IO.File.ReadAllBytes path
    let u16 (o: int64) = int (System.BitConverter.ToUInt16(b, int o))
    let u32 (o: int64) = int64 (System.BitConverter.ToUInt32(b, int o))
    let i64 (o: int64) = System.BitConverter.ToInt64(b, int o)
    let shoff, shsz, shnum = i64 0x28L, int64 (u16 0x3AL), u16 0x3CL
    [ for s in 0L .. int64 shnum - 1L do
        let sh = shoff + s * shsz
        if u32 (sh + 4L) = 0x6ffffffeL then // SHT_GNU_verneed
            let strtab = i64 (shoff + u32 (sh + 0x28L) * shsz + 0x18L)
            let mutable vn = i64 (sh + 0x18L)
            for _ in 1L .. u32 (sh + 0x2CL) do
                let mutable vna = vn + u32 (vn + 8L)
                for _ in 1 .. u16 (vn + 2L) do
                    let name = let p = int (strtab + u32 (vna + 8L)) in System.Text.Encoding.ASCII.GetString(b, p, System.Array.IndexOf(b, 0uy, p) - p)
                    if name = version then yield u16 (vna + 4L)
                    vna <- vna + u32 (vna + 12L)
                vn <- vn + u32 (vn + 12L) ]

[<Tests>]
let tests =
    testList "native" [
        testCase "the LibTorchSharp fix-up marks GLIBCXX_3.4.32 weak in the output copy only" <| fun () ->
            if not (System.OperatingSystem.IsLinux()) then skiptest "the fix-up is for Linux"
            let output = System.IO.Path.Combine(System.AppContext.BaseDirectory, "libLibTorchSharp.so")
            let packages =
                match System.Environment.GetEnvironmentVariable "NUGET_PACKAGES" with
                | null | "" -> System.IO.Path.Combine(System.Environment.GetFolderPath System.Environment.SpecialFolder.UserProfile, ".nuget", "packages")
                | p -> p
            let cache = System.IO.Path.Combine(packages, "torchsharp", "0.107.0", "runtimes", "linux-x64", "native", "libLibTorchSharp.so")
            let weak = 2
            let outFlags = versionNeedFlags output "GLIBCXX_3.4.32"
            Expect.isNonEmpty outFlags "the output copy needs GLIBCXX_3.4.32"
            Expect.all outFlags (fun f -> f &&& weak = weak) "and the need is weak"
            if System.IO.File.Exists cache then
                let cacheFlags = versionNeedFlags cache "GLIBCXX_3.4.32"
                Expect.all cacheFlags (fun f -> f &&& weak = 0) "the NuGet cache copy is untouched"

        testCase "the test runner limited OpenMP spinning before LibTorch loaded; a user's setting wins" <| fun () ->
            let managed name = Environment.GetEnvironmentVariable name
            let native name = Marshal.PtrToStringAnsi(getenv name)
            // Main called OpenMp.limitSpinning: unless the runner's environment chose, the native
            // environment, which LibTorch reads, has the spin count
            if isNull (managed "OMP_WAIT_POLICY") then
                Expect.equal (native "GOMP_SPINCOUNT") (managed "GOMP_SPINCOUNT") "native and managed agree"
                Expect.isNotNull (managed "GOMP_SPINCOUNT") "a spin count is set"
            let saved = managed "GOMP_SPINCOUNT", managed "OMP_WAIT_POLICY"
            try
                Environment.SetEnvironmentVariable("GOMP_SPINCOUNT", null)
                Environment.SetEnvironmentVariable("OMP_WAIT_POLICY", "ACTIVE")
                Expect.equal (OpenMp.limitSpinning ()) ("OMP_WAIT_POLICY", "ACTIVE") "a wait policy already set is kept"
                Environment.SetEnvironmentVariable("OMP_WAIT_POLICY", null)
                Environment.SetEnvironmentVariable("GOMP_SPINCOUNT", "5")
                Expect.equal (OpenMp.limitSpinning ()) ("GOMP_SPINCOUNT", "5") "a spin count already set is kept"
                Environment.SetEnvironmentVariable("GOMP_SPINCOUNT", null)
                Expect.equal (OpenMp.limitSpinning ()) ("GOMP_SPINCOUNT", OpenMp.spinCount) "neither set: the short spin"
            finally
                Environment.SetEnvironmentVariable("GOMP_SPINCOUNT", fst saved)
                Environment.SetEnvironmentVariable("OMP_WAIT_POLICY", snd saved)

        testCase "LibTorch loads and a tensor can be created" <| fun () ->
            use t = torch.ones(3L)
            Expect.equal (t.sum().ToDouble()) 3.0 "sum of three ones"
    ]
