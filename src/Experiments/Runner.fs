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
                torch.utils.tensorboard.SummaryWriter(Path.Combine(dir, safe r.Config, safe r.TaskLabel, safe r.OptimizerLabel, lr, $"seed={r.Seed}")))
        let record name k v =
            metrics.Add(name, k, v)
            lastMetric[name] <- v
            match writer with
            | Some w -> w.add_scalar(name, float32 v, k)
            | None -> ()
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
            let opt = Config.createOptimizer spec r.Lr r.Steps
            let schedule =
                r.Schedule |> Option.map (fun s ->
                    let baseLr = match r.Lr with Some v -> v | None -> Registry.learningRateOf r.Optimizer r.OptimizerOptions
                    Registry.createSchedule s.Name baseLr (Some r.Steps) s.Options)
            let wantLr = List.contains TaskMetrics.lr r.Metrics
            let taskMetrics = TaskMetrics.forTask r.Task |> List.filter (fun m -> List.contains m.Name r.Metrics)
            let start = task.Init { TaskInit.Default with Seed = r.Seed; Dtype = Tensors.parseDtype r.Dtype }
            try
                hash <- startHash start
                let observe (k: int) (loss: float) (p: Tree) (st: State) =
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
                        for m in taskMetrics do
                            if k = r.Steps || not (List.contains m.Name r.FinalOnly) then record m.Name k (m.Compute r.TaskOptions p)
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
        | e -> outcome "failed" $"{e.GetType().Name}: {e.Message}" None

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
                let worker (w: int) () =
                    let mutable r = Unchecked.defaultof<RunSpec>
                    while queue.TryDequeue(&r) do
                        let run = r
                        let claimed =
                            store.Claim(run, s.Command, s.Reproduce run, owner, optionsJson run.TaskOptions, optionsJson run.OptimizerOptions,
                                        scheduleText run.Schedule, incomplete.Contains run.Key)
                        if claimed then
                            sink.Started w run
                            let o = execute run s.TensorBoard (sink.Step w run)
                            store.Finish(run, o)
                            outcomes.Add((run, o))
                            sink.Ended w run o
                        else Interlocked.Increment(&raced) |> ignore
                let threads = [ for w in 0 .. jobs - 1 -> Threading.Tasks.Task.Factory.StartNew(worker w, Threading.Tasks.TaskCreationOptions.LongRunning) ]
                Threading.Tasks.Task.WaitAll(Array.ofList threads))
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
