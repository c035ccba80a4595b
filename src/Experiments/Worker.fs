namespace Optimizers.Experiments

open System
open System.Globalization
open System.Text.Json
open System.Text.Json.Nodes

/// The line protocol between a sweep and its worker processes (issue 20). `--jobs N` runs each run
/// in one of N child processes of the same executable, so that no two runs share a process: with
/// runs as threads of one process, a GC started by one run's thread let the finalizer free
/// Scalars that TorchSharp had handed to another run's native call (its implicit Scalars are held
/// by nothing during the call), which corrupted memory and could abort the whole process. A
/// worker that dies (a native abort) fails the run it was doing, with the reason; the sweep goes
/// on with a new worker.
///
/// Parent to worker, one JSON line per run: {"run": RunSpec, "tensorboard": dir or null}.
/// Worker to parent: {"step": k} now and then, and {"outcome": RunOutcome} when the run ends.
/// Numbers travel as round-trip strings ("R"), so NaN and infinities survive and nothing is rounded.
module WorkerProtocol =

    /// The environment variable that makes the executable a worker (its value: the parent's pid).
    let envVar = "OPTIMIZERS_WORKER"

    /// Set to "threads" to run --jobs as threads of one process, as before issue 20 (unsafe: see above).
    let modeVar = "OPTIMIZERS_JOBS_MODE"

    let private f (v: float) = JsonValue.Create(v.ToString("R", CultureInfo.InvariantCulture)) :> JsonNode
    let private pf (n: JsonNode) = Double.Parse(n.GetValue<string>(), NumberStyles.Float, CultureInfo.InvariantCulture)
    let private s (v: string) = JsonValue.Create(v) :> JsonNode
    let private i (v: int) = JsonValue.Create(v) :> JsonNode
    let private arr (xs: JsonNode seq) = JsonArray(Array.ofSeq xs) :> JsonNode
    let private pairs (xs: (string * string) list) = arr [ for a, b in xs -> arr [ s a; s b ] ]
    let private ppairs (n: JsonNode) = [ for x in n.AsArray() -> x[0].GetValue<string>(), x[1].GetValue<string>() ]
    let private opt (g: 'a -> JsonNode) (v: 'a option) = match v with Some x -> g x | None -> null
    let private popt (g: JsonNode -> 'a) (n: JsonNode) = if isNull n then None else Some(g n)
    let private str (n: JsonNode) = n.GetValue<string>()
    let private int' (n: JsonNode) = n.GetValue<int>()

    let private measure (m: Measure) =
        match m with
        | Measure.FinalLoss -> arr [ s "final_loss" ]
        | Measure.MeanLoss -> arr [ s "mean_loss" ]
        | Measure.MinLoss -> arr [ s "min_loss" ]
        | Measure.StepsTo t -> arr [ s "steps_to"; f t ]
        | Measure.Final name -> arr [ s "final"; s name ]
        | Measure.MeanLast k -> arr [ s "mean_last"; i k ]

    let private pmeasure (n: JsonNode) =
        match str n[0] with
        | "final_loss" -> Measure.FinalLoss
        | "mean_loss" -> Measure.MeanLoss
        | "min_loss" -> Measure.MinLoss
        | "steps_to" -> Measure.StepsTo(pf n[1])
        | "final" -> Measure.Final(str n[1])
        | "mean_last" -> Measure.MeanLast(int' n[1])
        | other -> failwith $"worker protocol: unknown measure {other}"

    let runJson (r: RunSpec) (tensorboard: string option) : string =
        let o = JsonObject()
        o["config"] <- s r.Config
        o["index"] <- i r.Index
        o["task"] <- s r.Task
        o["task_label"] <- s r.TaskLabel
        o["task_options"] <- pairs r.TaskOptions
        o["optimizer"] <- s r.Optimizer
        o["optimizer_label"] <- s r.OptimizerLabel
        o["optimizer_options"] <- pairs r.OptimizerOptions
        o["schedule"] <- opt (fun (sc: ScheduleSpec) -> arr [ s sc.Name; pairs sc.Options ]) r.Schedule
        o["lr"] <- opt f r.Lr
        o["seed"] <- i r.Seed
        o["steps"] <- i r.Steps
        o["dtype"] <- s r.Dtype
        o["record_every"] <- i r.RecordEvery
        o["metrics"] <- arr (r.Metrics |> List.map s)
        o["final_only"] <- arr (r.FinalOnly |> List.map s)
        o["measures"] <- arr (r.Measures |> List.map measure)
        o["spec"] <- s r.Spec
        o["key"] <- s r.Key
        let line = JsonObject()
        line["run"] <- o
        line["tensorboard"] <- opt s tensorboard
        line.ToJsonString()

    let parseRun (line: string) : RunSpec * string option =
        let root = JsonNode.Parse line
        let o = root["run"]
        let r =
            { Config = str o["config"]
              Index = int' o["index"]
              Task = str o["task"]
              TaskLabel = str o["task_label"]
              TaskOptions = ppairs o["task_options"]
              Optimizer = str o["optimizer"]
              OptimizerLabel = str o["optimizer_label"]
              OptimizerOptions = ppairs o["optimizer_options"]
              Schedule = o["schedule"] |> popt (fun n -> { Name = str n[0]; Options = ppairs n[1] })
              Lr = o["lr"] |> popt pf
              Seed = int' o["seed"]
              Steps = int' o["steps"]
              Dtype = str o["dtype"]
              RecordEvery = int' o["record_every"]
              Metrics = [ for m in o["metrics"].AsArray() -> str m ]
              FinalOnly = [ for m in o["final_only"].AsArray() -> str m ]
              Measures = [ for m in o["measures"].AsArray() -> pmeasure m ]
              Spec = str o["spec"]
              Key = str o["key"] }
        r, root["tensorboard"] |> popt str

    let outcomeJson (x: RunOutcome) : string =
        let o = JsonObject()
        o["status"] <- s x.Status
        o["metrics"] <- arr [ for name, k, v in x.Metrics -> arr [ s name; i k; f v ] ]
        o["measures"] <- arr [ for name, v in x.Measures -> arr [ s name; opt f v ] ]
        o["final_loss"] <- opt f x.FinalLoss
        o["mean_loss"] <- opt f x.MeanLoss
        o["diverged_step"] <- opt i x.DivergedStep
        o["error"] <- s x.Error
        o["wall_seconds"] <- f x.WallSeconds
        o["start_hash"] <- s x.StartHash
        o["start_loss"] <- opt f x.StartLoss
        let line = JsonObject()
        line["outcome"] <- o
        line.ToJsonString()

    let stepJson (k: int) = $"{{\"step\":{k}}}"

    /// A worker's line: Choice1Of2 a step, Choice2Of2 the outcome.
    let parseLine (line: string) : Choice<int, RunOutcome> =
        let root = JsonNode.Parse line
        match root["step"] with
        | null ->
            let o = root["outcome"]
            Choice2Of2
                { Status = str o["status"]
                  Metrics = [ for m in o["metrics"].AsArray() -> str m[0], int' m[1], pf m[2] ]
                  Measures = [ for m in o["measures"].AsArray() -> str m[0], popt pf m[1] ]
                  FinalLoss = popt pf o["final_loss"]
                  MeanLoss = popt pf o["mean_loss"]
                  DivergedStep = popt int' o["diverged_step"]
                  Error = str o["error"]
                  WallSeconds = pf o["wall_seconds"]
                  StartHash = str o["start_hash"]
                  StartLoss = popt pf o["start_loss"] }
        | k -> Choice1Of2(k.GetValue<int>())
