/// `--tensorboard DIR` of run/compare, evaluate and meta-train: the event files read back as
/// TensorBoard reads them (TFRecord framing with masked CRC-32C checks, then the Event protobuf),
/// with a reader written here from the formats' definitions, not from the writer's code.
module Optimizers.Tests.TensorBoardTests

open System
open System.IO
open Expecto
open Google.Protobuf
open Optimizers.Tests.Check

/// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), as TFRecord uses, and its mask.
let private crcTable =
    Array.init 256 (fun n ->
        let mutable c = uint32 n
        for _ in 1 .. 8 do
            c <- if c &&& 1u <> 0u then 0x82F63B78u ^^^ (c >>> 1) else c >>> 1
        c)

let crc32c (data: byte[]) (offset: int) (count: int) =
    let mutable c = 0xFFFFFFFFu
    for i in offset .. offset + count - 1 do
        c <- crcTable[int ((c ^^^ uint32 data[i]) &&& 0xFFu)] ^^^ (c >>> 8)
    c ^^^ 0xFFFFFFFFu

let masked (crc: uint32) = ((crc >>> 15) ||| (crc <<< 17)) + 0xa282ead8u

/// The records of a TFRecord file; fails on a bad length or data CRC.
let records (path: string) : byte[] list =
    let bytes = File.ReadAllBytes path
    let mutable at = 0
    [ while at < bytes.Length do
        if at + 12 > bytes.Length then failwith $"{path}: truncated record header at {at}"
        let length = BitConverter.ToUInt64(bytes, at)
        if masked (crc32c bytes at 8) <> BitConverter.ToUInt32(bytes, at + 8) then failwith $"{path}: bad length CRC at {at}"
        let start = at + 12
        let n = int length
        if start + n + 4 > bytes.Length then failwith $"{path}: truncated record at {at}"
        if masked (crc32c bytes start n) <> BitConverter.ToUInt32(bytes, start + n) then failwith $"{path}: bad data CRC at {at}"
        yield bytes[start .. start + n - 1]
        at <- start + n + 4 ]

/// What a Summary.Value holds that these tests look at.
type Value =
    | Scalar of float32
    | Text of string
    | Other

/// One Event: step and its summary values by tag (tensorflow/core/util/event.proto: wall_time = 1,
/// step = 2, file_version = 3, summary = 5; summary.proto: Summary.value = 1, Value.tag = 1,
/// simple_value = 2, tensor = 8, TensorProto.string_val = 8).
let event (record: byte[]) : int64 * string option * (string * Value) list =
    use input = new CodedInputStream(record)
    let mutable step = 0L
    let mutable version = None
    let values = ResizeArray()
    let readValue (bytes: ByteString) =
        use v = new CodedInputStream(bytes.ToByteArray())
        let mutable tag, value = "", Other
        let mutable t = v.ReadTag()
        while t <> 0u do
            match WireFormat.GetTagFieldNumber t with
            | 1 -> tag <- v.ReadString()
            | 2 -> value <- Scalar(v.ReadFloat())
            | 8 ->
                use tensor = new CodedInputStream(v.ReadBytes().ToByteArray())
                let mutable u = tensor.ReadTag()
                while u <> 0u do
                    if WireFormat.GetTagFieldNumber u = 8 then value <- Text(tensor.ReadBytes().ToStringUtf8())
                    else tensor.SkipLastField()
                    u <- tensor.ReadTag()
            | _ -> v.SkipLastField()
            t <- v.ReadTag()
        tag, value
    let mutable t = input.ReadTag()
    while t <> 0u do
        match WireFormat.GetTagFieldNumber t with
        | 2 -> step <- input.ReadInt64()
        | 3 -> version <- Some(input.ReadString())
        | 5 ->
            use summary = new CodedInputStream(input.ReadBytes().ToByteArray())
            let mutable u = summary.ReadTag()
            while u <> 0u do
                if WireFormat.GetTagFieldNumber u = 1 then values.Add(readValue (summary.ReadBytes()))
                else summary.SkipLastField()
                u <- summary.ReadTag()
        | _ -> input.SkipLastField()
        t <- input.ReadTag()
    step, version, List.ofSeq values

/// Every event file under `dir` (TensorBoard's name pattern), read whole.
let eventFiles (dir: string) =
    Directory.GetFiles(dir, "*tfevents*", SearchOption.AllDirectories) |> Array.sort |> List.ofArray

/// Scalars of one folder's event files: tag -> (step, value) in file order; and the texts by tag.
let read (folder: string) =
    let events = [ for f in eventFiles folder do for r in records f -> event r ]
    Expect.isTrue (events |> List.exists (fun (_, v, _) -> v = Some "brain.Event:2")) "the first event names the file version"
    let scalars =
        [ for step, _, values in events do
            for tag, v in values do
                match v with Scalar x -> yield tag, (step, float x) | _ -> () ]
        |> List.groupBy fst |> List.map (fun (t, xs) -> t, List.map snd xs) |> Map.ofList
    let texts =
        [ for _, _, values in events do
            for tag, v in values do
                match v with Text s -> yield tag, s | _ -> () ] |> Map.ofList
    scalars, texts

[<Tests>]
let tests =
    testSequenced <| testList "tensorboard" [
        testCase "the reader's CRC-32C is the standard one" <| fun () ->
            Expect.equal (crc32c (Text.Encoding.ASCII.GetBytes "123456789") 0 9) 0xE3069283u "CRC-32C check value"

        testCase "compare --tensorboard: loss, lr and learned_lr per step, hyperparameters as text; the losses are trace's" <| fun () ->
            withTempDir "tb" <| fun dir ->
                let db = Path.Combine(dir, "r.db")
                let tb = Path.Combine(dir, "tb")
                let code, _, err =
                    cli [ "compare"; "--tasks"; "rosenbrock"; "--optimizers"; "adam-hd"; "--lrs"; "0.01"; "--seeds"; "0"; "--steps"; "20"
                          "--db"; db; "--tensorboard"; tb; "--quiet" ]
                Expect.equal code 0 $"compare; stderr: {err}"
                let folders = eventFiles tb |> List.map Path.GetDirectoryName |> List.distinct
                Expect.equal folders.Length 1 "one run, one folder"
                let scalars, texts = read folders.Head
                Expect.equal (scalars |> Map.keys |> Seq.sort |> List.ofSeq) [ "learned_lr"; "loss"; "lr" ] "tags"
                Expect.equal (scalars["loss"] |> List.map fst) [ 0L .. 20L ] "a loss at every step, 0 the start"
                Expect.equal (scalars["lr"] |> List.map snd |> List.distinct) [ float (float32 0.01) ] "the run's initial rate"
                let learned = scalars["learned_lr"] |> List.map snd
                closeTo Tol.medium learned.Head (float (float32 0.01)) "the learned rate starts at alpha_0"
                Expect.isTrue (learned |> List.distinct |> List.length > 1) "and moves"
                // the same run through trace (float32, the start as compare's seed 0 draws it) gives the same losses
                let code, out, err = cli [ "trace"; "--task"; "rosenbrock"; "--optimizer"; "adam-hd"; "--lr"; "0.01"; "--steps"; "20"; "--seed"; "0" ]
                Expect.equal code 0 $"trace; stderr: {err}"
                let traced = lines out |> Array.skip 1 |> Array.map (fun l -> float (l.Split(',')[1])) |> List.ofArray
                let logged = scalars["loss"] |> List.map snd
                for a, b in List.zip logged traced do
                    closeTo { Abs = 1e-6; Rel = 1e-5 } a (float (float32 b)) "loss as trace prints it"
                Expect.stringContains texts["hparams/text_summary"] "| optimizer | adam-hd |" "the hyperparameters as a table"
                Expect.stringContains texts["hparams/text_summary"] "| lr | 0.01 |" "with the learning rate"

        testCase "evaluate --tensorboard: one folder per optimizer and seed; the last loss is the final loss" <| fun () ->
            withTempDir "tb" <| fun dir ->
                let tb = Path.Combine(dir, "tb")
                let code, out, err =
                    cli [ "evaluate"; "--task"; "sum-of-squares"; "--task-opt"; "dim=5"; "--optimizer"; "sgd:lr=0.1"; "--optimizer"; "adam-hd"
                          "--steps"; "10"; "--seeds"; "2"; "--format"; "runs"; "--tensorboard"; tb ]
                Expect.equal code 0 $"evaluate; stderr: {err}"
                let folders = eventFiles tb |> List.map Path.GetDirectoryName |> List.distinct
                Expect.equal folders.Length 4 "2 optimizers x 2 seeds"
                for row in lines out |> Array.skip 1 do
                    let cells = row.Split(',')
                    let spec, seed, final = cells[0].Trim('"'), cells[1], float cells[2]
                    let folder = folders |> List.find (fun f -> f.Contains(Optimizers.Experiments.TensorBoard.safeName spec: string) && f.EndsWith($"seed={seed}"))
                    let scalars, texts = read folder
                    Expect.equal (scalars["loss"] |> List.map fst) [ 0L .. 10L ] "steps 0..10"
                    closeTo { Abs = 1e-5; Rel = 1e-5 } (scalars["loss"] |> List.last |> snd) (float (float32 final)) "the final loss"
                    Expect.stringContains texts["hparams/text_summary"] $"| optimizer | {spec} |" "the optimizer in the text"
                    if spec = "adam-hd" then Expect.isTrue (scalars.ContainsKey "learned_lr") "adam-hd logs its learned rate"
                    else Expect.equal (scalars["lr"] |> List.map snd |> List.distinct) [ float (float32 0.1) ] "sgd's rate"

        testCase "meta-train --tensorboard: meta_loss per episode and validation_loss, the settings as text" <| fun () ->
            withTempDir "tb" <| fun dir ->
                let tb = Path.Combine(dir, "tb")
                let out = Path.Combine(dir, "h.bin")
                let code, stdout, err =
                    cli [ "meta-train"; "--kind"; "hyperadam"; "--opt"; "j=2"; "--opt"; "hidden=4"; "--task"; "sum-of-squares"; "--task-opt"; "dim=3"
                          "--horizon"; "4"; "--window"; "2"; "--episodes"; "3"; "--validate-every"; "1"; "--validation-seeds"; "1"
                          "--out"; out; "--quiet"; "--tensorboard"; tb ]
                Expect.equal code 0 $"meta-train; stderr: {err}"
                let folders = eventFiles tb |> List.map Path.GetDirectoryName |> List.distinct
                Expect.equal folders.Length 1 "one folder"
                let scalars, texts = read folders.Head
                Expect.equal (scalars["meta_loss"] |> List.map fst) [ 1L; 2L; 3L ] "one meta-loss per episode"
                Expect.equal (scalars["validation_loss"] |> List.map fst) [ 1L; 2L; 3L ] "validated every episode"
                let info = Optimizers.Learned.LearnedOptimizer.load out
                let saved = info.Info["meta_losses"].Split(' ') |> Array.map float |> List.ofArray
                for a, b in List.zip (scalars["meta_loss"] |> List.map snd) saved do
                    closeTo { Abs = 1e-6; Rel = 1e-3 } a b "the meta-losses the file records (4 significant digits there)"
                Expect.stringContains texts["hparams/text_summary"] "| kind | hyperadam |" "the kind"
                Expect.stringContains texts["hparams/text_summary"] "| horizon | 4 |" "the horizon"
                ignore stdout
    ]
