/// The engine: LibTorch loads on this machine (the native fix-up of Directory.Build.targets), and
/// higher-order gradients flow through unrolled optimizer steps of the pure core.
module Optimizers.Tests.NativeTests

open System
open System.Runtime.InteropServices
open Expecto
open TorchSharp
open Optimizers
open Optimizers.Handcrafted
open Optimizers.Tests.Check

[<DllImport("libc")>]
extern nativeint getenv(string name)

/// Unroll `steps` steps of `opt` on `loss` from x0, keeping the graph (create_graph), and return
/// the loss at the end: a differentiable function of every hyperparameter tensor.
let unrolledLoss (opt: Transformation) (loss: Tensor -> Tensor) (x0: float list) (steps: int) =
    let mutable p = tree1 x0
    let mutable s = opt.Init p
    for _ in 1..steps do
        let x = p["x"]
        let x = if x.requires_grad then x else x.requires_grad_(true)
        let l = loss x
        let g = torch.autograd.grad([| l |], [| x |], retain_graph = true, create_graph = true)
        let p', s' = Transform.step opt (Tree.single "x" g[0]) s (Tree.single "x" x)
        p <- p'
        s <- s'
    loss (p["x"])

let rosen (x: Tensor) = (1.0 - x[0]).square() + 100.0 * (x[1] - x[0].square()).square()

/// d(loss)/d(h) by autograd, where the optimizer is built from the tensor h.
let hypergrad (make: Tensor -> Transformation) (h0: float) loss x0 steps =
    let h = torch.tensor(h0, dtype = f64, requires_grad = true)
    let l = unrolledLoss (make h) loss x0 steps
    let g = torch.autograd.grad([| l |], [| h |])
    g[0].ToDouble()

/// The loss after unrolled steps without a graph.
let unrolledLossNoGrad (opt: Transformation) (loss: Tensor -> Tensor) (x0: float list) (steps: int) =
    let mutable p = tree1 x0
    let mutable s = opt.Init p
    for _ in 1..steps do
        let x = p["x"].detach().requires_grad_(true)
        let g = torch.autograd.grad([| loss x |], [| x |])
        let p', s' = Transform.step opt (Tree.single "x" g[0]) s (Tree.single "x" (x.detach()))
        p <- p'
        s <- s'
    (loss (p["x"])).ToDouble()

/// The same derivative by central finite differences (float64).
let finiteDiff (make: Tensor -> Transformation) (h0: float) loss x0 steps =
    let at (v: float) =
        let h = torch.tensor(v, dtype = f64)
        unrolledLossNoGrad (make h) loss x0 steps
    let d = 1e-6 * max 1.0 (abs h0)
    (at (h0 + d) - at (h0 - d)) / (2.0 * d)

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

        testCase "second-order gradient through two unrolled SGD steps equals the closed form" <| fun () ->
            // f(x) = a/2 x^2; two steps give x2 = x0 (1 - lr a)^2, so
            // L = a/2 x0^2 (1 - lr a)^4 and dL/dlr = -2 a^2 x0^2 (1 - lr a)^3.
            let a, x0, lr = 3.0, 2.0, 0.1
            let make (h: Tensor) = Sgd.create { Sgd.defaults with Lr = Hyper.Learnable h }
            let g = hypergrad make lr (fun x -> 0.5 * a * x.square().sum()) [ x0 ] 2
            let expected = -2.0 * a * a * x0 * x0 * (1.0 - lr * a) ** 3.0
            Expect.floatClose Accuracy.veryHigh g expected "dL/dlr"

        testCase "hypergradients through unrolled Adam steps match finite differences" <| fun () ->
            let loss = rosen
            let x0 = [ -1.5; 2.0 ]
            let lrMake (h: Tensor) = Adam.create { Adam.defaults with Lr = Hyper.Learnable h }
            let b1Make (h: Tensor) = Adam.create { Adam.defaults with Lr = Hyper.Fixed 0.01; Beta1 = Hyper.Learnable h }
            let b2Make (h: Tensor) = Adam.create { Adam.defaults with Lr = Hyper.Fixed 0.01; Beta2 = Hyper.Learnable h }
            for name, make, h0 in [ "lr", lrMake, 0.01; "beta1", b1Make, 0.9; "beta2", b2Make, 0.999 ] do
                let g = hypergrad make h0 loss x0 5
                let fd = finiteDiff make h0 loss x0 5
                Expect.floatClose { absolute = 1e-7; relative = 1e-5 } g fd $"dL/d{name} after 5 Adam steps"
    ]
