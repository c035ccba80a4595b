/// The `bench` verb and the bandwidth kernels it compares against (src/Experiments/Bench.fs,
/// Bandwidth.fs): the table is printed with every row and target, and each bandwidth kernel's rate
/// is the bytes it moves over its best time. The numbers themselves are measured by `bench`, never
/// checked here.
module Optimizers.Tests.BenchTests

open Expecto
open TorchSharp
open Optimizers.Tests.Check

[<Tests>]
let tests =
    testList "bench" [
        // Sequenced: the bench sets globals (TorchSharp's thread count, Kernel.useSimd, Memory.trimEvery).
        testSequenced (testCase "bench --quick with tiny sizes runs and prints its table and the targets" (fun () ->
            let code, out, err =
                cli
                    [ "bench"; "--quick"; "--params"; "3000"; "--tensors"; "3"; "--steps"; "2"; "--memory-steps"; "20"
                      "--memory-params"; "6000"; "--threads"; string (torch.get_num_threads ()); "--jemalloc"; "off"
                      "--hd-steps"; "3"; "--meta-episodes"; "0"; "--meta-iterations"; "2"; "--unroll-params"; "2000" ]
            Expect.equal code 0 $"exit code (stderr: {err})"
            for part in [ "memory-bandwidth bound"; "fast path: fused SIMD kernel"; "TorchSharp in-place fallback"; "torch.optim.Adam"
                          "torch.optim.SGD"; "pure path: fused kernel into new tensors"; "pure path op by op"; "RSS before MB"; "native memory"; "Reproduce: optimizers bench --quick"
                          "torch.optim.AdamW"; "torch.optim.RMSProp"; "torch.optim.Adagrad"; "adam-hd: whole training step"; "adam-hd / adam ="
                          "meta-training on mlp-mnist, T = 20"; "issue 10 target"; "5. adam-hd <= 1.2x adam"
                          "bandwidth kernel"; "read (sum)"; "triad"; "copy (TorchSharp copy_)"; "issue 15, 3. adam fast path <= 1.15x"
                          "differentiable fused step, forward"; "issue 15, 2. adam differentiable step"
                          "issue 15, 2. rmsprop differentiable step"; "issue 15, 2. adagrad differentiable step"
                          "issue 15, 2. adamw differentiable step"; "issue 15, 2. amsgrad differentiable step"; "torch.optim.Adam(amsgrad=True)"
                          "in place: read g, update 3"; "sgdn-hd"; "unroll of T = 20" ] do
                Expect.stringContains out part "the table"))

        testCase "the bandwidth kernels move the bytes they claim, fastest first" <| fun () ->
            let ms = Optimizers.Experiments.Bandwidth.measure [| 150000; 50000 |] 2
            Expect.isGreaterThanOrEqual ms.Length 4 "read, copy, TorchSharp's copy and triad at least"
            Expect.equal (ms |> List.map (fun m -> m.Rate)) (ms |> List.map (fun m -> m.Rate) |> List.sortDescending) "fastest first"
            for m in ms do
                closeTo Tol.high m.Rate (m.BytesPerElement * 200000.0 / (m.BestMs / 1000.0)) $"{m.Name}: rate = bytes / best time"
            Expect.equal (ms |> List.find (fun m -> m.Name = "triad")).BytesPerElement 12.0 "a triad reads two arrays and writes one"
            let traffic = ms |> List.filter (fun m -> m.Name.StartsWith "in place") |> List.map (fun m -> m.BytesPerElement) |> List.sort
            Expect.equal traffic [ 20.0; 28.0; 36.0 ] "the in-place kernels move SGD with momentum's, Adam's and AMSGrad's bytes"

        testCase "bandwidth sittings merge to each kernel's best, fastest first" <| fun () ->
            let m name bytes ms : Optimizers.Experiments.Bandwidth.Measure = { Name = name; BytesPerElement = bytes; BestMs = ms; Rate = bytes / ms }
            let merged = Optimizers.Experiments.Bandwidth.merge [ m "copy" 8.0 2.0; m "triad" 12.0 4.0 ] [ m "copy" 8.0 3.0; m "triad" 12.0 2.0 ]
            Expect.equal (merged |> List.map (fun x -> x.Name, x.BestMs)) [ "triad", 2.0; "copy", 2.0 ] "the best of each, by rate"
    ]
