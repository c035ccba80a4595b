namespace Optimizers.Experiments

open System
open System.Collections.Generic
open System.Diagnostics
open System.Globalization
open System.IO
open Argu
open Spectre.Console
open TorchSharp
open Optimizers
open Optimizers.Fused
open Optimizers.Meta
open Optimizers.Tasks

/// `bench` options. Sizes default to the reference setting of shared/notes/TORCHSHARP.md.
type BenchArgs =
    | Quick
    | [<Unique>] Params of count: int
    | [<Unique>] Tensors of count: int
    | [<Unique>] Threads of count: int
    | [<Unique>] Steps of count: int
    | [<Unique>] Rounds of count: int
    | [<Unique>] Memory_Steps of count: int
    | [<Unique>] Memory_Params of count: int
    | [<Unique>] Budget of seconds: float
    | [<Unique>] Memory_Budget of seconds: float
    | [<Unique>] Jemalloc of setting: string
    | [<Unique>] Hd_Steps of count: int
    | [<Unique>] Meta_Episodes of count: int
    | [<Unique>] Meta_Iterations of count: int
    | [<Unique>] Meta_Threads of count: int
    | [<Unique>] Unroll_Params of count: int
    | [<Unique>] Unroll_Horizon of count: int
    | [<Unique>] Unroll_Count of count: int
    | [<Unique>] Unroll_Memory of count: int
    | Only of part: string
    | [<Hidden; Unique>] Child

    interface IArgParserTemplate with
        member a.Usage =
            match a with
            | Quick -> "a short run: fewer steps, one round, 500-step memory runs, no jemalloc child"
            | Params _ -> "float32 parameters of the timed runs (default 10000000)"
            | Tensors _ -> "number of tensors they are split into (default 50)"
            | Threads _ -> "threads of TorchSharp and of the fused kernels (default 2)"
            | Steps _ -> "timed steps per variant and round (default 30; --quick 8)"
            | Rounds _ -> "rounds over all variants; medians are over every timed step of every round (default 3; --quick 1)"
            | Memory_Steps _ -> "steps of each native-memory run (default 10000; --quick 500)"
            | Memory_Params _ -> "float32 parameters of the native-memory runs, in tensors as large as the timed runs' (default 400000)"
            | Budget _ -> "seconds per variant and round after which its timing stops (at least 3 steps; default 2, --quick 1)"
            | Memory_Budget _ -> "seconds after which a native-memory run of an optimizer step stops early (default 60, --quick 5)"
            | Hd_Steps _ -> "training steps on MlpMnist per run of adam and of adam-hd, a run per round (default 300; --quick 100; 0: skip)"
            | Meta_Episodes _ -> "timed HyperAdam meta-training episodes on MlpMnist at T = 100 (5 windows of 20), after one untimed (default 5; --quick 2; 0: skip)"
            | Meta_Iterations _ -> "meta-iterations (Theta updates; episodes of T = 20, one window) of the HyperAdam run at T = 20 that also checks native memory (default 1000; --quick 30; 0: skip)"
            | Meta_Threads _ -> "LibTorch threads of the long T = 20 meta-training run (default 1, as meta-train's default); T = 100 runs at --threads and at this"
            | Unroll_Params _ -> "float32 parameters of the timed unrolls through Adam, Adam-HD, SGD-HD and SGDN-HD (in 10 tensors and in 1; default 1000000)"
            | Unroll_Horizon _ -> "steps T of each unroll, forward alone and forward + backward, fused and op by op (default 20; 0: skip)"
            | Unroll_Count _ -> "timed unrolls per variant and round (default 10; --quick 3)"
            | Unroll_Memory _ -> "unrolls with backward of the native-memory run of differentiable steps, on --memory-params (default 500: 10,000 steps at T = 20; --quick 25)"
            | Only _ -> "run only this part (repeatable): steps (bandwidth, the timed optimizer steps, jemalloc), memory, hd, meta, unroll"
            | Jemalloc _ -> "auto (default: also time the allocator-sensitive variants under jemalloc, in a child process, when libjemalloc.so.2 is installed), off, or the library's path"
            | Child -> "internal: the jemalloc child; prints its rows as tab-separated values"

/// `bench`: issue 10's measurements in one run and one table, then the targets read off it.
/// For P float32 parameters in T tensors on a given number of threads, for Adam, SGD with
/// momentum, AdamW, RMSProp and Adagrad: the fast path (fused SIMD kernel), TorchSharp's own
/// torch.optim, and the pure path (new tensors every step, allocator guard at its default); for
/// Adam and SGDM also the kernels' TorchSharp in-place fallback and the guard trimming every 4 or
/// 1 steps; all against the memory-bandwidth bound (Bandwidth: the fastest of several streaming kernels) in the same process;
/// optionally the allocator-sensitive variants again under jemalloc (a child process with
/// LD_PRELOAD); native memory (VmRSS) over long runs; adam against adam-hd per training step on
/// MlpMnist; HyperAdam meta-training on MlpMnist (seconds per meta-iteration at T = 100 and 20,
/// native memory over many meta-iterations). The machine is shared and noisy: times are medians
/// over every timed step of every round, with the interquartile range, and the load average is
/// printed with them.
module Bench =

    type Settings =
        { Params: int
          Tensors: int
          Threads: int
          Steps: int
          Warmup: int
          Rounds: int
          MemorySteps: int
          MemoryParams: int
          /// Seconds per variant and round (timing stops after it, at least 3 steps)
          Budget: float
          /// Seconds per native-memory run
          MemoryBudget: float
          /// None: no jemalloc child; Some path: run one with this library preloaded
          Jemalloc: string option
          /// Steps of each MlpMnist run of adam and adam-hd (0: none)
          HdSteps: int
          /// Timed T = 100 meta-training episodes (0: none)
          MetaEpisodes: int
          /// Meta-iterations of the T = 20 meta-training run (0: none)
          MetaIterations: int
          MetaThreads: int
          /// Parameters, steps T (0: none), timed unrolls per variant and round, and unrolls of the
          /// native-memory run of the unroll part
          UnrollParams: int
          UnrollHorizon: int
          UnrollCount: int
          UnrollMemory: int
          /// The timed optimizer steps (with the bandwidth kernels and the jemalloc child), and the
          /// native-memory runs of optimizer steps
          TimeSteps: bool
          MemoryRuns: bool
          Child: bool
          /// The command line that reproduces the run
          Command: string }

    let private jemallocCandidates =
        [ "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2"; "/usr/lib/aarch64-linux-gnu/libjemalloc.so.2"
          "/usr/lib64/libjemalloc.so.2"; "/usr/lib/libjemalloc.so.2"; "/usr/local/lib/libjemalloc.so.2" ]

    /// The settings from the command line, validated.
    let settings (r: ParseResults<BenchArgs>) : Settings =
        let quick = r.Contains Quick
        let positive name (v: int) = if v < 1 then Tensors.invalidArg name $"--{name} = {v} is invalid; it must be >= 1" else v
        let count name (v: int) = if v < 0 then Tensors.invalidArg name $"--{name} = {v} is invalid; it must be >= 0 (0 skips it)" else v
        let parts = [ "steps"; "memory"; "hd"; "meta"; "unroll" ]
        let only = r.GetResults Only
        for p in only do
            if not (List.contains p parts) then Tensors.invalidArg "only" $"--only '{p}' is not a part of the bench; valid: {Tensors.commas parts}"
        let runs (part: string) = only.IsEmpty || List.contains part only
        let ps = positive "params" (r.GetResult(Params, 10_000_000))
        let ts = positive "tensors" (r.GetResult(Tensors, 50))
        if ts > ps then Tensors.invalidArg "tensors" $"--tensors = {ts} is more than --params = {ps}"
        let jemalloc =
            match r.GetResult(Jemalloc, (if quick then "off" else "auto")) with
            | "off" -> None
            | "auto" -> jemallocCandidates |> List.tryFind File.Exists
            | path when File.Exists path -> Some path
            | path -> Tensors.invalidArg "jemalloc" $"--jemalloc '{path}': no such file; valid: auto, off, or the path of libjemalloc.so.2"
        { Params = ps
          Tensors = ts
          Threads = positive "threads" (r.GetResult(Threads, 2))
          Steps = positive "steps" (r.GetResult(Steps, (if quick then 8 else 30)))
          Warmup = (if quick then 1 else 2)
          Rounds = positive "rounds" (r.GetResult(Rounds, (if quick then 1 else 3)))
          MemorySteps = positive "memory-steps" (r.GetResult(Memory_Steps, (if quick then 500 else 10_000)))
          MemoryParams = positive "memory-params" (r.GetResult(Memory_Params, 400_000))
          Budget = r.GetResult(Budget, (if quick then 1.0 else 2.0))
          MemoryBudget = r.GetResult(Memory_Budget, (if quick then 5.0 else 60.0))
          Jemalloc = (if r.Contains Child then None else jemalloc)
          HdSteps = (if runs "hd" then count "hd-steps" (r.GetResult(Hd_Steps, (if quick then 100 else 300))) else 0)
          MetaEpisodes = (if runs "meta" then count "meta-episodes" (r.GetResult(Meta_Episodes, (if quick then 2 else 5))) else 0)
          MetaIterations = (if runs "meta" then count "meta-iterations" (r.GetResult(Meta_Iterations, (if quick then 30 else 1000))) else 0)
          MetaThreads = positive "meta-threads" (r.GetResult(Meta_Threads, 1))
          UnrollParams = positive "unroll-params" (r.GetResult(Unroll_Params, 1_000_000))
          UnrollHorizon = (if runs "unroll" then count "unroll-horizon" (r.GetResult(Unroll_Horizon, 20)) else 0)
          UnrollCount = positive "unroll-count" (r.GetResult(Unroll_Count, (if quick then 3 else 10)))
          UnrollMemory = count "unroll-memory" (r.GetResult(Unroll_Memory, (if quick then 25 else 500)))
          TimeSteps = runs "steps"
          MemoryRuns = runs "memory"
          Child = r.Contains Child
          Command = "optimizers bench " + r.Parser.PrintCommandLineArgumentsFlat(r.GetAllResults()) }

    /// This process's resident set size in bytes (VmRSS of /proc/self/status); 0 where there is none.
    let rssBytes () : int64 =
        try
            File.ReadLines "/proc/self/status"
            |> Seq.tryFind (fun l -> l.StartsWith "VmRSS:")
            |> Option.map (fun l -> int64 (l.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1]) * 1024L)
            |> Option.defaultValue 0L
        with _ -> 0L

    /// The load averages of /proc/loadavg (1, 5, 15 minutes), or "?" where there is none.
    let loadAverage () : string =
        try (File.ReadAllText "/proc/loadavg").Split(' ') |> Array.take 3 |> String.concat " "
        with _ -> "?"

    /// One optimizer set up on its own copy of the parameters: a step, and freeing everything.
    type Runner = { Step: unit -> unit; Dispose: unit -> unit }

    /// The optimizers compared (lr 1e-3, PyTorch's defaults otherwise; SGD with momentum 0.9).
    /// Adam and SGD with momentum also get the fallback and the pure path trimmed every 4 and 1;
    /// all the forward of their differentiable fused step against op by op.
    type Family =
        | AdamFamily
        | SgdMomentum
        | AdamWFamily
        | RmsPropFamily
        | AdagradFamily
        | AmsGradFamily

        static member All = [ AdamFamily; SgdMomentum; AdamWFamily; RmsPropFamily; AdagradFamily; AmsGradFamily ]
        member f.Label =
            match f with
            | AdamFamily -> "adam"
            | SgdMomentum -> "sgd-momentum"
            | AdamWFamily -> "adamw"
            | RmsPropFamily -> "rmsprop"
            | AdagradFamily -> "adagrad"
            | AmsGradFamily -> "amsgrad"
        member f.Ours =
            let name = match f with SgdMomentum -> "momentum" | _ -> f.Label
            Registry.createOptimizer name [ "lr", "0.001" ]
        /// Every variant (fallback, pure path trimmed every 4 and 1), not only fast, torch.optim and pure.
        member f.Detailed = match f with AdamFamily | SgdMomentum -> true | _ -> false
        /// Has a differentiable fused step (Fused/AdamGrad, AdamVariantsGrad, SgdGrad, RmsPropGrad,
        /// AdagradGrad): the rows of its forward with a graph recorded, fused and op by op. All do.
        member f.Differentiable = true
        /// Bytes of memory traffic per parameter of one step (read and written once each).
        member f.BytesPerParam = match f with AdamFamily | AdamWFamily -> 28.0 | AmsGradFamily -> 36.0 | SgdMomentum | RmsPropFamily | AdagradFamily -> 20.0
        member f.Formula =
            match f with
            | AdamFamily | AdamWFamily -> "28 B/param: read p, g, m, v; write p, m, v"
            | SgdMomentum -> "20 B/param: read p, g, b; write p, b"
            | RmsPropFamily -> "20 B/param: read p, g, v; write p, v"
            | AdagradFamily -> "20 B/param: read p, g, s; write p, s"
            | AmsGradFamily -> "36 B/param: read p, g, m, v, vmax; write p, m, v, vmax"
        member f.TorchName =
            match f with
            | AdamFamily -> "torch.optim.Adam"
            | SgdMomentum -> "torch.optim.SGD"
            | AdamWFamily -> "torch.optim.AdamW"
            | RmsPropFamily -> "torch.optim.RMSProp"
            | AdagradFamily -> "torch.optim.Adagrad"
            | AmsGradFamily -> "torch.optim.Adam(amsgrad=True)"

    let private detachTree (t: Tree) : Tree =
        for x in t.Values do x.DetachFromDisposeScope() |> ignore
        t

    /// The fast path as the C# facade runs it: stepInPlace, then the allocator guard. With
    /// simd = false every tensor takes the kernels' TorchSharp in-place fallback.
    let fastRunner (opt: Transformation) (simd: bool) (start: Tree) (grads: Tree) : Runner =
        let p = Tree.clone start |> detachTree
        let s = ref (opt.Init p |> State.detachFromScopes)
        { Step = fun () ->
            Kernel.useSimd <- simd
            try
                let s' = Transform.stepInPlace opt grads s.Value p |> State.detachFromScopes
                Run.disposeReplaced (State.tensors s.Value) (State.tensors s')
                s.Value <- s'
            finally
                Kernel.useSimd <- true
            Memory.afterStep ()
          Dispose = fun () -> Tree.dispose p; State.dispose s.Value }

    /// The pure path as Run.optimizeWhile runs it: new params and state each step in a
    /// DisposeScope, the replaced ones freed, then the allocator guard trimming every `trimEvery`.
    /// `step` is Transform.step (the fused kernel into new tensors: nothing needs a gradient) or
    /// Transform.stepOps (op by op, the form a meta-gradient differentiates).
    let pureRunner (step: Transformation -> Tree -> State -> Tree -> Tree * State) (opt: Transformation) (trimEvery: int) (start: Tree) (grads: Tree) : Runner =
        let p = ref (Tree.clone start |> detachTree)
        let s = ref (opt.Init p.Value |> State.detachFromScopes)
        { Step = fun () ->
            do
                use _ = torch.NewDisposeScope()
                use _ = torch.no_grad ()
                let p', s' = step opt grads s.Value p.Value
                let p' = detachTree p'
                let s' = State.detachFromScopes s'
                Run.disposeReplaced (Seq.append p.Value.Values (State.tensors s.Value)) (Seq.append p'.Values (State.tensors s'))
                p.Value <- p'
                s.Value <- s'
            let saved = Memory.trimEvery
            Memory.trimEvery <- trimEvery
            Memory.afterStep ()
            Memory.trimEvery <- saved
          Dispose = fun () -> Tree.dispose p.Value; State.dispose s.Value }

    /// The forward pass of a step that a gradient must flow through (the parameters require grad,
    /// the graph is recorded): `step` is Transform.step (the differentiable fused step where the
    /// optimizer has one) or Transform.stepOps (op by op). Every step starts from the same
    /// parameters and state, and its outputs and graph are freed with its DisposeScope.
    let gradRunner (step: Transformation -> Tree -> State -> Tree -> Tree * State) (opt: Transformation) (start: Tree) (grads: Tree) : Runner =
        let p = Tree.clone start |> Tree.map (fun x -> x.requires_grad_(true)) |> detachTree
        let s = opt.Init p |> State.detachFromScopes
        { Step = fun () ->
            do
                use _ = torch.NewDisposeScope()
                use _ = torch.enable_grad ()
                step opt grads s p |> ignore
            Memory.afterStep ()
          Dispose = fun () -> Tree.dispose p; State.dispose s }

    /// Transform.step with the differentiable fused steps on.
    let private fusedStep (t: Transformation) (g: Tree) (s: State) (p: Tree) =
        let saved = Transform.fuseGradients
        Transform.fuseGradients <- true
        try Transform.step t g s p finally Transform.fuseGradients <- saved

    /// TorchSharp's own optimizer (torch.optim.Adam, SGD, ...) on Parameters holding the gradients,
    /// with nothing of ours around it: the default allocator as a TorchSharp user has it.
    let torchRunner (family: Family) (start: Tree) (grads: Tree) : Runner =
        let ps = start.Values |> Array.map (fun t -> new Modules.Parameter(t.clone().DetachFromDisposeScope(), true))
        Array.iter2 (fun (p: Modules.Parameter) g -> p.grad <- g) ps grads.Values
        let opt : torch.optim.Optimizer =
            match family with
            | AdamFamily -> torch.optim.Adam(ps, lr = 1e-3)
            | SgdMomentum -> torch.optim.SGD(ps, 1e-3, momentum = 0.9)
            | AdamWFamily -> torch.optim.AdamW(ps, lr = 1e-3)
            | RmsPropFamily -> torch.optim.RMSProp(ps, lr = 1e-3)
            | AdagradFamily -> torch.optim.Adagrad(ps, lr = 1e-3)
            | AmsGradFamily -> torch.optim.Adam(ps, lr = 1e-3, amsgrad = true)
        { Step = fun () -> opt.step () |> ignore
          Dispose = fun () ->
            opt.Dispose()
            for p in ps do
                p.grad <- null
                p.Dispose() }

    /// The variants of the timed part: (key, label, runner maker). The key names a row.
    type Variant = { Key: string; Family: Family; Label: string; Make: Tree -> Tree -> Runner; InChild: bool }

    /// Transform.step with the fused loops' non-temporal stores off (Kernel.streamBytes).
    let private withoutStreaming (opt: Transformation) (g: Tree) (s: State) (p: Tree) : Tree * State =
        let saved = Kernel.streamBytes
        Kernel.streamBytes <- Int64.MaxValue
        try Transform.step opt g s p finally Kernel.streamBytes <- saved

    let variants : Variant list =
        [ for f in Family.All do
            let ours = f.Ours
            yield { Key = $"{f.Label}/fast"; Family = f; Label = "fast path: fused SIMD kernel"; Make = fastRunner ours true; InChild = false }
            if f.Detailed then
                yield { Key = $"{f.Label}/fallback"; Family = f; Label = "fast path: TorchSharp in-place fallback"; Make = fastRunner ours false; InChild = false }
            yield { Key = $"{f.Label}/torch"; Family = f; Label = f.TorchName; Make = torchRunner f; InChild = f.Detailed }
            yield { Key = $"{f.Label}/pure"; Family = f; Label = $"pure path: fused kernel into new tensors, trim every {Memory.trimEvery} (default)"
                    Make = pureRunner Transform.step ours Memory.trimEvery; InChild = f.Detailed }
            yield { Key = $"{f.Label}/ops"; Family = f; Label = $"pure path op by op (what meta-gradients use), trim every {Memory.trimEvery}"
                    Make = pureRunner Transform.stepOps ours Memory.trimEvery; InChild = f.Detailed }
            if f.Differentiable then
                yield { Key = $"{f.Label}/diff"; Family = f; Label = "differentiable fused step, forward (Transform.fuseGradients)"
                        Make = gradRunner fusedStep ours; InChild = false }
                yield { Key = $"{f.Label}/diff-ops"; Family = f; Label = "differentiable step op by op, forward (graph recorded)"
                        Make = gradRunner Transform.stepOps ours; InChild = false }
            if f.Detailed then
                yield { Key = $"{f.Label}/pure-cached"; Family = f; Label = "pure path: fused, ordinary stores (no non-temporal)"
                        Make = pureRunner withoutStreaming ours Memory.trimEvery; InChild = false }
                yield { Key = $"{f.Label}/pure4"; Family = f; Label = "pure path: fused, trim every 4"; Make = pureRunner Transform.step ours 4; InChild = false }
                yield { Key = $"{f.Label}/pure1"; Family = f; Label = "pure path: fused, trim every step"; Make = pureRunner Transform.step ours 1; InChild = false } ]

    /// Split `total` elements into `count` near-equal sizes.
    let sizes (total: int) (count: int) : int[] =
        Array.init count (fun i -> total / count + (if i < total % count then 1 else 0))

    /// Fixed parameters and gradients (float32, seeded) of the given sizes.
    let problem (seed: int) (sizes: int[]) : Tree * Tree =
        use gen = new torch.Generator(uint64 seed)
        let names = sizes |> Array.mapi (fun i _ -> $"t{i}")
        let make (scale: float) =
            { Names = names
              Values = sizes |> Array.map (fun n -> (torch.randn([| int64 n |], generator = gen) * scale).DetachFromDisposeScope()) }
        make 0.1, make 1e-3

    type Timing = { Times: float[]; RssBefore: int64; RssAfter: int64 }

    let private percentile (q: float) (xs: float[]) =
        if xs.Length = 0 then nan
        else
            let s = Array.sort xs
            let pos = q * float (s.Length - 1)
            let lo = int (floor pos)
            let hi = min (s.Length - 1) (lo + 1)
            s[lo] + (pos - float lo) * (s[hi] - s[lo])

    let median (xs: float[]) = percentile 0.5 xs

    /// Free what a variant left behind before the next one starts (housekeeping of the bench,
    /// so that one variant's heap does not count against the next).
    let private cleanUp () =
        GC.Collect()
        GC.WaitForPendingFinalizers()
        Memory.trim ()

    /// Warm-up steps (which also allocate torch.optim's lazy state), then up to `steps` timed
    /// steps, fewer when warm-up and steps take more than `budget` seconds (at least 3 timed),
    /// with VmRSS after the warm-up and after the last step.
    let time (r: Runner) (warmup: int) (steps: int) (budget: float) : Timing =
        let start = Stopwatch.GetTimestamp()
        for _ in 1 .. warmup do r.Step()
        let before = rssBytes ()
        let times = List<float>()
        while times.Count < steps && (times.Count < 3 || Stopwatch.GetElapsedTime(start).TotalSeconds < budget) do
            let t0 = Stopwatch.GetTimestamp()
            r.Step()
            times.Add(Stopwatch.GetElapsedTime(t0).TotalMilliseconds)
        { Times = times.ToArray(); RssBefore = before; RssAfter = rssBytes () }

    /// The timed variants, round-robin over `rounds` so slow drifts of the machine's load spread
    /// over all of them. Returns per key all timed steps and the RSS of the first round.
    let timeAll (s: Settings) (vs: Variant list) (progress: string -> unit) (afterRound: unit -> unit) : Map<string, Timing> =
        let start, grads = problem 1 (sizes s.Params s.Tensors)
        let results = Dictionary<string, Timing>()
        try
            for round in 1 .. s.Rounds do
                for v in vs do
                    progress $"{v.Family.Label}: {v.Label} (round {round}/{s.Rounds})"
                    let r = v.Make start grads
                    let t = try time r s.Warmup s.Steps s.Budget finally r.Dispose()
                    cleanUp ()
                    match results.TryGetValue v.Key with
                    | true, old -> results[v.Key] <- { old with Times = Array.append old.Times t.Times }
                    | _ -> results[v.Key] <- t
                afterRound ()
        finally
            Tree.dispose start
            Tree.dispose grads
            cleanUp ()
        results |> Seq.map (fun kv -> kv.Key, kv.Value) |> Map.ofSeq

    type MemoryRun = { Key: string; Label: string; Steps: int; Ms: float; Before: int64; After: int64; Max: int64; AtTenth: int64 }

    /// Long runs of the fast and pure paths: VmRSS after the first step, at a tenth of the run,
    /// at its end, and the largest seen (sampled 100 times). A run stops early when it takes
    /// more than the memory budget.
    let memoryRuns (s: Settings) (progress: string -> unit) : MemoryRun list =
        let perTensor = max 1 (s.Params / s.Tensors)
        let count = max 1 (s.MemoryParams / perTensor)
        let start, grads = problem 2 (sizes s.MemoryParams count)
        try
            [ for f in Family.All do
                for path, make in [ yield "fast", fastRunner f.Ours true
                                    if f.Detailed then
                                        yield "pure", pureRunner Transform.step f.Ours Memory.trimEvery
                                        yield "op-by-op pure", pureRunner Transform.stepOps f.Ours Memory.trimEvery ] do
                    progress $"{f.Label}: {path} path, {s.MemorySteps} steps for native memory"
                    let r = make start grads
                    let times = List<float>()
                    let mutable before, tenth, peak, after = 0L, 0L, 0L, 0L
                    let every = max 1 (s.MemorySteps / 100)
                    let start = Stopwatch.GetTimestamp()
                    try
                        let mutable k = 0
                        while k < s.MemorySteps && (k < 2 || Stopwatch.GetElapsedTime(start).TotalSeconds < s.MemoryBudget) do
                            let t0 = Stopwatch.GetTimestamp()
                            r.Step()
                            times.Add(Stopwatch.GetElapsedTime(t0).TotalMilliseconds)
                            if k = 0 then before <- rssBytes ()
                            if k = s.MemorySteps / 10 then tenth <- rssBytes ()
                            if k % every = 0 then peak <- max peak (rssBytes ())
                            k <- k + 1
                        // at the end, before anything is freed
                        after <- rssBytes ()
                        peak <- max peak after
                    finally
                        r.Dispose()
                    cleanUp ()
                    yield { Key = $"{f.Label}/{path}"; Label = $"{path} path"; Steps = times.Count; Ms = median (times.ToArray()); Before = before
                            After = after; Max = peak; AtTenth = (if tenth = 0L then before else tenth) } ]
        finally
            Tree.dispose start
            Tree.dispose grads
            cleanUp ()

    /// adam and adam-hd on MlpMnist (784-20-10 sigmoid, batch 128; 15,910 parameters): the whole
    /// training step as Run.optimize runs it (loss, gradient, pure-path update, allocator guard),
    /// in ms per step; one run of each per round, alternating, at least 9 rounds (a run is about
    /// 0.2 s, and runs of one optimizer vary by up to 2x on this VM: 0.58-1.68 ms per step seen),
    /// after warm-up runs of 200 steps of each (after 20, the first rounds of both optimizers ran
    /// up to 1.6x slower than later ones: the JIT's tiering), each run from a collected heap (the
    /// previous run's garbage and TorchSharp's finalizers otherwise land in the next run).
    let hdRuns (s: Settings) (progress: string -> unit) : (string * float[]) list =
        let task = Registry.createTask "mlp-mnist" []
        let start = task.Init { TaskInit.Default with Seed = 1 } |> Tree.map (fun x -> x.DetachFromDisposeScope())
        let opts = [ "adam", Registry.createOptimizer "adam" []; "adam-hd", Registry.createOptimizer "adam-hd" [] ]
        let msPerStep (opt: Transformation) (steps: int) =
            GC.Collect()
            GC.WaitForPendingFinalizers()
            Memory.trim ()
            let t0 = Stopwatch.GetTimestamp()
            let p, st = Run.optimize task opt start steps (fun _ _ _ -> ())
            let ms = Stopwatch.GetElapsedTime(t0).TotalMilliseconds / float steps
            Tree.dispose p
            State.dispose st
            ms
        try
            for _ in 1 .. 2 do
                for _, o in opts do msPerStep o 100 |> ignore
            let times = [ for name, _ in opts -> name, List<float>() ]
            let rounds = max s.Rounds 9
            for round in 1 .. rounds do
                for (name, o), (_, acc) in List.zip opts times do
                    progress $"mlp-mnist: {name}, {s.HdSteps} training steps (round {round}/{rounds})"
                    acc.Add(msPerStep o s.HdSteps)
            times |> List.map (fun (n, l) -> n, l.ToArray())
        finally
            Tree.dispose start
            cleanUp ()

    /// A meta-training run's wall time per episode (the first, untimed, excluded) and VmRSS after
    /// the first episode, at its end, and the largest seen in the first and in the second half of
    /// the run (the allocator guard trims every few meta-iterations, so VmRSS is a sawtooth: flat
    /// means its peaks do not rise, not that two samples at different phases agree).
    type MetaRun = { Horizon: int; Threads: int; Seconds: float[]; First: int64; Last: int64; Max: int64; FirstHalfMax: int64; SecondHalfMax: int64 }

    /// HyperAdam (J = 20, hidden 20) meta-trained on MlpMnist as `meta-train` does it (windows of
    /// 20 steps, Adam as meta-optimizer at 1e-3, no validation, no checkpoints) for 1 + `episodes`
    /// episodes of T = `horizon` steps, on `threads` LibTorch threads.
    let metaRun (s: Settings) (threads: int) (horizon: int) (episodes: int) (progress: string -> unit) : MetaRun =
        let settings : MetaSettings =
            { Kind = Registry.findLearnedKind "hyperadam"; KindOptions = []; Task = Registry.createSeededTask "mlp-mnist" []; InitTheta = None
              Horizon = horizon; Window = 20; Episodes = episodes + 1; MetaLr = 1e-3; MetaLrFinal = 1e-3
              RandomScaling = None; ConvexTerm = None; ResetRange = None; Objective = MetaObjective.MeanLoss; ValidateEvery = episodes + 1; ValidationSeeds = []; ValidationSplit = Optimizers.Data.Split.Validation
              CheckpointDir = None; CheckpointEvery = episodes + 1; Seed = 1; Dtype = torch.ScalarType.Float32 }
        let times = List<float>()
        let mutable first, peak1, peak2 = 0L, 0L, 0L
        let mutable last = Stopwatch.GetTimestamp()
        let every = max 1 (episodes / 10)
        let onEpisode (p: MetaProgress) =
            let now = Stopwatch.GetTimestamp()
            if p.Episode > 0 then times.Add(Stopwatch.GetElapsedTime(last, now).TotalSeconds)
            last <- now
            let rss = rssBytes ()
            if p.Episode = 0 then first <- rss
            if p.Episode <= episodes / 2 then peak1 <- max peak1 rss else peak2 <- max peak2 rss
            if p.Episode % every = 0 then progress $"hyperadam meta-training, T = {horizon}, {threads} thread(s): episode {p.Episode}/{episodes}"
        torch.set_num_threads threads
        try
            let r = MetaTrain.train settings onEpisode
            let after = rssBytes ()
            Tree.dispose r.Best.Theta
            Tree.dispose r.Last.Theta
            { Horizon = horizon; Threads = threads; Seconds = times.ToArray(); First = first; Last = after; Max = max (max peak1 peak2) after
              FirstHalfMax = peak1; SecondHalfMax = max peak2 after }
        finally
            torch.set_num_threads s.Threads
            cleanUp ()

    /// The unroll part's timed rows: tensors, form ("fused" or "op by op"), with or without the
    /// backward pass, and ms per unroll.
    type UnrollRow = { Subject: string; Tensors: int; Form: string; Backward: bool; Timing: Timing }

    /// The native-memory run of differentiable steps: unrolls with backward, steps in all, ms per
    /// unroll, and VmRSS after the first and at the end, and the largest in each half of the run
    /// (the allocator guard trims every few unrolls: flat means the peaks do not rise, as for
    /// meta-training).
    type UnrollMemory = { Unrolls: int; Steps: int; Ms: float; Before: int64; After: int64; FirstHalfMax: int64; SecondHalfMax: int64 }

    /// The unroll part: rows, each subject's and tensor count's hypergradients through the fused
    /// and the op-by-op forms (their relative differences, in the order of the subject's Hypers),
    /// and the native-memory run.
    type UnrollResult = { Rows: UnrollRow list; Agreement: (string * int * float list) list; Memory: UnrollMemory option }

    /// Unrolls of T = `UnrollHorizon` steps of each of Unroll.subjects (Adam, Adam-HD, SGD-HD, SGDN-HD) on
    /// `UnrollParams` parameters in 10 tensors and in 1: forward alone and forward + backward,
    /// through the differentiable fused step and op by op, round-robin over the rounds; then
    /// `UnrollMemory` unrolls of Adam with backward through the fused step on `MemoryParams`
    /// parameters (tensors of the 10-tensor case's size) for native memory.
    let unrollRuns (s: Settings) (progress: string -> unit) : UnrollResult =
        let horizon = s.UnrollHorizon
        let forms = [ "fused", fusedStep; "op by op", Transform.stepOps ]
        let problems = [ for c in [ 10; 1 ] |> List.filter (fun c -> c <= s.UnrollParams) -> c, Unroll.problem 3 (sizes s.UnrollParams c) ]
        let leaves = [ for u in Unroll.subjects -> u, Unroll.leaves u ]
        let lr, beta1 = Unroll.leaves Unroll.adam |> fun hs -> hs[0], hs[1]
        let times = Dictionary<string * int * string * bool, Timing>()
        try
            for round in 1 .. s.Rounds do
                for subject, hs in leaves do
                    for c, (start, curvature) in problems do
                        for form, step in forms do
                            for backward in [ false; true ] do
                                let what = if backward then "forward + backward" else "forward"
                                progress $"{subject.Name} unroll, T = {horizon}, {c} tensor(s), {form}: {what} (round {round}/{s.Rounds})"
                                let r = { Step = Unroll.once step backward subject hs curvature start horizon; Dispose = ignore }
                                let t = time r 1 s.UnrollCount s.Budget
                                cleanUp ()
                                let key = subject.Name, c, form, backward
                                match times.TryGetValue key with
                                | true, old -> times[key] <- { old with Times = Array.append old.Times t.Times }
                                | _ -> times[key] <- t
            let rows = [ for KeyValue((u, c, form, backward), t) in times -> { Subject = u; Tensors = c; Form = form; Backward = backward; Timing = t } ]
            let agreement =
                [ for subject in Unroll.subjects do
                    for c, (start, curvature) in problems do
                        progress $"{subject.Name} unroll, T = {horizon}, {c} tensor(s): hypergradients through both forms"
                        let fused = Unroll.hypergradients fusedStep subject curvature start horizon
                        let ops = Unroll.hypergradients Transform.stepOps subject curvature start horizon
                        yield subject.Name, c, List.map2 (fun f o -> abs (f - o) / abs o) fused ops ]
            let memory =
                if s.UnrollMemory = 0 then None
                else
                    let perTensor = max 1 (s.UnrollParams / 10)
                    let start, curvature = Unroll.problem 4 (sizes s.MemoryParams (max 1 (s.MemoryParams / perTensor)))
                    try
                        let f = Unroll.once fusedStep true Unroll.adam [ lr; beta1 ] curvature start horizon
                        let ms = List<float>()
                        let mutable before, peak1, peak2 = 0L, 0L, 0L
                        let every = max 1 (s.UnrollMemory / 100)
                        let t0 = Stopwatch.GetTimestamp()
                        let mutable k = 0
                        while k < s.UnrollMemory && (k < 2 || Stopwatch.GetElapsedTime(t0).TotalSeconds < s.MemoryBudget) do
                            if k % every = 0 then progress $"adam unroll, T = {horizon}, native memory: unroll {k}/{s.UnrollMemory}"
                            let t1 = Stopwatch.GetTimestamp()
                            f ()
                            ms.Add(Stopwatch.GetElapsedTime(t1).TotalMilliseconds)
                            let rss = rssBytes ()
                            if k = 0 then before <- rss
                            if k < s.UnrollMemory / 2 then peak1 <- max peak1 rss else peak2 <- max peak2 rss
                            k <- k + 1
                        let after = rssBytes ()
                        Some { Unrolls = ms.Count; Steps = ms.Count * horizon; Ms = median (ms.ToArray()); Before = before
                               After = after; FirstHalfMax = peak1; SecondHalfMax = max peak2 after }
                    finally
                        Tree.dispose start
                        Tree.dispose curvature
            { Rows = rows; Agreement = agreement; Memory = memory }
        finally
            for _, (start, curvature) in problems do
                Tree.dispose start
                Tree.dispose curvature
            for _, hs in leaves do
                for h in hs do h.Dispose()
            lr.Dispose()
            beta1.Dispose()
            cleanUp ()

    /// The jemalloc child: its own rows, one per line: key, steps, median ms, p25, p75, RSS before, after.
    let private childRows (timings: Map<string, Timing>) (out: TextWriter) =
        for KeyValue(k, t) in timings do
            let f (x: float) = x.ToString("R", CultureInfo.InvariantCulture)
            out.WriteLine $"{k}\t{t.Times.Length}\t{f (median t.Times)}\t{f (percentile 0.25 t.Times)}\t{f (percentile 0.75 t.Times)}\t{t.RssBefore}\t{t.RssAfter}"

    type Row = { Key: string; Steps: int; Median: float; P25: float; P75: float; RssBefore: int64; RssAfter: int64 }

    let private rowOf (key: string) (t: Timing) =
        { Key = key; Steps = t.Times.Length; Median = median t.Times; P25 = percentile 0.25 t.Times; P75 = percentile 0.75 t.Times
          RssBefore = t.RssBefore; RssAfter = t.RssAfter }

    /// Run this program again as the jemalloc child; its rows, or an error message.
    let private runChild (s: Settings) (lib: string) : Result<Row list, string> =
        let dll = typeof<Runner>.Assembly.Location
        let host = Path.Combine(Path.GetDirectoryName dll, "optimizers")
        let file, prefix = if File.Exists host then host, [] else "dotnet", [ dll ]
        let args =
            prefix @ [ "bench"; "--child"; "--params"; string s.Params; "--tensors"; string s.Tensors; "--threads"; string s.Threads
                       "--steps"; string s.Steps; "--rounds"; string s.Rounds; "--budget"; Output.num s.Budget ]
        let psi = ProcessStartInfo(file, args, RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false)
        psi.Environment["LD_PRELOAD"] <- lib
        try
            use p = Process.Start psi
            let err = p.StandardError.ReadToEndAsync()
            let out = p.StandardOutput.ReadToEnd()
            p.WaitForExit()
            if p.ExitCode <> 0 then Error $"the jemalloc child failed (exit code {p.ExitCode}): {err.Result.Trim()}"
            else
                let inv (x: string) = Double.Parse(x, CultureInfo.InvariantCulture)
                out.Split('\n', StringSplitOptions.RemoveEmptyEntries ||| StringSplitOptions.TrimEntries)
                |> Array.choose (fun line ->
                    match line.Split '\t' with
                    | [| k; n; m; a; b; r0; r1 |] -> Some { Key = k; Steps = int n; Median = inv m; P25 = inv a; P75 = inv b; RssBefore = int64 r0; RssAfter = int64 r1 }
                    | _ -> None)
                |> List.ofArray
                |> Ok
        with e -> Error $"the jemalloc child could not run: {e.Message}"

    let private mb (b: int64) = (float b / 1048576.0).ToString("F0", CultureInfo.InvariantCulture)
    let private ms (x: float) = if Double.IsNaN x then "-" else x.ToString((if x < 10.0 then "F2" else "F1"), CultureInfo.InvariantCulture)
    let private ratio (x: float) = if Double.IsNaN x || Double.IsInfinity x then "-" else x.ToString("F2", CultureInfo.InvariantCulture) + "x"

    /// Within the native-memory criterion of the table: grew at most max(32 MB, 5%) after the first tenth.
    let private isFlat (atTenth: int64) (after: int64) (first: int64) =
        float (after - atTenth) <= max (32.0 * 1048576.0) (0.05 * float first)

    /// The median ms of one unroll row (NaN when it did not run).
    let private unrollMs (u: UnrollResult) (subject: string) (tensors: int) (form: string) (backward: bool) =
        u.Rows |> List.tryFind (fun r -> r.Subject = subject && r.Tensors = tensors && r.Form = form && r.Backward = backward)
        |> Option.map (fun r -> median r.Timing.Times) |> Option.defaultValue nan

    /// Run the benchmark and print its table to `out` (progress to `err`).
    let run (s: Settings) (out: TextWriter) (err: TextWriter) =
        let threads0 = torch.get_num_threads ()
        torch.set_num_threads s.Threads
        try
            if s.Child then
                childRows (timeAll s (variants |> List.filter (fun v -> v.InChild)) ignore ignore) out
            else
                let progress (what: string) = err.WriteLine $"bench: {what}"
                let load0 = loadAverage ()
                let families = if s.TimeSteps then Family.All else []
                // before the timed steps and after each of their rounds, each kernel's best kept
                let mutable kernels = []
                let mutable sittings = 0
                let measureBandwidth () =
                    progress "memory bandwidth (the fastest of several streaming kernels)"
                    kernels <- Bandwidth.merge kernels (Bandwidth.measure (sizes s.Params s.Tensors) (5 * max 1 s.Rounds))
                    sittings <- sittings + 1
                if s.TimeSteps then measureBandwidth ()
                let timings = if s.TimeSteps then timeAll s variants progress measureBandwidth else Map.empty
                let fastestName, bw = match kernels with k :: _ -> k.Name, k.Rate | [] -> "-", nan
                // The guard's own cost: one malloc_trim(0) on the heap the timed runs left.
                let trimMs =
                    Array.init 20 (fun _ ->
                        let t0 = Stopwatch.GetTimestamp()
                        Memory.trim ()
                        Stopwatch.GetElapsedTime(t0).TotalMilliseconds)
                    |> median
                let child =
                    s.Jemalloc |> Option.filter (fun _ -> s.TimeSteps) |> Option.map (fun lib ->
                        progress $"allocator-sensitive variants again under jemalloc ({lib}), in a child process"
                        runChild s lib)
                let memory = if s.MemoryRuns then memoryRuns s progress else []
                let hd = if s.HdSteps > 0 then hdRuns s progress else []
                // T = 100 at the issue's thread count (--threads) and at --meta-threads; the long T = 20
                // run at --meta-threads (1 by default: 2 LibTorch threads stall when another process
                // holds a core, which a run of many minutes on a shared machine is likely to meet)
                let meta100 =
                    if s.MetaEpisodes > 0 then [ for th in List.distinct [ s.Threads; s.MetaThreads ] -> metaRun s th 100 s.MetaEpisodes progress ]
                    else []
                let meta20 = if s.MetaIterations > 0 then Some(metaRun s s.MetaThreads 20 s.MetaIterations progress) else None
                let unroll = if s.UnrollHorizon > 0 then Some(unrollRuns s progress) else None
                let console = AnsiConsole.Create(AnsiConsoleSettings(Out = AnsiConsoleOutput(out), Ansi = AnsiSupport.No, ColorSystem = ColorSystemSupport.NoColors))
                console.Profile.Width <- 250
                let mparams = float s.Params / 1e6
                let table =
                    Table()
                        .AddColumns("optimizer", "variant", "steps", "ms/step", "p25-p75", "x bound", "vs torch.optim", "x fast", "RSS before MB", "RSS after MB", "notes")
                let load1 = loadAverage ()
                table.Title <- TableTitle($"optimizer step, {mparams:G4}M float32 parameters in {s.Tensors} tensors, {s.Threads} threads; medians over {s.Rounds} rounds of up to {s.Steps} steps ({s.Budget:G3} s each); load average {load0} at the start, {load1} at the end")
                let add (cells: string list) = table.AddRow(cells |> List.map Markup.Escape |> Array.ofList) |> ignore
                let msOf key = timings |> Map.tryFind key |> Option.map (fun t -> median t.Times) |> Option.defaultValue nan
                let boundOf (f: Family) = f.BytesPerParam * float s.Params / bw * 1000.0
                let belowBound = List<string>()
                for f in families do
                    let bound = boundOf f
                    let torchMs = msOf $"{f.Label}/torch"
                    let fastMs = msOf $"{f.Label}/fast"
                    add [ f.Label; "memory-bandwidth bound"; ""; ms bound; ""; "1.00x"; ratio (torchMs / bound); ratio (bound / fastMs); ""; ""
                          $"{f.Formula} at {bw / 1e9:F1} GB/s ({fastestName}, the fastest of the kernels below the table)" ]
                    let show (label: string) (r: Row) (note: string) =
                        if r.Median < bound then belowBound.Add $"{f.Label}, {label}: {ms r.Median} ms against a bound of {ms bound} ms"
                        add [ f.Label; label; string r.Steps; ms r.Median; $"{ms r.P25}-{ms r.P75}"; ratio (r.Median / bound); ratio (torchMs / r.Median)
                              ratio (r.Median / fastMs); mb r.RssBefore; mb r.RssAfter; note ]
                    for v in variants |> List.filter (fun v -> v.Family = f) do
                        match timings.TryFind v.Key with
                        | Some t ->
                            let note = if v.Key.EndsWith "/torch" then "default (glibc) allocator, nothing of ours" else ""
                            show v.Label (rowOf v.Key t) note
                        | None -> ()
                    match child with
                    | Some(Ok rows) ->
                        for r in rows |> List.filter (fun r -> r.Key.StartsWith(f.Label + "/")) do
                            let v = variants |> List.find (fun v -> v.Key = r.Key)
                            let label =
                                if r.Key.EndsWith "/pure" then "pure path: fused (no trim: not needed)"
                                elif r.Key.EndsWith "/ops" then "pure path op by op (no trim: not needed)"
                                else v.Label
                            show $"jemalloc: {label}" r "LD_PRELOAD, child process"
                    | Some(Error e) when f.Detailed -> add [ f.Label; "jemalloc"; ""; ""; ""; ""; ""; ""; ""; ""; e ]
                    | _ -> ()
                    table.AddEmptyRow() |> ignore
                if s.TimeSteps then
                    add [ "-"; "allocator guard: one malloc_trim(0)"; "20"; ms trimMs; ""; ""; ""; ""; ""; ""
                          (if Memory.needsTrim then "median of 20 calls on the heap the timed runs left" else "not called here: jemalloc preloaded or glibc >= 2.38") ]
                    table.AddEmptyRow() |> ignore
                let mp = float s.MemoryParams / 1e6
                for m in memory do
                    let growth = m.After - m.AtTenth
                    let verdict = if isFlat m.AtTenth m.After m.Before then "flat" else $"GREW {mb growth} MB"
                    let family = m.Key.Substring(0, m.Key.IndexOf '/')
                    let planned = if m.Steps < s.MemorySteps then $" (of {s.MemorySteps}: time budget)" else ""
                    add [ family; $"{m.Label}, {mp:G4}M params, native memory"; $"{m.Steps}{planned}"; ms m.Ms; ""; ""; ""; ""; mb m.Before; mb m.After
                          $"{verdict}: {mb m.AtTenth} MB at step {s.MemorySteps / 10}, max {mb m.Max} MB" ]
                let hdMs name = hd |> List.tryFind (fun (n, _) -> n = name) |> Option.map (snd >> median) |> Option.defaultValue nan
                let hdRatio = hdMs "adam-hd" / hdMs "adam"
                if not hd.IsEmpty then
                    table.AddEmptyRow() |> ignore
                    for name, xs in hd do
                        add [ "mlp-mnist"; $"{name}: whole training step (loss, gradient, pure-path update)"; $"{xs.Length} x {s.HdSteps}"; ms (median xs)
                              $"{ms (Array.min xs)}-{ms (Array.max xs)}"; ""; ""; ""; ""; ""
                              (if name = "adam-hd" then $"adam-hd / adam = {ratio hdRatio}; {s.Threads} threads, median over rounds (range min-max)" else "") ]
                let metaRows =
                    [ for m in meta100 @ Option.toList meta20 do
                        let windows = m.Horizon / 20
                        let perEpisode = median m.Seconds
                        yield m, windows, perEpisode ]
                if not metaRows.IsEmpty then table.AddEmptyRow() |> ignore
                for m, windows, perEpisode in metaRows do
                    let flat = isFlat m.FirstHalfMax m.SecondHalfMax m.FirstHalfMax
                    // a few episodes show the allocator warming up, not a trend: judge long runs only
                    let verdict =
                        if m.Seconds.Length + 1 < 20 then "not judged (under 20 episodes: the long T = 20 run is the memory test)"
                        elif flat then "flat"
                        else $"GREW {mb (m.SecondHalfMax - m.FirstHalfMax)} MB"
                    add [ "hyperadam"; $"meta-training on mlp-mnist, T = {m.Horizon}: ms per meta-iteration (a 20-step window, one Theta update)"
                          $"{m.Seconds.Length} x {windows}"; ms (1000.0 * perEpisode / float windows); $"{ms (1000.0 * percentile 0.25 m.Seconds / float windows)}-{ms (1000.0 * percentile 0.75 m.Seconds / float windows)}"
                          ""; ""; ""; mb m.First; mb m.Last
                          $"{perEpisode:F2} s per episode of T = {m.Horizon}; {m.Threads} thread(s); native memory {verdict} over {m.Seconds.Length + 1} episodes (peak VmRSS {mb m.FirstHalfMax} MB in the first half, {mb m.SecondHalfMax} MB in the second)" ]
                match unroll with
                | Some u ->
                    table.AddEmptyRow() |> ignore
                    let up = float s.UnrollParams / 1e6
                    let order = Unroll.subjects |> List.map (fun u -> u.Name)
                    for r in u.Rows |> List.sortBy (fun r -> List.findIndex ((=) r.Subject) order, -r.Tensors, r.Form, r.Backward) do
                        let t = r.Timing.Times
                        let what = if r.Backward then "forward + backward" else "forward alone"
                        let note =
                            if r.Backward then
                                let forward = unrollMs u r.Subject r.Tensors r.Form false
                                $"{ratio (median t / forward)} its forward; "
                                + (match u.Agreement |> List.tryFind (fun (n, c, _) -> n = r.Subject && c = r.Tensors) with
                                   | Some(_, _, diffs) when r.Form = "fused" ->
                                       let names = (Unroll.subjects |> List.find (fun x -> x.Name = r.Subject)).Hypers |> List.map fst
                                       let shown = diffs |> List.map (fun d -> d.ToString("G2", CultureInfo.InvariantCulture))
                                       $"hypergradients of {Tensors.commas names} against op by op: relative differences {Tensors.commas shown} (float32)"
                                   | _ -> "")
                            else ""
                        add [ r.Subject; $"unroll of T = {s.UnrollHorizon}, {up:G4}M params in {r.Tensors} tensor(s), {r.Form}: {what} (ms per unroll)"
                              string t.Length; ms (median t); $"{ms (percentile 0.25 t)}-{ms (percentile 0.75 t)}"; ""; ""; ""; mb r.Timing.RssBefore; mb r.Timing.RssAfter; note ]
                    match u.Memory with
                    | Some m ->
                        let verdict = if isFlat m.FirstHalfMax m.SecondHalfMax m.FirstHalfMax then "flat" else $"GREW {mb (m.SecondHalfMax - m.FirstHalfMax)} MB"
                        add [ "adam"; $"unrolls of T = {s.UnrollHorizon} with backward, fused, {float s.MemoryParams / 1e6:G4}M params, native memory"
                              $"{m.Unrolls} x {s.UnrollHorizon}"; ms m.Ms; ""; ""; ""; ""; mb m.Before; mb m.After
                              $"{verdict} over {m.Steps} differentiable steps: peak VmRSS {mb m.FirstHalfMax} MB in the first half, {mb m.SecondHalfMax} MB in the second" ]
                    | None -> ()
                | None -> ()
                table.Caption <-
                    TableTitle(
                        "x bound = ms / (bytes per parameter x parameters / the fastest streaming kernel's bandwidth); vs torch.optim = torch.optim's ms / this ms; x fast = this ms / the fused kernel's ms. "
                        + "RSS = VmRSS after the warm-up and after the last timed step of round 1 (bench housekeeping trims between variants); "
                        + "native memory: VmRSS after the first step (episode) and the last; flat = grew at most max(32 MB, 5%) after the first tenth (meta-training: the peak of the second half over that of the first).")
                console.Write table
                let kernelTable = Table().AddColumns("bandwidth kernel", "bytes per element", $"best ms of {sittings} x {(5 * max 1 s.Rounds)} ({mparams:G4}M float32 in the steps' {s.Tensors} tensors; before the timed steps and after each round)", "GB/s")
                for k in kernels do
                    kernelTable.AddRow([| k.Name; $"{k.BytesPerElement:G3}"; ms k.BestMs; $"{k.Rate / 1e9:F1}" |] |> Array.map Markup.Escape) |> ignore
                if not kernels.IsEmpty then console.Write kernelTable
                for line in belowBound do
                    out.WriteLine $"WARNING: below the memory-bandwidth bound, which no step that moves these bytes can beat; the bound is measured wrong here: {line}"
                // The issue's targets, read off the rows above.
                let targets = Table().AddColumns("issue 10 target", "measured (same run)", "met")
                let yes (ok: bool) = if ok then "yes" else "NO"
                let trow (t: string) (m: string) (ok: bool) = targets.AddRow([| t; m; yes ok |] |> Array.map Markup.Escape) |> ignore
                for f in families do
                    let fastMs, torchMs = msOf $"{f.Label}/fast", msOf $"{f.Label}/torch"
                    trow $"1. {f.Label} fast path <= 1.3x bound, <= 0.5x {f.TorchName}"
                        $"{ratio (fastMs / boundOf f)} bound, {ratio (fastMs / torchMs)} torch.optim ({ms fastMs} / {ms (boundOf f)} / {ms torchMs} ms)"
                        (fastMs <= 1.3 * boundOf f && fastMs <= 0.5 * torchMs)
                for f in families |> List.filter (fun f -> f.Differentiable) do
                    let diffMs, fastMs, opsMs = msOf $"{f.Label}/diff", msOf $"{f.Label}/fast", msOf $"{f.Label}/diff-ops"
                    trow $"issue 15, 2. {f.Label} differentiable step's forward <= 2x the fused in-place step"
                        $"{ratio (diffMs / fastMs)} ({ms diffMs} / {ms fastMs} ms; op by op {ratio (opsMs / fastMs)})" (diffMs <= 2.0 * fastMs)
                for f in families |> List.filter (fun f -> f.Label = "adam" || f.Label = "sgd-momentum") do
                    let fastMs = msOf $"{f.Label}/fast"
                    trow $"issue 15, 3. {f.Label} fast path <= 1.15x the bound (fastest streaming kernel)"
                        $"{ratio (fastMs / boundOf f)} ({ms fastMs} / {ms (boundOf f)} ms)" (fastMs <= 1.15 * boundOf f)
                let flatAll = memory |> List.forall (fun m -> isFlat m.AtTenth m.After m.Before)
                let fullSteps = memory |> List.forall (fun m -> m.Steps >= s.MemorySteps)
                if s.MemoryRuns then
                    trow $"2. native memory flat over {s.MemorySteps} steps of every optimizer (default glibc allocator)"
                        $"""{memory.Length} runs, {(if flatAll then "all flat" else "some grew")}{(if fullSteps then "" else "; some stopped early at the time budget")}"""
                        (flatAll && fullSteps)
                match meta20 with
                | Some m ->
                    trow $"2. native memory flat over {s.MetaIterations} meta-iterations (HyperAdam, T = 20)"
                        $"peak VmRSS {mb m.FirstHalfMax} MB in the first half, {mb m.SecondHalfMax} MB in the second ({mb m.First} MB after the first, {mb m.Last} MB after the last)"
                        (isFlat m.FirstHalfMax m.SecondHalfMax m.FirstHalfMax)
                | None -> ()
                for f in families do
                    let pureMs, fastMs = msOf (f.Label + "/pure"), msOf (f.Label + "/fast")
                    let opsMs = msOf (f.Label + "/ops")
                    trow $"3. {f.Label} pure path <= 2x fast path"
                        $"{ratio (pureMs / fastMs)} ({ms pureMs} / {ms fastMs} ms); op by op, as meta-gradients need it: {ratio (opsMs / fastMs)}"
                        (pureMs <= 2.0 * fastMs)
                for m, windows, perEpisode in metaRows do
                    trow $"4. HyperAdam on MlpMnist, T = {m.Horizon}, {m.Threads} thread(s): <= 0.5 s per meta-iteration"
                        $"{perEpisode / float windows:F3} s per 20-step window (Theta update), {perEpisode:F2} s per episode of {windows} windows"
                        (perEpisode / float windows <= 0.5)
                for m, windows, perEpisode in metaRows |> List.filter (fun (m, _, _) -> m.Horizon = 100 && m.Threads = 2) do
                    trow "issue 15, 2. HyperAdam on MlpMnist, T = 100, 2 threads: <= 0.25 s per meta-iteration"
                        $"{perEpisode / float windows:F3} s per 20-step window (Theta update)" (perEpisode / float windows <= 0.25)
                match unroll with
                | Some u ->
                    for c in u.Rows |> List.map (fun r -> r.Tensors) |> List.distinct do
                        let find form backward = unrollMs u "adam" c form backward
                        let fwd, total = find "fused" false, find "fused" true
                        let opsFwd, opsTotal = find "op by op" false, find "op by op" true
                        trow $"issue 15, 2. Adam, T = {s.UnrollHorizon} unroll, {float s.UnrollParams / 1e6:G4}M params in {c} tensor(s): forward + backward <= 4x the forward alone"
                            $"{ratio (total / fwd)} ({ms total} / {ms fwd} ms); op by op {ms opsTotal} / {ms opsFwd} ms" (total <= 4.0 * fwd)
                    match u.Memory with
                    | Some m ->
                        trow $"issue 15, 2. native memory flat over {s.UnrollMemory * s.UnrollHorizon} differentiable steps (Adam unrolls with backward)"
                            $"{m.Steps} steps: peak VmRSS {mb m.FirstHalfMax} MB in the first half, {mb m.SecondHalfMax} MB in the second ({mb m.Before} MB after the first unroll, {mb m.After} MB after the last)"
                            (m.Unrolls >= s.UnrollMemory && isFlat m.FirstHalfMax m.SecondHalfMax m.FirstHalfMax)
                    | None -> ()
                | None -> ()
                if not hd.IsEmpty then
                    let hdMs, adamMs = hdMs "adam-hd", hdMs "adam"
                    trow "5. adam-hd <= 1.2x adam per step on MlpMnist" $"{ratio hdRatio} ({ms hdMs} / {ms adamMs} ms)" (hdRatio <= 1.2)
                console.Write targets
                // On a line of its own: a table caption would wrap it.
                out.WriteLine $"Reproduce: {s.Command}"
                out.Flush()
        finally
            torch.set_num_threads threads0
