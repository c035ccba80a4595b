// Seconds per 100 Adam steps (batch 128) on the image tasks, through Run.optimize (one
// DisposeScope per step, Memory.afterStep after each). Build first, then from the repository root:
//   dotnet build tests/Core.Tests && dotnet fsi bench/task-speed.fsx [repeats] [threads] [cifar-dir]
// It loads the built output of tests/Core.Tests (whose libLibTorchSharp.so carries the GLIBCXX
// fix-up). Without a CIFAR-10 directory, ConvCifar_1 runs on 2,000 random CIFAR-format records
// written to a temporary folder: the speed does not depend on the pixel values.
// The machine's load average is printed with each run: LibTorch's threads slow down by up to 10x
// when other processes compete for the cores, so compare runs made under similar load.
#r "../tests/Core.Tests/bin/Debug/net10.0/linux-x64/TorchSharp.dll"
#r "../tests/Core.Tests/bin/Debug/net10.0/linux-x64/Optimizers.Core.dll"

open System
open System.Diagnostics
open System.IO
open TorchSharp
open Optimizers
open Optimizers.Data
open Optimizers.Tasks

let args = fsi.CommandLineArgs |> Array.skip 1
let repeats = if args.Length > 0 then int args[0] else 3
if args.Length > 1 then torch.set_num_threads(int args[1])
let cifarDir =
    if args.Length > 2 then args[2]
    else
        let dir = Path.Combine(Path.GetTempPath(), "optimizers-bench-cifar")
        Directory.CreateDirectory dir |> ignore
        let rng = Rng(11UL)
        for name, n in [ ("data_batch_1.bin", 2000); ("test_batch.bin", 100) ] do
            CifarBinary.write (Path.Combine(dir, name)) (Array.init n (fun _ -> byte (rng.NextInt 10))) (Array.init (n * 3072) (fun _ -> byte (rng.NextInt 256)))
        dir

let load () = File.ReadAllText("/proc/loadavg").Split(' ')[0]

let time (task: Task) (steps: int) =
    let opt = Registry.createOptimizer "adam" [ "lr", "0.001" ]
    let start = task.Init TaskInit.Default
    let sw = Stopwatch.StartNew()
    let p, s = Run.optimize task opt start steps (fun _ _ _ -> ())
    let seconds = sw.Elapsed.TotalSeconds
    Tree.dispose p
    State.tensors s |> Seq.iter (fun t -> t.Dispose())
    Tree.dispose start
    seconds

printfn "threads %d, repeats %d, LibTorch %s" (torch.get_num_threads()) repeats (torch.__version__)
let tasks = [ ("mlp-mnist", []); ("cnn1-mnist", []); ("conv-cifar1", [ ("data_dir", cifarDir) ]) ]
for name, opts in tasks do
    let task = Registry.createTask name (("batch_size", "128") :: opts)
    let cold = time task 100 // the first run includes JIT compilation and tiering
    printfn "%-12s %8.3f s for the first 100 steps (cold)" name cold
    let runs = [ for _ in 1..repeats -> let l = load () in let t = time task 100 in printfn "    %.3f s (load %s -> %s)" t l (load ()); t ] |> List.sort
    let median = runs[runs.Length / 2]
    let rss = Process.GetCurrentProcess().WorkingSet64 / 1048576L
    printfn "%-12s %8.3f s / 100 steps (median of %d; min %.3f, max %.3f), RSS %d MB" name median repeats runs.Head (List.last runs) rss
