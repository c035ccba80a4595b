/// Bad input to every verb (issue 20): FsCheck generates names, numbers (out of range and not
/// finite), malformed vectors, truncated JSON configs, truncated or damaged model, data and
/// database files; each must give exit code 2, one line on stderr, no stack trace, and leave every
/// file it was given as it was.
module Optimizers.Tests.BadInputTests

open System
open System.IO
open System.Security.Cryptography
open Expecto
open FsCheck
open FsCheck.FSharp
open Microsoft.Data.Sqlite
open Optimizers
open Optimizers.Tests.Check

let private config = { FsCheckConfig.defaultConfig with maxTest = 12; endSize = 20 }

/// A file's SHA-256 (or "absent"), to see that nothing was written.
let private fingerprint (path: string) =
    if File.Exists path then Convert.ToHexString(SHA256.HashData(File.ReadAllBytes path)) else "absent"

/// Run the CLI and require bad-input behaviour: exit 2, exactly one stderr line naming the problem
/// (no stack trace), and `files` unchanged (absent ones still absent).
let expectBad (args: string list) (files: string list) =
    let before = files |> List.map fingerprint
    let code, _, err = cli args
    let errLines = lines err
    let shown = String.Join(" ", args)
    Expect.equal code 2 $"exit code of `optimizers {shown}`; stderr: {err}"
    Expect.equal errLines.Length 1 $"one stderr line from `optimizers {shown}`, got: {err}"
    Expect.isTrue (errLines[0].StartsWith "optimizers: ") $"the line names the program: {errLines[0]}"
    Expect.isFalse (err.Contains "   at " || err.Contains "frame #") $"no stack trace: {err}"
    let after = files |> List.map fingerprint
    for f, (b, a) in List.zip files (List.zip before after) do
        Expect.equal a b $"`optimizers {shown}` left {f} as it was"

// ---------------------------------------------------------------------------------------------
// Generated values.

let private letters = Gen.elements [ 'a' .. 'z' ]

/// A name no registry holds: "zq" + letters and digits.
let private unknownName : Gen<string> =
    gen {
        let! n = Gen.choose (1, 8)
        let! cs = Gen.arrayOfLength n (Gen.oneof [ letters; Gen.elements [ '0' .. '9' ] ])
        return "zq" + String(cs)
    }

/// Not a finite number, or not a number at all.
let private notFinite = Gen.elements [ "nan"; "NaN"; "inf"; "-inf"; "Infinity"; "-Infinity"; "1e999"; "-1e999" ]
let private notNumber = Gen.elements [ "abc"; "1.2.3"; "0x1p3"; "--"; "1e"; "one"; "" ]

/// A learning rate that no optimizer takes: negative, non-finite or no number.
let private badLr : Gen<string> =
    Gen.oneof [ notFinite; notNumber |> Gen.filter (fun s -> s <> ""); Gen.choose (1, 1000) |> Gen.map (fun k -> $"-{k}e-3") ]

/// A step count that is no count: negative, fractional, or no number.
let private badSteps : Gen<string> =
    Gen.oneof [ Gen.choose (1, 100000) |> Gen.map (fun k -> $"-{k}"); Gen.elements [ "1.5"; "abc"; "99999999999999"; "nan" ] ]

/// A start that is not two finite numbers: a non-finite coordinate, a bad separator, a gap.
let private badStart : Gen<string> =
    gen {
        let! good = Gen.elements [ "-1.5"; "2"; "0.25"; "1e-3" ]
        let! bad = Gen.oneof [ notFinite; Gen.elements [ "a"; "1..2"; "--1"; "1e" ] ]
        let! shape = Gen.choose (0, 4)
        return
            match shape with
            | 0 -> $"{bad},{good}"
            | 1 -> $"{good},{bad}"
            | 2 -> $"{good};{good}"
            | 3 -> $"{good},,{good}"
            | _ -> $"{good} {bad}"
    }

// ---------------------------------------------------------------------------------------------
// Names, numbers and vectors, verb by verb.

let private flagTests =
    testList "flags" [
        testPropertyWithConfig config "an unknown optimizer name is exit 2 for every verb that takes one" <|
            forAll unknownName (fun name ->
                let dir = tempDir "badinput"
                let db = Path.Combine(dir, "x.db")
                try
                    expectBad [ "trace"; "--task"; "rosenbrock"; "--optimizer"; name ] []
                    expectBad [ "trace"; "--task"; "rosenbrock"; "--optimizer"; name + ":lr=0.1" ] []
                    expectBad [ "lr-range-test"; "--task"; "rosenbrock"; "--optimizer"; name ] []
                    expectBad [ "evaluate"; "--task"; "rosenbrock"; "--optimizer"; name; "--seeds"; "1"; "--steps"; "2" ] []
                    expectBad [ "sensitivity"; "--task"; "rosenbrock"; "--optimizers"; name; "--threshold"; "0.1" ] []
                    expectBad [ "compare"; "--tasks"; "rosenbrock"; "--optimizers"; $"sgd,{name}"; "--steps"; "2"; "--db"; db ] [ db ]
                finally Directory.Delete(dir, true))

        testPropertyWithConfig config "an unknown task name is exit 2 for every verb that takes one" <|
            forAll unknownName (fun name ->
                let dir = tempDir "badinput"
                let db = Path.Combine(dir, "x.db")
                try
                    expectBad [ "trace"; "--task"; name; "--optimizer"; "sgd" ] []
                    expectBad [ "lr-range-test"; "--task"; name; "--optimizer"; "sgd" ] []
                    expectBad [ "evaluate"; "--task"; name; "--optimizer"; "sgd"; "--seeds"; "1" ] []
                    expectBad [ "sensitivity"; "--task"; name; "--optimizers"; "sgd"; "--threshold"; "0.1" ] []
                    expectBad [ "compare"; "--tasks"; name; "--optimizers"; "sgd"; "--steps"; "2"; "--db"; db ] [ db ]
                    expectBad [ "meta-train"; "--kind"; name; "--task"; "rosenbrock"; "--out"; Path.Combine(dir, "m.bin") ] [ Path.Combine(dir, "m.bin") ]
                finally Directory.Delete(dir, true))

        testPropertyWithConfig config "a negative, non-finite or malformed learning rate is exit 2" <|
            forAll badLr (fun lr ->
                let dir = tempDir "badinput"
                let db = Path.Combine(dir, "x.db")
                try
                    expectBad [ "trace"; "--task"; "rosenbrock"; "--optimizer"; "adam"; $"--lr={lr}" ] []
                    expectBad [ "trace"; "--task"; "rosenbrock"; "--optimizer"; $"adam:lr={lr}" ] []
                    expectBad [ "evaluate"; "--task"; "rosenbrock"; "--optimizer"; $"sgd:lr={lr}"; "--seeds"; "1"; "--steps"; "2" ] []
                    expectBad [ "compare"; "--tasks"; "rosenbrock"; "--optimizers"; "sgd"; $"--lrs={lr}"; "--steps"; "2"; "--db"; db ] [ db ]
                    expectBad [ "lr-range-test"; "--task"; "rosenbrock"; "--optimizer"; "sgd"; $"--min-lr={lr}" ] []
                finally Directory.Delete(dir, true))

        testPropertyWithConfig config "a negative, fractional or malformed step count is exit 2" <|
            forAll badSteps (fun steps ->
                let dir = tempDir "badinput"
                let db = Path.Combine(dir, "x.db")
                try
                    expectBad [ "trace"; "--task"; "rosenbrock"; "--optimizer"; "sgd"; "--steps"; steps ] []
                    expectBad [ "lr-range-test"; "--task"; "rosenbrock"; "--optimizer"; "sgd"; "--steps"; steps ] []
                    expectBad [ "evaluate"; "--task"; "rosenbrock"; "--optimizer"; "sgd"; "--steps"; steps; "--seeds"; "1" ] []
                    expectBad [ "compare"; "--tasks"; "rosenbrock"; "--optimizers"; "sgd"; "--steps"; steps; "--db"; db ] [ db ]
                    expectBad [ "compare"; "--tasks"; "rosenbrock"; "--optimizers"; "sgd"; "--steps"; "2"; "--jobs"; steps; "--db"; db ] [ db ]
                finally Directory.Delete(dir, true))

        testPropertyWithConfig config "a malformed or non-finite start vector is exit 2" <|
            forAll badStart (fun start ->
                expectBad [ "trace"; "--task"; "rosenbrock"; $"--start={start}"; "--optimizer"; "sgd"; "--steps"; "3" ] []
                expectBad [ "lr-range-test"; "--task"; "rosenbrock"; $"--start={start}"; "--optimizer"; "sgd"; "--steps"; "3" ] []
                expectBad [ "sensitivity"; "--task"; "rosenbrock"; $"--start={start}"; "--optimizers"; "sgd-hd"; "--threshold"; "0.1"; "--max-steps"; "3" ] [])

        testPropertyWithConfig config "a malformed option assignment is exit 2" <|
            forAll (Gen.elements [ "lr"; "=0.1"; "lr=="; "momentum=abc"; "beta1=2"; "eps=0"; "eps=-1"; "weight_decay=nan" ]) (fun a ->
                expectBad [ "trace"; "--task"; "rosenbrock"; "--optimizer"; "adam"; $"--opt={a}"; "--steps"; "3" ] []
                expectBad [ "evaluate"; "--task"; "rosenbrock"; "--optimizer"; $"adam:{a}"; "--seeds"; "1"; "--steps"; "2" ] [])
    ]

// ---------------------------------------------------------------------------------------------
// Configs, model files, data files.

let private configText = lazy (File.ReadAllText(Path.Combine(repoRoot (), "paper-configs", "examples", "rosenbrock-compare.json")))

let private fileTests =
    testList "files" [
        testPropertyWithConfig config "a truncated config is exit 2 for run, sweep and report, and makes no database" <|
            forAll (Gen.choose (1, 10000)) (fun k ->
                let text = configText.Value
                let cut = 1 + k % (text.LastIndexOf '}' - 1)
                let dir = tempDir "badinput"
                try
                    let path = Path.Combine(dir, "cut.json")
                    File.WriteAllText(path, text.Substring(0, cut))
                    let db = Path.Combine(dir, "x.db")
                    expectBad [ "run"; path; "--quick"; "--db"; db ] [ path; db ]
                    expectBad [ "sweep"; path; "--shard"; "0/2"; "--db"; db ] [ path; db ]
                    expectBad [ "report"; path; "--out"; Path.Combine(dir, "rep") ] [ path ]
                finally Directory.Delete(dir, true))

        testPropertyWithConfig config "a config with a field of the wrong type or out of range is exit 2" <|
            forAll (Gen.elements [ "steps", "-5"; "steps", "\"100\""; "steps", "1e999"; "steps", "2.5"; "seeds", "[]"; "seeds", "[\"a\"]"
                                   "lrs", "[-1]"; "lrs", "[\"nan\"]"; "lrs", "[1e999]"; "record_every", "0" ]) (fun (key, value) ->
                let dir = tempDir "badinput"
                try
                    let path = Path.Combine(dir, "bad.json")
                    let fields = Map.ofList [ "steps", "3"; "seeds", "[0]"; "lrs", "[0.01]"; "record_every", "1" ] |> Map.add key value
                    let grid = String.Join(", ", [ for KeyValue(k, v) in fields -> $"\"{k}\": {v}" ])
                    File.WriteAllText(path, $"{{\"name\": \"bad\", \"source\": \"test\", \"grid\": {{\"tasks\": [{{\"name\": \"rosenbrock\"}}], \"optimizers\": [{{\"name\": \"sgd\"}}], {grid}}}}}")
                    let db = Path.Combine(dir, "x.db")
                    expectBad [ "run"; path; "--db"; db ] [ path; db ]
                finally Directory.Delete(dir, true))

        testPropertyWithConfig config "a truncated model file, or one with a damaged header, is exit 2 for inspect and evaluate" <|
            forAll (Gen.zip (Gen.choose (0, 1000000)) (Gen.choose (0, 15 * 8 - 1))) (fun (k, bit) ->
                let model = Path.Combine(repoRoot (), "models", "hyperadam.bin")
                let bytes = File.ReadAllBytes model
                let dir = tempDir "badinput"
                try
                    let cut = Path.Combine(dir, "cut.bin")
                    File.WriteAllBytes(cut, bytes[0 .. (k % (bytes.Length - 1))])
                    expectBad [ "inspect"; "--file"; cut ] [ cut ]
                    expectBad [ "evaluate"; "--task"; "rosenbrock"; "--optimizer"; $"hyperadam:file={cut}"; "--seeds"; "1"; "--steps"; "2" ] [ cut ]
                    // a flipped bit in the magic, the format version or the header length (the first 16 bytes)
                    let flipped = Array.copy bytes
                    let at = bit / 8 % 16
                    flipped[at] <- flipped[at] ^^^ (1uy <<< (bit % 8))
                    let flip = Path.Combine(dir, "flip.bin")
                    File.WriteAllBytes(flip, flipped)
                    expectBad [ "inspect"; "--file"; flip ] [ flip ]
                    expectBad [ "evaluate"; "--task"; "rosenbrock"; "--optimizer"; $"hyperadam:file={flip}"; "--seeds"; "1"; "--steps"; "2" ] [ flip ]
                finally Directory.Delete(dir, true))

        testPropertyWithConfig { config with maxTest = 6 } "a truncated or bit-flipped MNIST file is exit 2 for evaluate" <|
            forAll (Gen.zip (Gen.elements [ "train-images-idx3-ubyte.gz"; "train-labels-idx1-ubyte.gz"; "t10k-labels-idx1-ubyte.gz" ]) (Gen.choose (0, 1000000))) (fun (file, k) ->
                let src = Path.Combine(repoRoot (), "data", "mnist-subset")
                let dir = tempDir "badinput"
                try
                    for f in Directory.GetFiles src do File.Copy(f, Path.Combine(dir, Path.GetFileName f))
                    let target = Path.Combine(dir, file)
                    let bytes = File.ReadAllBytes target
                    if k % 2 = 0 then File.WriteAllBytes(target, bytes[0 .. (k % (bytes.Length - 1))])
                    else
                        // a flipped bit in the compressed data (gzip's CRC-32 and length catch it)
                        let at = 10 + k % (bytes.Length - 18)
                        bytes[at] <- bytes[at] ^^^ (1uy <<< (k % 8))
                        File.WriteAllBytes(target, bytes)
                    Data.Datasets.clearCache ()
                    expectBad [ "evaluate"; "--task"; "mlp-mnist"; "--task-opt"; $"data_dir={dir}"; "--optimizer"; "sgd"; "--seeds"; "1"; "--steps"; "1" ] [ target ]
                finally
                    Data.Datasets.clearCache ()
                    Directory.Delete(dir, true))
    ]

// ---------------------------------------------------------------------------------------------
// Results databases.

/// A small real results database (two runs of a few steps).
let private makeDb (path: string) =
    let code, _, err = cli [ "compare"; "--tasks"; "rosenbrock"; "--optimizers"; "sgd,adam"; "--steps"; "5"; "--db"; path; "--quiet" ]
    if code <> 0 then failwith $"could not make a test database: {err}"
    SqliteConnection.ClearAllPools()

/// A damaged database, by kind: random bytes, text, a truncation of a real one, an SQLite file of
/// another program, a results database missing a column, a file with a damaged page.
type DamagedDb =
    | RandomBytes of byte[]
    | Text of string
    | Truncated of fraction: float
    | Foreign of table: string
    | MissingColumn
    | DamagedPage of seed: int

let private damagedDb : Gen<DamagedDb> =
    Gen.oneof
        [ Gen.choose (1, 4000) |> Gen.bind (fun n -> Gen.arrayOfLength n (Gen.choose (0, 255) |> Gen.map byte)) |> Gen.map RandomBytes
          Gen.elements [ "not a database"; "{\"runs\": []}"; "SQLite format 2\n"; "SQLite format 3" ] |> Gen.map Text
          Gen.choose (1, 95) |> Gen.map (fun p -> Truncated(float p / 100.0))
          unknownName |> Gen.map Foreign
          Gen.constant MissingColumn
          Gen.choose (0, 1000) |> Gen.map DamagedPage ]

let private writeDamaged (path: string) (d: DamagedDb) =
    match d with
    | RandomBytes b -> File.WriteAllBytes(path, b)
    | Text t -> File.WriteAllText(path, t)
    | Truncated f ->
        makeDb path
        let b = File.ReadAllBytes path
        File.WriteAllBytes(path, b[0 .. max 0 (int (float b.Length * f)) - 1])
    | Foreign table ->
        (use c = new SqliteConnection($"Data Source={path};Pooling=False")
         c.Open()
         use cmd = c.CreateCommand()
         cmd.CommandText <- $"CREATE TABLE {table} (a INTEGER, b TEXT); INSERT INTO {table} VALUES (1, 'x');"
         cmd.ExecuteNonQuery() |> ignore)
    | MissingColumn ->
        (use c = new SqliteConnection($"Data Source={path};Pooling=False")
         c.Open()
         use cmd = c.CreateCommand()
         cmd.CommandText <- "CREATE TABLE runs (run_key TEXT PRIMARY KEY, status TEXT); CREATE TABLE metrics (run_key TEXT);"
         cmd.ExecuteNonQuery() |> ignore)
    | DamagedPage seed ->
        makeDb path
        // overwrite the b-tree header of one page after the first with garbage
        let b = File.ReadAllBytes path
        let pageSize = (int b[16] <<< 8) ||| int b[17]
        let pages = b.Length / pageSize
        let page = 1 + seed % (pages - 1)
        let rng = Random seed
        for i in 0..11 do b[page * pageSize + i] <- byte (rng.Next(256))
        b[page * pageSize] <- 0x0Duy ^^^ 0xFFuy
        File.WriteAllBytes(path, b)
    SqliteConnection.ClearAllPools()

let private dbTests =
    testList "databases" [
        testPropertyWithConfig { config with maxTest = 16 } "a damaged database is exit 2 for run, compare, sweep, export, report and merge (input and output), and is left as it was" <|
            forAll damagedDb (fun damage ->
                let dir = tempDir "badinput"
                try
                    let db = Path.Combine(dir, "bad.db")
                    writeDamaged db damage
                    let good = Path.Combine(dir, "good.db")
                    makeDb good
                    let cfg = Path.Combine(repoRoot (), "paper-configs", "examples", "rosenbrock-compare.json")
                    let out = Path.Combine(dir, "out.db")
                    expectBad [ "run"; cfg; "--quick"; "--db"; db; "--quiet" ] [ db ]
                    expectBad [ "compare"; "--tasks"; "rosenbrock"; "--optimizers"; "sgd"; "--steps"; "3"; "--db"; db ] [ db ]
                    expectBad [ "sweep"; cfg; "--quick"; "--shard"; "0/4"; "--db"; db ] [ db ]
                    expectBad [ "export"; "--db"; db ] [ db ]
                    expectBad [ "export"; "--db"; db; "--table"; "metrics"; "--format"; "json" ] [ db ]
                    expectBad [ "report"; "--db"; db; "--out"; Path.Combine(dir, "rep") ] [ db ]
                    expectBad [ "merge"; out; db ] [ db; out ]
                    expectBad [ "merge"; out; good; db ] [ db; out ]
                    expectBad [ "merge"; db; good ] [ db ]
                finally
                    SqliteConnection.ClearAllPools()
                    Directory.Delete(dir, true))

        testCase "a database in a read-only place is exit 2 with one line, and the file is left as it was" <| fun () ->
            let dir = tempDir "badinput"
            try
                // A folder in place of the file, and a file in place of the folder: no permissions
                // needed (root may write anywhere), and both are what a typo gives.
                let folder = Path.Combine(dir, "folder.db")
                Directory.CreateDirectory folder |> ignore
                expectBad [ "compare"; "--tasks"; "rosenbrock"; "--optimizers"; "sgd"; "--steps"; "3"; "--db"; folder ] []
                expectBad [ "export"; "--db"; folder ] []
                let file = Path.Combine(dir, "plain")
                File.WriteAllText(file, "x")
                let inside = Path.Combine(file, "r.db")
                expectBad [ "compare"; "--tasks"; "rosenbrock"; "--optimizers"; "sgd"; "--steps"; "3"; "--db"; inside ] [ file ]
                expectBad [ "merge"; inside; file ] [ file ]
            finally Directory.Delete(dir, true)

        testCase "export, report and merge of a database that does not exist are exit 2 and create nothing" <| fun () ->
            let dir = tempDir "badinput"
            try
                let missing = Path.Combine(dir, "missing.db")
                expectBad [ "export"; "--db"; missing ] [ missing ]
                expectBad [ "report"; "--db"; missing ] [ missing ]
                let out = Path.Combine(dir, "out.db")
                expectBad [ "merge"; out; missing ] [ missing; out ]
            finally Directory.Delete(dir, true)
    ]

// ---------------------------------------------------------------------------------------------
// The small ones of issue 20.

let private smallTests =
    testList "issue 20" [
        testCase "trace --start=nan,1 is bad input (exit 2), not a divergence" <| fun () ->
            expectBad [ "trace"; "--task"; "rosenbrock"; "--start=nan,1"; "--optimizer"; "sgd" ] []
            expectBad [ "trace"; "--task"; "rosenbrock"; "--start=1,inf"; "--optimizer"; "sgd" ] []

        testCase "export --config NAME that matches nothing is exit 2 with the valid names" <| fun () ->
            let dir = tempDir "badinput"
            try
                let db = Path.Combine(dir, "r.db")
                makeDb db
                let before = fingerprint db
                let code, out, err = cli [ "export"; "--db"; db; "--config"; "nosuchconfig" ]
                Expect.equal code 2 $"exit code; stderr {err}"
                Expect.equal out "" "no bare header on stdout"
                Expect.stringContains err "nosuchconfig" "names the config"
                Expect.stringContains err "valid: compare" "names the valid ones"
                Expect.equal (lines err).Length 1 "one line"
                Expect.equal (fingerprint db) before "database unchanged"
                let code, out, _ = cli [ "export"; "--db"; db; "--config"; "compare" ]
                Expect.equal code 0 "the config that is there exports"
                Expect.equal (lines out).Length 3 "header and two runs"
            finally
                SqliteConnection.ClearAllPools()
                Directory.Delete(dir, true)

        testCase "trace and lr-range-test take NAME:opt=value as evaluate does, the same as --opt" <| fun () ->
            let a = cli [ "trace"; "--task"; "rosenbrock"; "--optimizer"; "adam:lr=0.05,beta1=0.8"; "--steps"; "20" ]
            let b = cli [ "trace"; "--task"; "rosenbrock"; "--optimizer"; "adam"; "--lr"; "0.05"; "--opt"; "beta1=0.8"; "--steps"; "20" ]
            let c = cli [ "trace"; "--task"; "rosenbrock"; "--optimizer"; "adam"; "--steps"; "20" ]
            let code, outA, errA = a
            Expect.equal code 0 $"trace NAME:opt=value runs; stderr {errA}"
            let _, outB, _ = b
            let _, outC, _ = c
            Expect.equal outA outB "NAME:opt=value is the same as --lr/--opt"
            Expect.notEqual outA outC "and the options are applied"
            let code, outL, errL = cli [ "lr-range-test"; "--task"; "rosenbrock"; "--optimizer"; "momentum:momentum=0.5"; "--steps"; "20" ]
            Expect.equal code 0 $"lr-range-test NAME:opt=value runs; stderr {errL}"
            let _, outL2, _ = cli [ "lr-range-test"; "--task"; "rosenbrock"; "--optimizer"; "momentum"; "--opt"; "momentum=0.5"; "--steps"; "20" ]
            Expect.equal outL outL2 "the same as --opt"
            expectBad [ "trace"; "--task"; "rosenbrock"; "--optimizer"; "adam:lr=0.05"; "--lr"; "0.01" ] []
    ]

[<Tests>]
let tests = testList "bad input" [ flagTests; fileTests; dbTests; smallTests ]
