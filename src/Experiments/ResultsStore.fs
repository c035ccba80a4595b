namespace Optimizers.Experiments

open System
open System.Collections.Generic
open System.Diagnostics
open System.IO
open System.Text.Json
open Microsoft.Data.Sqlite

/// A run as the database holds it.
type RunRow =
    { Key: string
      Spec: string
      Config: string
      Task: string
      TaskLabel: string
      TaskOptions: string
      Optimizer: string
      OptimizerLabel: string
      OptimizerOptions: string
      Schedule: string
      Lr: float option
      Seed: int
      Steps: int
      Dtype: string
      /// running, done, failed or diverged
      Status: string
      Command: string
      Reproduce: string
      Host: string
      Pid: int
      Attempts: int
      StartedAt: string
      FinishedAt: string
      WallSeconds: float option
      FinalLoss: float option
      MeanLoss: float option
      DivergedStep: int option
      Error: string }

/// What a finished run leaves: its status, metrics and measures, written in one transaction.
type RunOutcome =
    { Status: string
      /// (name, step, value)
      Metrics: (string * int * float) list
      /// (measure name, value; None when not reached or not defined)
      Measures: (string * float option) list
      FinalLoss: float option
      MeanLoss: float option
      DivergedStep: int option
      Error: string
      WallSeconds: float
      /// SHA-256 prefix of the initial parameters and the loss there (the seeds table).
      StartHash: string
      StartLoss: float option }

/// Who is running a run: this machine and process, and the invocation within the process.
type RunOwner =
    { Host: string
      Pid: int
      PidStart: string
      Owner: string }

/// The results database (SQLite): runs, per-step metrics, per-run measures, configs and seeds.
///
/// Consistency under kill -9: a run is claimed (status running, with host, pid and process start
/// time) in one transaction, and its metrics, measures and final status are written in another,
/// so the database never holds half a run. A run marked running whose process is gone is redone
/// (its leftovers deleted) by the next invocation; one whose process still runs is left alone.
/// WAL journal mode lets readers (report, export) work while a sweep writes.
/// Checks a file before it is opened as a results database (issue 20): every problem is bad input,
/// an InvalidDataException whose message names the file, says what is wrong and what to do, and
/// nothing writes to the file before the checks pass.
module StoreCheck =

    let private fix = "give a results database written by `optimizers run` (or a new file name)"

    let private fail (path: string) (what: string) : 'a =
        let what = what.Replace("\r", " ").Replace("\n", " ").Replace("***", "").Replace("  ", " ")
        raise (InvalidDataException $"results database '{path}' {what}; {fix}")

    /// The tables of a results database and the columns each must have.
    let expected =
        [ "meta", [ "key"; "value" ]
          "configs", [ "name"; "hash"; "source"; "json"; "added_at" ]
          "runs", [ "run_key"; "spec"; "config"; "task"; "task_options"; "optimizer"; "optimizer_options"; "lr"; "seed"; "steps"; "dtype"; "status"; "error" ]
          "metrics", [ "run_key"; "name"; "step"; "value" ]
          "measures", [ "run_key"; "name"; "value" ]
          "seeds", [ "task"; "task_options"; "dtype"; "seed"; "start_hash" ] ]

    /// What SQLite's error code means for the user, for messages about a database file.
    let describe (e: SqliteException) =
        match e.SqliteErrorCode with
        | 5 | 6 -> "is locked by another process; wait for it or give another file"
        | 8 -> "cannot be written (read-only file or file system); make it writable or give another file"
        | 10 -> "could not be read or written (I/O error); check the disk and the file"
        | 11 | 26 -> "is corrupt or not an SQLite database"
        | 13 -> "cannot grow: the disk is full; free some space or give a file on another disk"
        | 14 -> "cannot be opened; check that its folder exists and is writable"
        | 23 -> "cannot be accessed (permission denied); check its permissions"
        | c ->
            let first = e.Message.Split('\n').[0].Trim()
            $"gave SQLite error {c} ({first})"

    /// Validate `path` as a results database. `create`: a missing or empty file is fine (it will be
    /// created); otherwise the file must exist. Checks, in order: not a folder, the SQLite header and
    /// the size it announces (truncation), writability (when `write`), then, read-only, SQLite's
    /// quick_check and the schema (our tables with their columns, or no tables at all).
    let validate (path: string) (create: bool) (write: bool) =
        let full = Path.GetFullPath path
        if Directory.Exists full then fail path "is a folder, not a file"
        if not (File.Exists full) then
            if not create then raise (FileNotFoundException($"results database '{path}' not found; check the path (run the config first to create it)", path))
            match Path.GetDirectoryName full with
            | null | "" -> ()
            | dir when File.Exists dir -> fail path $"cannot be created: '{dir}' is a file, not a folder"
            | _ -> ()
        else
            let length = FileInfo(full).Length
            if length = 0L then
                if not create then fail path "is empty"
            else
                let header = Array.zeroCreate<byte> 100
                let n =
                    try
                        use f = new FileStream(full, FileMode.Open, FileAccess.Read, FileShare.ReadWrite)
                        f.Read(header, 0, 100)
                    with :? UnauthorizedAccessException -> fail path "cannot be read (permission denied); check its permissions"
                let magic = "SQLite format 3\000"B
                if n < 16 || header[0..15] <> magic then fail path "is not an SQLite database"
                if n < 100 then fail path $"is truncated ({length} bytes, less than an SQLite header)"
                let pageSize =
                    let p = (int header[16] <<< 8) ||| int header[17]
                    if p = 1 then 65536 else p
                if pageSize < 512 || pageSize > 65536 || (pageSize &&& (pageSize - 1)) <> 0 then fail path "has a corrupt header (page size)"
                let be (o: int) = (uint32 header[o] <<< 24) ||| (uint32 header[o + 1] <<< 16) ||| (uint32 header[o + 2] <<< 8) ||| uint32 header[o + 3]
                let pages = be 28
                // With a write-ahead log not yet checkpointed, the log holds pages the file lacks
                // (an interrupted checkpoint may have written page 1 first): quick_check judges then.
                let wal = FileInfo(full + "-wal")
                if not (wal.Exists && wal.Length > 0L) then
                    // The in-header size is valid when the version-valid-for number equals the change counter.
                    if pages > 0u && be 92 = be 24 && length < int64 pages * int64 pageSize then
                        fail path $"is truncated ({length} bytes; its header says {int64 pages * int64 pageSize})"
                    if length % int64 pageSize <> 0L then fail path $"is truncated or damaged ({length} bytes is not a whole number of {pageSize}-byte pages)"
                if write then
                    try
                        use _ = new FileStream(full, FileMode.Open, FileAccess.ReadWrite, FileShare.ReadWrite)
                        ()
                    with
                    | :? UnauthorizedAccessException -> fail path "cannot be written (read-only); make it writable or give another file"
                    | :? IOException as e -> fail path $"cannot be opened for writing ({e.Message})"
                let tables, problems =
                    try
                        let cs = SqliteConnectionStringBuilder(DataSource = full, Mode = SqliteOpenMode.ReadOnly, Pooling = false, DefaultTimeout = 60)
                        use c = new SqliteConnection(cs.ToString())
                        c.Open()
                        let query (sql: string) =
                            use cmd = c.CreateCommand()
                            cmd.CommandText <- sql
                            use r = cmd.ExecuteReader()
                            [ while r.Read() do yield (if r.IsDBNull 0 then "" else r.GetValue(0).ToString()) ]
                        let check = query "PRAGMA quick_check(5)"
                        let tables = query "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
                        let missing =
                            [ for t, cols in expected do
                                if List.contains t tables then
                                    let have = query $"SELECT name FROM pragma_table_info('{t}')"
                                    for col in cols do
                                        if not (List.contains col have) then yield $"{t}.{col}" ]
                        tables, (check, missing)
                    with :? SqliteException as e -> fail path (describe e)
                let check, missing = problems
                let join (xs: string list) = String.Join(", ", xs |> List.truncate 5)
                if check <> [ "ok" ] then fail path $"is corrupt (SQLite's integrity check: {join check})"
                let ours = expected |> List.map fst
                let foreign = tables |> List.filter (fun t -> not (List.contains t ours))
                let present = tables |> List.filter (fun t -> List.contains t ours)
                if not tables.IsEmpty && present.IsEmpty then
                    fail path $"is an SQLite database of something else (tables: {join foreign})"
                if not present.IsEmpty && present.Length < ours.Length && not foreign.IsEmpty then
                    fail path $"is an SQLite database of something else (tables: {join tables})"
                if not missing.IsEmpty then
                    fail path $"has a foreign schema (missing columns: {join missing})"

type ResultsStore(path: string, ?readOnly: bool) =
    let fullPath = Path.GetFullPath path
    let readOnly = defaultArg readOnly false
    do
        StoreCheck.validate path (not readOnly) (not readOnly)
        match Path.GetDirectoryName fullPath with
        | null | "" -> ()
        | dir ->
            try Directory.CreateDirectory dir |> ignore
            with :? IOException | :? UnauthorizedAccessException as e ->
                raise (InvalidDataException($"results database '{path}' cannot be created: its folder '{dir}' cannot be made ({e.Message}); give a file in a writable folder", e))
    let conn =
        let c = new SqliteConnection(SqliteConnectionStringBuilder(DataSource = fullPath, Pooling = false, DefaultTimeout = 60).ToString())
        try c.Open()
        with :? SqliteException as e ->
            c.Dispose()
            raise (InvalidDataException($"results database '{path}' {StoreCheck.describe e}", e))
        c
    let gate = obj ()

    static let schemaVersion = "1"
    static let active = HashSet<string>()
    static let me =
        let p = Process.GetCurrentProcess()
        { Host = Environment.MachineName; Pid = Environment.ProcessId; PidStart = p.StartTime.ToUniversalTime().ToString("o"); Owner = "" }

    let exec (sql: string) =
        use cmd = conn.CreateCommand()
        cmd.CommandText <- sql
        cmd.ExecuteNonQuery() |> ignore

    let command (sql: string) (ps: (string * obj) list) =
        let cmd = conn.CreateCommand()
        cmd.CommandText <- sql
        for n, v in ps do cmd.Parameters.AddWithValue(n, (if isNull v then box DBNull.Value else v)) |> ignore
        cmd

    let scalar (sql: string) (ps: (string * obj) list) =
        use cmd = command sql ps
        cmd.ExecuteScalar()

    let optF (v: float option) = match v with Some x when not (Double.IsNaN x) -> box x | _ -> null
    let optI (v: int option) = match v with Some x -> box x | None -> null
    let str (r: SqliteDataReader) (i: int) = if r.IsDBNull i then "" else r.GetString i
    let flt (r: SqliteDataReader) (i: int) = if r.IsDBNull i then None else Some(r.GetDouble i)
    let int (r: SqliteDataReader) (i: int) = if r.IsDBNull i then None else Some(r.GetInt32 i)

    let init () =
        exec "PRAGMA journal_mode=WAL"
        exec "PRAGMA synchronous=NORMAL"
        exec """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS configs (
  name TEXT NOT NULL, hash TEXT NOT NULL, source TEXT, json TEXT NOT NULL, added_at TEXT NOT NULL,
  PRIMARY KEY (name, hash));
CREATE TABLE IF NOT EXISTS runs (
  run_key TEXT PRIMARY KEY, spec TEXT NOT NULL, config TEXT NOT NULL,
  task TEXT NOT NULL, task_label TEXT, task_options TEXT NOT NULL,
  optimizer TEXT NOT NULL, optimizer_label TEXT, optimizer_options TEXT NOT NULL, schedule TEXT,
  lr REAL, seed INTEGER NOT NULL, steps INTEGER NOT NULL, dtype TEXT NOT NULL,
  status TEXT NOT NULL CHECK (status IN ('running', 'done', 'failed', 'diverged')),
  command TEXT, reproduce TEXT, host TEXT, pid INTEGER, pid_start TEXT, owner TEXT,
  attempts INTEGER NOT NULL DEFAULT 0, started_at TEXT, finished_at TEXT, wall_seconds REAL,
  final_loss REAL, mean_loss REAL, diverged_step INTEGER, error TEXT);
CREATE INDEX IF NOT EXISTS runs_config ON runs (config);
CREATE TABLE IF NOT EXISTS metrics (
  run_key TEXT NOT NULL, name TEXT NOT NULL, step INTEGER NOT NULL, value REAL,
  PRIMARY KEY (run_key, name, step)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS measures (
  run_key TEXT NOT NULL, name TEXT NOT NULL, value REAL,
  PRIMARY KEY (run_key, name)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS seeds (
  task TEXT NOT NULL, task_options TEXT NOT NULL, dtype TEXT NOT NULL, seed INTEGER NOT NULL,
  start_hash TEXT NOT NULL, start_loss REAL,
  PRIMARY KEY (task, task_options, dtype, seed));
"""
        match scalar "SELECT value FROM meta WHERE key = 'schema'" [] with
        | :? string as v when v <> schemaVersion ->
            raise (InvalidDataException $"{fullPath}: results database schema {v}, this version reads schema {schemaVersion}")
        | :? string -> ()
        | _ -> exec $"INSERT INTO meta (key, value) VALUES ('schema', '{schemaVersion}')"

    do
        try init ()
        with e ->
            conn.Dispose()
            match e with
            | :? SqliteException as e -> raise (InvalidDataException($"results database '{path}' {StoreCheck.describe e}", e))
            | _ -> reraise ()

    let readRun (r: SqliteDataReader) : RunRow =
        { Key = r.GetString 0; Spec = str r 1; Config = str r 2; Task = str r 3; TaskLabel = str r 4; TaskOptions = str r 5
          Optimizer = str r 6; OptimizerLabel = str r 7; OptimizerOptions = str r 8; Schedule = str r 9; Lr = flt r 10
          Seed = r.GetInt32 11; Steps = r.GetInt32 12; Dtype = str r 13; Status = str r 14; Command = str r 15; Reproduce = str r 16
          Host = str r 17; Pid = defaultArg (int r 18) 0; Attempts = defaultArg (int r 19) 0; StartedAt = str r 20; FinishedAt = str r 21
          WallSeconds = flt r 22; FinalLoss = flt r 23; MeanLoss = flt r 24; DivergedStep = int r 25; Error = str r 26 }

    static let runColumns =
        "run_key, spec, config, task, task_label, task_options, optimizer, optimizer_label, optimizer_options, schedule, lr, seed, steps, dtype, "
        + "status, command, reproduce, host, pid, attempts, started_at, finished_at, wall_seconds, final_loss, mean_loss, diverged_step, error"

    static let now () = DateTime.UtcNow.ToString("yyyy-MM-ddTHH:mm:ss.fffZ")

    /// True when a row marked running belongs to a process that is still at work on it.
    static let isLive (host: string) (pid: int) (pidStart: string) (owner: string) =
        lock active (fun () -> active.Contains owner)
        || (host = me.Host && pid <> me.Pid
            && (try
                    use p = Process.GetProcessById pid
                    let started = p.StartTime.ToUniversalTime()
                    match DateTime.TryParse(pidStart, null, Globalization.DateTimeStyles.RoundtripKind) with
                    | true, t -> abs (t.ToUniversalTime() - started).TotalSeconds < 2.0
                    | _ -> false
                with _ -> false))

    /// The database file.
    member _.Path = fullPath

    /// Options as a JSON object with sorted names (how the runs and seeds tables store them).
    static member OptionsJson(xs: (string * string) list) : string =
        let item (k: string, v: string) = JsonSerializer.Serialize k + ":" + JsonSerializer.Serialize v
        "{" + String.Join(",", xs |> List.sortBy fst |> List.map item) + "}"

    /// A new owner token for one invocation of this process (its running rows count as live
    /// until `EndOwner`).
    static member BeginOwner() : RunOwner =
        let o = { me with Owner = Guid.NewGuid().ToString("N") }
        lock active (fun () -> active.Add o.Owner |> ignore)
        o

    static member EndOwner(o: RunOwner) = lock active (fun () -> active.Remove o.Owner |> ignore)

    /// Record a config's JSON (once per distinct text).
    member _.SaveConfig(name: string, source: string, json: string) =
        lock gate (fun () ->
            let hash = Config.keyOf json
            use cmd =
                command "INSERT OR IGNORE INTO configs (name, hash, source, json, added_at) VALUES ($n, $h, $s, $j, $t)"
                    [ "$n", box name; "$h", box hash; "$s", box source; "$j", box json; "$t", box (now ()) ]
            cmd.ExecuteNonQuery() |> ignore)

    /// Every stored config: (name, json, added_at), newest last.
    member _.Configs() : (string * string * string) list =
        lock gate (fun () ->
            use cmd = command "SELECT name, json, added_at FROM configs ORDER BY added_at, name" []
            use r = cmd.ExecuteReader()
            [ while r.Read() do yield r.GetString 0, r.GetString 1, r.GetString 2 ])

    /// Sort `keys` by what they need. finished: done or diverged, and (if done) having every measure
    /// and metric asked for (`metrics` gives a run's by key); incomplete: done but lacking some (they are redone); busy: running in a
    /// live process. Returns (finished, incomplete, busy); the other keys are to run.
    member _.Finished(keys: string list, measures: string list, metrics: string -> string list) : Set<string> * Set<string> * Set<string> =
        lock gate (fun () ->
            let wanted = Set.ofList keys
            let status = Dictionary<string, string * string * int * string * string>()
            (
                use cmd = command "SELECT run_key, status, host, pid, pid_start, owner FROM runs" []
                use r = cmd.ExecuteReader()
                while r.Read() do
                    let k = r.GetString 0
                    if wanted.Contains k then status[k] <- (r.GetString 1, str r 2, defaultArg (int r 3) 0, str r 4, str r 5)
            )
            let has (table: string) =
                let d = Dictionary<string, HashSet<string>>()
                use cmd = command $"SELECT DISTINCT run_key, name FROM {table}" []
                use r = cmd.ExecuteReader()
                while r.Read() do
                    let k = r.GetString 0
                    if wanted.Contains k then
                        if not (d.ContainsKey k) then d[k] <- HashSet<string>()
                        d[k].Add(r.GetString 1) |> ignore
                d
            let ms = has "measures"
            let mt = has "metrics"
            let complete (k: string) (d: Dictionary<string, HashSet<string>>) (names: string list) =
                names |> List.forall (fun n -> match d.TryGetValue k with | true, s -> s.Contains n | _ -> false)
            let mutable finished = Set.empty
            let mutable incomplete = Set.empty
            let mutable busy = Set.empty
            for KeyValue(k, (st, host, pid, pidStart, owner)) in status do
                match st with
                | "diverged" -> finished <- finished.Add k
                | "done" when complete k ms measures && complete k mt ("loss" :: metrics k) ->
                    finished <- finished.Add k
                | "done" -> incomplete <- incomplete.Add k
                | "running" when isLive host pid pidStart owner -> busy <- busy.Add k
                | _ -> ()
            finished, incomplete, busy)

    /// Claim a run (status running, leftovers of earlier attempts deleted) unless it is finished
    /// (done, unless `redoDone`; diverged) or a live process holds it. Returns true when the caller
    /// should run it.
    member _.Claim(r: RunSpec, command': string, reproduce: string, owner: RunOwner, taskOptions: string, optimizerOptions: string, schedule: string, redoDone: bool) : bool =
        lock gate (fun () ->
            use tx = conn.BeginTransaction()
            let current =
                use cmd = command "SELECT status, host, pid, pid_start, owner, attempts FROM runs WHERE run_key = $k" [ "$k", box r.Key ]
                cmd.Transaction <- tx
                use rd = cmd.ExecuteReader()
                if rd.Read() then Some(rd.GetString 0, str rd 1, defaultArg (int rd 2) 0, str rd 3, str rd 4, defaultArg (int rd 5) 0) else None
            let go, attempts =
                match current with
                | Some("diverged", _, _, _, _, _) -> false, 0
                | Some("done", _, _, _, _, _) when not redoDone -> false, 0
                | Some("running", host, pid, pidStart, own, _) when isLive host pid pidStart own -> false, 0
                | Some(_, _, _, _, _, a) -> true, a
                | None -> true, 0
            if go then
                for table in [ "metrics"; "measures" ] do
                    use del = command $"DELETE FROM {table} WHERE run_key = $k" [ "$k", box r.Key ]
                    del.Transaction <- tx
                    del.ExecuteNonQuery() |> ignore
                use ins =
                    command
                        ("INSERT OR REPLACE INTO runs (run_key, spec, config, task, task_label, task_options, optimizer, optimizer_label, optimizer_options, schedule, "
                         + "lr, seed, steps, dtype, status, command, reproduce, host, pid, pid_start, owner, attempts, started_at) VALUES "
                         + "($k, $spec, $config, $task, $tl, $to, $opt, $ol, $oo, $sch, $lr, $seed, $steps, $dtype, 'running', $cmd, $rep, $host, $pid, $ps, $own, $att, $t)")
                        [ "$k", box r.Key; "$spec", box r.Spec; "$config", box r.Config; "$task", box r.Task; "$tl", box r.TaskLabel
                          "$to", box taskOptions; "$opt", box r.Optimizer; "$ol", box r.OptimizerLabel; "$oo", box optimizerOptions
                          "$sch", box schedule; "$lr", optF r.Lr; "$seed", box r.Seed; "$steps", box r.Steps; "$dtype", box r.Dtype
                          "$cmd", box command'; "$rep", box reproduce; "$host", box owner.Host; "$pid", box owner.Pid; "$ps", box owner.PidStart
                          "$own", box owner.Owner; "$att", box (attempts + 1); "$t", box (now ()) ]
                ins.Transaction <- tx
                ins.ExecuteNonQuery() |> ignore
            tx.Commit()
            go)

    /// Write a run's outcome: metrics, measures, seed and final status in one transaction.
    member _.Finish(r: RunSpec, o: RunOutcome) =
        lock gate (fun () ->
            use tx = conn.BeginTransaction()
            (
                use m = command "INSERT OR REPLACE INTO metrics (run_key, name, step, value) VALUES ($k, $n, $s, $v)" []
                m.Transaction <- tx
                let pk = m.Parameters.AddWithValue("$k", r.Key)
                let pn = m.Parameters.AddWithValue("$n", "")
                let ps = m.Parameters.AddWithValue("$s", 0)
                let pv = m.Parameters.AddWithValue("$v", 0.0)
                pk.Value <- r.Key
                for name, step, value in o.Metrics do
                    pn.Value <- name
                    ps.Value <- step
                    pv.Value <- (if Double.IsNaN value then box DBNull.Value else box value)
                    m.ExecuteNonQuery() |> ignore
            )
            for name, value in o.Measures do
                use c = command "INSERT OR REPLACE INTO measures (run_key, name, value) VALUES ($k, $n, $v)" [ "$k", box r.Key; "$n", box name; "$v", optF value ]
                c.Transaction <- tx
                c.ExecuteNonQuery() |> ignore
            if o.StartHash <> "" then
                use c =
                    command "INSERT OR IGNORE INTO seeds (task, task_options, dtype, seed, start_hash, start_loss) VALUES ($t, $o, $d, $s, $h, $l)"
                        [ "$t", box r.Task; "$o", box (ResultsStore.OptionsJson r.TaskOptions); "$d", box r.Dtype
                          "$s", box r.Seed; "$h", box o.StartHash; "$l", optF o.StartLoss ]
                c.Transaction <- tx
                c.ExecuteNonQuery() |> ignore
            use u =
                command
                    ("UPDATE runs SET status = $st, finished_at = $t, wall_seconds = $w, final_loss = $fl, mean_loss = $ml, diverged_step = $ds, "
                     + "error = $e WHERE run_key = $k")
                    [ "$st", box o.Status; "$t", box (now ()); "$w", box o.WallSeconds; "$fl", optF o.FinalLoss; "$ml", optF o.MeanLoss
                      "$ds", optI o.DivergedStep; "$e", (if o.Error = "" then null else box o.Error); "$k", box r.Key ]
            u.Transaction <- tx
            u.ExecuteNonQuery() |> ignore
            tx.Commit())

    /// Runs by key (all runs when `keys` is None), in key order.
    member _.Runs(?keys: string list) : RunRow list =
        lock gate (fun () ->
            use cmd = command $"SELECT {runColumns} FROM runs ORDER BY config, task, optimizer_label, lr, seed, run_key" []
            use r = cmd.ExecuteReader()
            let all = [ while r.Read() do yield readRun r ]
            match keys with
            | Some ks -> let s = Set.ofList ks in all |> List.filter (fun x -> s.Contains x.Key)
            | None -> all)

    /// Measures of runs: key -> name -> value.
    member _.Measures(keys: string list) : Map<string, Map<string, float option>> =
        lock gate (fun () ->
            let wanted = Set.ofList keys
            use cmd = command "SELECT run_key, name, value FROM measures" []
            use r = cmd.ExecuteReader()
            [ while r.Read() do
                if wanted.Contains(r.GetString 0) then yield r.GetString 0, (r.GetString 1, flt r 2) ]
            |> List.groupBy fst
            |> List.map (fun (k, xs) -> k, xs |> List.map snd |> Map.ofList)
            |> Map.ofList)

    /// One metric of runs as (step, value) arrays in step order: key -> points.
    member _.Metric(keys: string list, name: string) : Map<string, (int * float)[]> =
        lock gate (fun () ->
            let wanted = Set.ofList keys
            use cmd = command "SELECT run_key, step, value FROM metrics WHERE name = $n ORDER BY run_key, step" [ "$n", box name ]
            use r = cmd.ExecuteReader()
            [ while r.Read() do
                if wanted.Contains(r.GetString 0) then yield r.GetString 0, (r.GetInt32 1, defaultArg (flt r 2) nan) ]
            |> List.groupBy fst
            |> List.map (fun (k, xs) -> k, xs |> List.map snd |> Array.ofList)
            |> Map.ofList)

    /// Every metric row (key, name, step, value), for export.
    member _.AllMetrics(keys: string list option) : (string * string * int * float option) list =
        lock gate (fun () ->
            use cmd = command "SELECT run_key, name, step, value FROM metrics ORDER BY run_key, name, step" []
            use r = cmd.ExecuteReader()
            let wanted = keys |> Option.map Set.ofList
            [ while r.Read() do
                let k = r.GetString 0
                if (match wanted with Some s -> s.Contains k | None -> true) then yield k, r.GetString 1, r.GetInt32 2, flt r 3 ])

    /// Copy the runs of other databases into this one. A run is taken from an input when this
    /// database lacks it or holds it in a worse state (running < failed < done/diverged); with it
    /// come its metrics and measures. Configs and seeds are united. Returns, per input, the runs
    /// taken and the seeds whose start differs from this database's (the same task, options,
    /// dtype and seed must give the same start everywhere; a difference means irreproducible runs).
    member this.Merge(inputs: string list) : (string * int * int) list =
        lock gate (fun () ->
            [ for input in inputs do
                let full = Path.GetFullPath input
                if not (File.Exists full) then raise (FileNotFoundException($"merge: input database '{input}' not found", input))
                if full = fullPath then raise (ArgumentException($"merge: the output '{input}' is also an input"))
                // Opening it checks the schema and replays its WAL into it.
                (new ResultsStore(full) :> IDisposable).Dispose()
                use attach = command "ATTACH DATABASE $p AS src" [ "$p", box full ]
                attach.ExecuteNonQuery() |> ignore
                try
                    use tx = conn.BeginTransaction()
                    let run (sql: string) =
                        use c = conn.CreateCommand()
                        c.Transaction <- tx
                        c.CommandText <- sql
                        c.ExecuteNonQuery()
                    let rank (t: string) = $"(CASE {t}.status WHEN 'done' THEN 2 WHEN 'diverged' THEN 2 WHEN 'failed' THEN 1 ELSE 0 END)"
                    run "DROP TABLE IF EXISTS temp.take" |> ignore
                    let rs, rm = rank "s", rank "m"
                    run ("CREATE TEMP TABLE take AS SELECT s.run_key AS run_key FROM src.runs s LEFT JOIN main.runs m ON m.run_key = s.run_key "
                         + $"WHERE m.run_key IS NULL OR {rs} > {rm}") |> ignore
                    for table in [ "metrics"; "measures"; "runs" ] do
                        run $"DELETE FROM main.{table} WHERE run_key IN (SELECT run_key FROM temp.take)" |> ignore
                    let taken = run $"INSERT INTO main.runs ({runColumns}, pid_start, owner) SELECT {runColumns}, pid_start, owner FROM src.runs WHERE run_key IN (SELECT run_key FROM temp.take)"
                    run "INSERT INTO main.metrics (run_key, name, step, value) SELECT run_key, name, step, value FROM src.metrics WHERE run_key IN (SELECT run_key FROM temp.take)" |> ignore
                    run "INSERT INTO main.measures (run_key, name, value) SELECT run_key, name, value FROM src.measures WHERE run_key IN (SELECT run_key FROM temp.take)" |> ignore
                    run "INSERT OR IGNORE INTO main.configs (name, hash, source, json, added_at) SELECT name, hash, source, json, added_at FROM src.configs" |> ignore
                    let conflicts =
                        use c = conn.CreateCommand()
                        c.Transaction <- tx
                        c.CommandText <-
                            "SELECT count(*) FROM src.seeds s JOIN main.seeds m ON m.task = s.task AND m.task_options = s.task_options "
                            + "AND m.dtype = s.dtype AND m.seed = s.seed WHERE m.start_hash <> s.start_hash"
                        Convert.ToInt32(c.ExecuteScalar())
                    run "INSERT OR IGNORE INTO main.seeds (task, task_options, dtype, seed, start_hash, start_loss) SELECT task, task_options, dtype, seed, start_hash, start_loss FROM src.seeds" |> ignore
                    run "DROP TABLE temp.take" |> ignore
                    tx.Commit()
                    yield input, taken, conflicts
                finally
                    use detach = command "DETACH DATABASE src" []
                    detach.ExecuteNonQuery() |> ignore ])

    member _.Dispose() = lock gate (fun () -> conn.Dispose())

    interface IDisposable with
        member this.Dispose() = this.Dispose()
