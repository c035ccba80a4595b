namespace Optimizers.Experiments

open System
open System.Collections.Concurrent
open System.Diagnostics
open System.IO
open System.Security.Cryptography
open System.Text.Json
open System.Threading
open Spectre.Console
open TorchSharp
open Optimizers
open Optimizers.Tasks

/// How a sweep shows its progress.
[<RequireQualifiedAccess>]
type ProgressMode =
    /// Live progress bars (Spectre.Console) on an interactive terminal.
    | Bars of IAnsiConsole
    /// One line per finished run (logs of batch jobs, redirected output).
    | Lines of TextWriter
    | Silent

/// Progress of a sweep: one bar for the runs, one per worker for the steps of its current run.
module Progress =

    type Sink =
        { Started: int -> RunSpec -> unit
          Step: int -> RunSpec -> int -> unit
          Ended: int -> RunSpec -> RunOutcome -> unit }

    let describe (r: RunSpec) =
        let lr = match r.Lr with Some v -> " lr=" + Output.short v | None -> ""
        $"{r.TaskLabel} {r.OptimizerLabel}{lr} seed={r.Seed}"

    let private outcomeText (o: RunOutcome) =
        match o.Status with
        | "done" -> "final loss " + (o.FinalLoss |> Option.map Output.short |> Option.defaultValue "-")
        | "diverged" -> "diverged at step " + (o.DivergedStep |> Option.map string |> Option.defaultValue "?")
        | _ -> o.Error

    /// The terminal when it can show live bars (the process's own stderr, not redirected).
    let console (err: TextWriter) : IAnsiConsole option =
        if obj.ReferenceEquals(err, Console.Error) && not Console.IsErrorRedirected then
            Some(AnsiConsole.Create(AnsiConsoleSettings(Out = AnsiConsoleOutput(err), Ansi = AnsiSupport.Yes, Interactive = InteractionSupport.Yes)))
        else None

    /// The mode for --quiet and the writer of errors.
    let mode (quiet: bool) (err: TextWriter) =
        if quiet then ProgressMode.Silent
        else
            match console err with
            | Some c -> ProgressMode.Bars c
            | None -> ProgressMode.Lines err

    /// Run `work` with a sink that shows `total` runs over `jobs` workers.
    let run (mode: ProgressMode) (title: string) (total: int) (jobs: int) (work: Sink -> 'a) : 'a =
        match mode with
        | ProgressMode.Silent -> work { Started = (fun _ _ -> ()); Step = (fun _ _ _ -> ()); Ended = (fun _ _ _ -> ()) }
        | ProgressMode.Lines w ->
            let mutable finished = 0
            let gate = obj ()
            work
                { Started = (fun _ _ -> ())
                  Step = (fun _ _ _ -> ())
                  Ended =
                    fun _ r o ->
                        lock gate (fun () ->
                            finished <- finished + 1
                            w.WriteLine($"[{finished}/{total}] {o.Status,-8} {describe r}: {outcomeText o} ({o.WallSeconds:F1} s)")
                            w.Flush()) }
        | ProgressMode.Bars c ->
            c.Progress()
                .AutoClear(false)
                .Columns(TaskDescriptionColumn(), ProgressBarColumn(), PercentageColumn(), ElapsedTimeColumn(), RemainingTimeColumn())
                .Start(fun ctx ->
                    let all = ctx.AddTask(Markup.Escape title, true, float (max total 1))
                    let workers = Array.init jobs (fun i -> ctx.AddTask($"worker {i + 1}", true, 1.0))
                    let result =
                        work
                            { Started =
                                fun w r ->
                                    workers[w].Description <- Markup.Escape(describe r)
                                    workers[w].MaxValue <- float (max r.Steps 1)
                                    workers[w].Value <- 0.0
                              Step = fun w r k -> if k % max 1 (r.Steps / 100) = 0 then workers[w].Value <- float k
                              Ended =
                                fun w r _ ->
                                    workers[w].Value <- float (max r.Steps 1)
                                    all.Increment 1.0 }
                    all.Value <- all.MaxValue
                    for t in workers do
                        t.Description <- "done"
                        t.Value <- t.MaxValue
                    result)

/// What a sweep did.
type SweepSummary =
    { Db: string
      /// Runs of this invocation (after sharding).
      Total: int
      /// Finished before (skipped).
      Skipped: int
      /// Held by another live process (left alone).
      Busy: int
      Done: int
      Diverged: int
      Failed: int
      Outcomes: (RunSpec * RunOutcome) list
      WallSeconds: float }

/// Executes the runs of a grid, in parallel, resuming from the results database.
module Runner =

    type Settings =
        { Config: ExperimentConfig
          /// The runs to do (already expanded, quick applied, sharded).
          Runs: RunSpec list
          Db: string
          Jobs: int
          /// TorchSharp's intra-op threads; default: cores / jobs.
          Threads: int option
          TensorBoard: string option
          /// The command line of this invocation (recorded with every run).
          Command: string
          /// The command line that reproduces one run alone (recorded with it).
          Reproduce: RunSpec -> string
          Progress: ProgressMode }

    let private optionsJson (xs: (string * string) list) = ResultsStore.OptionsJson xs

    let private scheduleText (s: ScheduleSpec option) =
        match s with
        | Some s -> $"{{\"name\":{JsonSerializer.Serialize s.Name},\"options\":{optionsJson s.Options}}}"
        | None -> ""

    let private safe (s: string) =
        String(s |> Seq.map (fun c -> if Char.IsLetterOrDigit c || c = '-' || c = '_' || c = '.' then c else '_') |> Array.ofSeq)

    /// The learning rate a state keeps (hypergradient optimizers), averaged over its entries.
    let private stateLr (st: State) : float option =
        match State.watch "lr" st with
        | [] -> None
        | xs -> Some(xs |> List.averageBy (fun (_, t) -> use m = t.detach().mean() in m.ToDouble()))

    let private startHash (p: Tree) =
        let xs = Tree.toFloats p
        let bytes = Array.zeroCreate<byte> (xs.Length * 8)
        Buffer.BlockCopy(xs, 0, bytes, 0, bytes.Length)
        Convert.ToHexString(SHA256.HashData bytes).Substring(0, 16).ToLowerInvariant()

    /// Execute one run (no database): metrics at the recorded steps, measures at the end.
    /// Divergence gives status diverged; any other error status failed, with its message.
    let execute (r: RunSpec) (tensorboard: string option) (onStep: int -> unit) : RunOutcome =
        let sw = Stopwatch.StartNew()
        let metrics = ResizeArray<string * int * float>()
        let mutable sum = 0.0
        let mutable count = 0
        let mutable last = nan
        let mutable lowest = infinity
        let mutable startLoss = None
        let mutable hash = ""
        let lastMetric = Collections.Generic.Dictionary<string, float>()
        let reached = Collections.Generic.Dictionary<float, int>()
        let thresholds = r.Measures |> List.choose (fun m -> match m with Measure.StepsTo t -> Some t | _ -> None)
        // The last losses, as many as the longest mean_last:K asks for.
        let window = r.Measures |> List.choose (fun m -> match m with Measure.MeanLast k -> Some k | _ -> None) |> List.fold max 0
        let recent = Collections.Generic.Queue<float>()
        let writer =
            tensorboard |> Option.map (fun dir ->
                let lr = match r.Lr with Some v -> "lr=" + Output.num v | None -> "lr=default"
                let w = TensorBoard.create dir [ r.Config; r.TaskLabel; r.OptimizerLabel; lr; $"seed={r.Seed}" ]
                TensorBoard.hparams w
                    [ "config", r.Config; "task", r.Task; "task options", TensorBoard.options r.TaskOptions
                      "optimizer", r.Optimizer; "optimizer options", TensorBoard.options r.OptimizerOptions
                      "lr", (match r.Lr with Some v -> Output.num v | None -> "default")
                      "schedule", (match r.Schedule with Some sc -> $"{sc.Name} ({TensorBoard.options sc.Options})" | None -> "none")
                      "seed", string r.Seed; "steps", string r.Steps; "dtype", r.Dtype; "spec", r.Spec ]
                w)
        let record name k v =
            metrics.Add(name, k, v)
            lastMetric[name] <- v
            match writer with
            | Some w when name <> "loss" && name <> TaskMetrics.lr -> w.add_scalar(name, float32 v, k) // those two every step, below
            | _ -> ()
        let measures (finished: bool) =
            [ yield "final_loss", (if finished then Some last else None)
              yield "mean_loss", (if finished && count > 0 then Some(sum / float count) else None)
              yield "min_loss", (if count > 0 then Some lowest else None)
              for m in r.Measures do
                  match m with
                  | Measure.StepsTo t -> yield m.Name, (match reached.TryGetValue t with | true, k -> Some(float k) | _ -> None)
                  | Measure.Final name -> yield m.Name, (match lastMetric.TryGetValue name with | true, v when finished -> Some v | _ -> None)
                  | Measure.MeanLast k when finished && recent.Count > 0 -> yield m.Name, Some(recent |> Seq.skip (max 0 (recent.Count - k)) |> Seq.average)
                  | Measure.MeanLast _ -> yield m.Name, None
                  | _ -> () ]
            |> List.distinctBy fst
        let outcome status error diverged =
            { Status = status
              Metrics = List.ofSeq metrics
              Measures = measures (status = "done")
              FinalLoss = (if status = "done" then Some last else None)
              MeanLoss = (if status = "done" && count > 0 then Some(sum / float count) else None)
              DivergedStep = diverged
              Error = error
              WallSeconds = sw.Elapsed.TotalSeconds
              StartHash = hash
              StartLoss = startLoss }
        try
            let task = Registry.createTask r.Task r.TaskOptions
            let spec = { Name = r.Optimizer; Label = r.OptimizerLabel; Options = r.OptimizerOptions; Schedule = r.Schedule; Lrs = None }
            let opt, schedule = Config.createScheduled spec r.Lr r.Steps
            let wantLr = List.contains TaskMetrics.lr r.Metrics
            let taskMetrics = TaskMetrics.forTask r.Task |> List.filter (fun m -> List.contains m.Name r.Metrics)
            let start = task.Init { TaskInit.Default with Seed = r.Seed; Dtype = Tensors.parseDtype r.Dtype }
            try
                hash <- startHash start
                let fixedLr = match r.Lr with Some v -> Some v | None -> TensorBoard.optionLr r.Optimizer r.OptimizerOptions
                let observe (k: int) (loss: float) (p: Tree) (st: State) =
                    writer |> Option.iter (fun w -> TensorBoard.step w k loss (match schedule with Some f -> Some(f k) | None -> fixedLr) st)
                    if k = 0 then startLoss <- Some loss
                    sum <- sum + loss
                    count <- count + 1
                    last <- loss
                    lowest <- min lowest loss
                    if window > 0 then
                        recent.Enqueue loss
                        if recent.Count > window then recent.Dequeue() |> ignore
                    for t in thresholds do
                        if loss < t && not (reached.ContainsKey t) then reached[t] <- k
                    if k % r.RecordEvery = 0 || k = r.Steps then
                        record "loss" k loss
                        if wantLr then
                            match (match schedule with Some f -> Some(f k) | None -> stateLr st) with
                            | Some v -> record TaskMetrics.lr k v
                            | None -> ()
                        // measured where the optimizer says a model is (Lookahead: its slow weights)
                        let at = Transform.evaluationParams opt st p
                        for m in taskMetrics do
                            if k = r.Steps || not (List.contains m.Name r.FinalOnly) then record m.Name k (m.Compute r.TaskOptions at)
                    onStep k
                    true
                let p, st = Run.optimizeWhile task opt start r.Steps observe
                Tree.dispose p
                State.dispose st
                outcome "done" "" None
            finally
                Tree.dispose start
        with
        | DivergedException(step, loss) -> outcome "diverged" $"loss = {loss} at step {step}" (Some step)
        | e ->
            let first = e.Message.Split([| '\n'; '\r' |], StringSplitOptions.RemoveEmptyEntries) |> Array.tryHead |> Option.defaultValue "" 
            outcome "failed" $"{e.GetType().Name}: {first.Trim()}" None

    /// The worker side of WorkerProtocol: read runs from standard input, one JSON line each, run
    /// them one after the other, write steps and outcomes to standard output. Returns 0 at the end
    /// of the input (the parent closed it).
    let serveWorker () : int =
        match Environment.GetEnvironmentVariable "OPTIMIZERS_WORKER_THREADS" with
        | null | "" -> ()
        | t -> match Int32.TryParse t with | true, n when n > 0 -> torch.set_num_threads n | _ -> ()
        let stdout' = Console.Out
        let mutable line = Console.In.ReadLine()
        while not (isNull line) do
            if line.Trim() <> "" then
                let run, tensorboard = WorkerProtocol.parseRun line
                // Fault injection for the tests of a worker's death: CONFIG:INDEX aborts the process
                // (SIGABRT) when it is given that run.
                if Environment.GetEnvironmentVariable "OPTIMIZERS_WORKER_ABORT_AT" = $"{run.Config}:{run.Index}" then
                    Environment.FailFast "OPTIMIZERS_WORKER_ABORT_AT: aborting this worker as asked"
                let every = max 1 (run.Steps / 100)
                let o =
                    use _scope = torch.NewDisposeScope()
                    execute run tensorboard (fun k ->
                        if k % every = 0 then
                            stdout'.WriteLine(WorkerProtocol.stepJson k)
                            stdout'.Flush())
                stdout'.WriteLine(WorkerProtocol.outcomeJson o)
                stdout'.Flush()
            line <- Console.In.ReadLine()
        0

    /// The executable and leading arguments that start a worker, when this installation has one.
    let private workerCommand () : (string * string list) option =
        let dir = AppContext.BaseDirectory
        let host = Path.Combine(dir, (if OperatingSystem.IsWindows() then "optimizers.exe" else "optimizers"))
        let dll = Path.Combine(dir, "optimizers.dll")
        if File.Exists host then Some(host, [])
        elif File.Exists dll then
            match Environment.ProcessPath with
            | null -> None
            | p when Path.GetFileNameWithoutExtension(p) = "dotnet" -> Some(p, [ dll ])
            | _ -> None
        else None

    /// How a process that ended by itself or by a signal is described (exit 134 is SIGABRT).
    let private exitText (code: int) =
        let signals = Map.ofList [ 4, "SIGILL"; 6, "SIGABRT"; 7, "SIGBUS"; 8, "SIGFPE"; 9, "SIGKILL"; 11, "SIGSEGV"; 15, "SIGTERM" ]
        match signals.TryFind(code - 128) with
        | Some name when code > 128 -> $"exit {code}, {name}"
        | _ -> $"exit {code}"

    /// One worker process: started on demand, restarted after it dies.
    type private Worker(exe: string, args: string list, threads: int) =
        let mutable proc: Process option = None
        let errors = ConcurrentQueue<string>()

        member _.Start() =
            let psi = ProcessStartInfo(exe, RedirectStandardInput = true, RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false)
            for a in args do psi.ArgumentList.Add a
            psi.Environment[WorkerProtocol.envVar] <- string Environment.ProcessId
            psi.Environment["OPTIMIZERS_WORKER_THREADS"] <- string threads
            let p = Process.Start psi
            errors.Clear()
            p.ErrorDataReceived.Add(fun e ->
                if not (isNull e.Data) && e.Data.Trim() <> "" then
                    errors.Enqueue e.Data
                    let mutable dropped = ""
                    while errors.Count > 200 && errors.TryDequeue(&dropped) do ())
            p.BeginErrorReadLine()
            proc <- Some p
            p

        /// Run one run in the worker; a worker that dies fails the run with why it died.
        member this.Run(r: RunSpec, tensorboard: string option, onStep: int -> unit) : RunOutcome =
            let sw = Stopwatch.StartNew()
            let p = match proc with Some p when not p.HasExited -> p | _ -> this.Start()
            let died () =
                (try p.StandardInput.Close() with _ -> ())
                if not (p.WaitForExit 30000) then (try p.Kill true with _ -> ())
                p.WaitForExit()
                let code = p.ExitCode
                proc <- None
                p.Dispose()
                let lines = List.ofSeq errors
                // LibTorch's abort says what() on one line; otherwise the first line the worker wrote.
                let why =
                    lines |> List.tryFind (fun l -> l.Contains "what():")
                    |> Option.orElse (lines |> List.tryFind (fun l -> l.StartsWith "terminate called"))
                    |> Option.orElse (List.tryHead lines)
                    |> Option.map (fun l -> let l = l.Trim() in if l.Length > 300 then l.Substring(0, 300) + "..." else l)
                let why = match why with Some w -> ": " + w | None -> ""
                { Status = "failed"; Metrics = []; Measures = []; FinalLoss = None; MeanLoss = None; DivergedStep = None
                  Error = $"the worker process running it died ({exitText code}), a native crash{why}; the other runs went on, and a rerun redoes this one"
                  WallSeconds = sw.Elapsed.TotalSeconds; StartHash = ""; StartLoss = None }
            try
                p.StandardInput.WriteLine(WorkerProtocol.runJson r tensorboard)
                p.StandardInput.Flush()
                let mutable result = None
                while result.IsNone do
                    match p.StandardOutput.ReadLine() with
                    | null -> result <- Some(died ())
                    | line when line.StartsWith "{" ->
                        match (try Some(WorkerProtocol.parseLine line) with _ -> None) with
                        | Some(Choice1Of2 k) -> onStep k
                        | Some(Choice2Of2 o) -> result <- Some o
                        | None -> ()
                    | _ -> ()
                result.Value
            with :? IOException -> died ()

        member _.Stop() =
            match proc with
            | Some p ->
                (try p.StandardInput.Close() with _ -> ())
                if not (p.WaitForExit 30000) then (try p.Kill true with _ -> ())
                p.Dispose()
                proc <- None
            | None -> ()

    /// Run every run of the settings that the database does not hold finished; `jobs` at a time.
    let sweep (s: Settings) : SweepSummary =
        let sw = Stopwatch.StartNew()
        use store = new ResultsStore(s.Db)
        store.SaveConfig(s.Config.Name, s.Config.Source, s.Config.Json)
        let measures = [ "final_loss"; "mean_loss" ] @ (s.Config.Measures |> List.map (fun m -> m.Name)) |> List.distinct
        // The metrics a finished run must have: those its task offers ("lr" only where there is one).
        let required =
            let byKey = s.Runs |> List.map (fun r -> r.Key, r) |> Map.ofList
            fun (key: string) ->
                let r = byKey[key]
                let offered = TaskMetrics.forTask r.Task |> List.map (fun m -> m.Name)
                r.Metrics |> List.filter (fun m -> List.contains m offered)
        let finished, incomplete, busy = store.Finished(s.Runs |> List.map (fun r -> r.Key), measures, required)
        let todo = s.Runs |> List.filter (fun r -> not (finished.Contains r.Key) && not (busy.Contains r.Key))
        let jobs = max 1 (min s.Jobs (max 1 todo.Length))
        let threadsBefore = torch.get_num_threads ()
        let threads = match s.Threads with Some t -> max 1 t | None -> max 1 (Environment.ProcessorCount / jobs)
        torch.set_num_threads threads
        let owner = ResultsStore.BeginOwner()
        let outcomes = ConcurrentBag<RunSpec * RunOutcome>()
        let mutable raced = 0
        try
            Progress.run s.Progress $"{s.Config.Name}: {todo.Length} runs" todo.Length jobs (fun sink ->
                let queue = ConcurrentQueue<RunSpec>(todo)
                // More than one job: each in a worker process (WorkerProtocol), unless asked for threads.
                // Live bars redraw from a thread of their own, which allocates too: one job then
                // runs in a worker as well.
                let bars = match s.Progress with ProgressMode.Bars _ -> true | _ -> false
                let processes =
                    if (jobs > 1 || bars) && Environment.GetEnvironmentVariable WorkerProtocol.modeVar <> "threads" then workerCommand () else None
                let worker (w: int) () =
                    let proc = processes |> Option.map (fun (exe, args) -> Worker(exe, args, threads))
                    try
                        let mutable r = Unchecked.defaultof<RunSpec>
                        while queue.TryDequeue(&r) do
                            let run = r
                            let claimed =
                                store.Claim(run, s.Command, s.Reproduce run, owner, optionsJson run.TaskOptions, optionsJson run.OptimizerOptions,
                                            scheduleText run.Schedule, incomplete.Contains run.Key)
                            if claimed then
                                sink.Started w run
                                let o =
                                    match proc with
                                    | Some p -> p.Run(run, s.TensorBoard, sink.Step w run)
                                    | None -> execute run s.TensorBoard (sink.Step w run)
                                store.Finish(run, o)
                                outcomes.Add((run, o))
                                sink.Ended w run o
                            else Interlocked.Increment(&raced) |> ignore
                    finally
                        proc |> Option.iter (fun p -> p.Stop())
                let threads = [ for w in 0 .. jobs - 1 -> Threading.Tasks.Task.Factory.StartNew(worker w, Threading.Tasks.TaskCreationOptions.LongRunning) ]
                try Threading.Tasks.Task.WaitAll(Array.ofList threads)
                with :? AggregateException as a ->
                    // A database that fails while the sweep writes (a full disk, a file made
                    // read-only) is named, in one line; finished runs are already stored.
                    match a.Flatten().InnerExceptions |> Seq.tryPick (fun e -> match e with :? Microsoft.Data.Sqlite.SqliteException as q -> Some q | _ -> None) with
                    | Some q -> raise (InvalidDataException($"results database '{s.Db}' {StoreCheck.describe q}; the finished runs are stored, rerun to do the rest", q))
                    | None -> raise (a.Flatten().InnerExceptions[0]))
        finally
            ResultsStore.EndOwner owner
            torch.set_num_threads threadsBefore
        let all = outcomes |> List.ofSeq |> List.sortBy (fun (r, _) -> r.Index)
        let count status = all |> List.filter (fun (_, o) -> o.Status = status) |> List.length
        { Db = store.Path
          Total = s.Runs.Length
          Skipped = finished.Count
          Busy = busy.Count + raced
          Done = count "done"
          Diverged = count "diverged"
          Failed = count "failed"
          Outcomes = all
          WallSeconds = sw.Elapsed.TotalSeconds }
