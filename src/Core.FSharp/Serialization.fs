namespace Optimizers

open System
open System.IO
open System.Text
open System.Text.Json.Nodes
open TorchSharp

/// Optimizer state files: one file holds a state (every tensor, every step count) together with
/// the optimizer's name and state layout version, so that loading it into another optimizer, or
/// reading a file that is not one, fails with a message saying so.
///
/// Layout: the 8 bytes "OPTSTATE", an int32 format version, an int32 header length, the header
/// as UTF-8 JSON (optimizer, version, the state tree with each tensor's dtype, shape, offset and
/// byte length), then the tensors' raw little-endian bytes.
module Serialization =

    let private magic = Encoding.ASCII.GetBytes "OPTSTATE"
    let formatVersion = 1

    let private fail (path: string) (what: string) : 'a =
        raise (InvalidDataException($"{path}: {what}"))

    let private dtypes =
        [ torch.ScalarType.Float32; torch.ScalarType.Float64; torch.ScalarType.Float16
          torch.ScalarType.BFloat16; torch.ScalarType.Int64; torch.ScalarType.Int32; torch.ScalarType.Bool ]

    /// Save a state to `path` as the state of `optimizer`.
    let saveState (path: string) (optimizer: Transformation) (state: State) =
        if state.Kind <> optimizer.Name then
            Tensors.invalidArg "state" $"cannot save a state of '{state.Kind}' as the state of '{optimizer.Name}'"
        let blob = new MemoryStream()
        let tensorNode (t: Tensor) =
            use c = t.detach().cpu().contiguous()
            let bytes = c.bytes.ToArray()
            let node = JsonObject()
            node["dtype"] <- JsonValue.Create(string c.dtype)
            node["shape"] <- JsonArray(c.shape |> Array.map (fun d -> JsonValue.Create d :> JsonNode))
            node["offset"] <- JsonValue.Create blob.Position
            node["bytes"] <- JsonValue.Create bytes.LongLength
            blob.Write(bytes, 0, bytes.Length)
            node
        let rec stateNode (s: State) : JsonNode =
            let slots = JsonObject()
            for KeyValue(name, tree) in s.Slots do
                let t = JsonObject()
                t["names"] <- JsonArray(tree.Names |> Array.map (fun n -> JsonValue.Create n :> JsonNode))
                t["tensors"] <- JsonArray(tree.Values |> Array.map (fun x -> tensorNode x :> JsonNode))
                slots[name] <- t
            let scalars = JsonObject()
            for KeyValue(name, x) in s.Scalars do scalars[name] <- tensorNode x
            let node = JsonObject()
            node["kind"] <- JsonValue.Create s.Kind
            node["count"] <- JsonValue.Create s.Count
            node["slots"] <- slots
            node["scalars"] <- scalars
            node["children"] <- JsonArray(s.Children |> List.map stateNode |> Array.ofList)
            node
        let header = JsonObject()
        header["optimizer"] <- JsonValue.Create optimizer.Name
        header["version"] <- JsonValue.Create optimizer.Version
        header["library"] <- JsonValue.Create(typeof<State>.Assembly.GetName().Version.ToString())
        header["state"] <- stateNode state
        let headerBytes = Encoding.UTF8.GetBytes(header.ToJsonString())
        let tmp = path + ".tmp"
        do
            use f = File.Create tmp
            use w = new BinaryWriter(f)
            w.Write magic
            w.Write formatVersion
            w.Write headerBytes.Length
            w.Write headerBytes
            blob.Position <- 0L
            blob.CopyTo f
        // Written whole, then renamed: a crash never leaves a half-written file under the name.
        File.Move(tmp, path, true)

    /// Load the state of `optimizer` from `path`. A file that is not a state file, is truncated,
    /// or holds another optimizer's state gives an InvalidDataException naming the file.
    let loadState (path: string) (optimizer: Transformation) : State =
        if not (File.Exists path) then raise (FileNotFoundException($"{path}: no such optimizer state file", path))
        let bytes = File.ReadAllBytes path
        if bytes.Length < 16 || not (bytes.AsSpan(0, 8).SequenceEqual(ReadOnlySpan magic)) then
            fail path "not an optimizer state file (it does not start with OPTSTATE)"
        let version = BitConverter.ToInt32(bytes, 8)
        if version <> formatVersion then
            fail path $"state file format {version} is not supported (this library reads format {formatVersion})"
        let headerLength = BitConverter.ToInt32(bytes, 12)
        if headerLength < 2 || 16L + int64 headerLength > bytes.LongLength then fail path "truncated (the header is cut off)"
        let header =
            try JsonNode.Parse(Encoding.UTF8.GetString(bytes, 16, headerLength)).AsObject()
            with e -> fail path $"corrupt header ({e.Message})"
        let dataStart = 16 + headerLength
        let str (n: JsonNode) (key: string) =
            match n[key] with
            | null -> fail path $"corrupt header (no '{key}')"
            | v -> v.GetValue<string>()
        let name = str header "optimizer"
        let ver = header["version"].GetValue<int>()
        if name <> optimizer.Name then
            fail path $"holds the state of '{name}', not of '{optimizer.Name}'; load it with a '{name}' optimizer"
        if ver <> optimizer.Version then
            fail path $"holds '{name}' state layout version {ver}; this library's '{name}' uses version {optimizer.Version}"
        let tensorOf (n: JsonNode) : Tensor =
            let dtypeName = str n "dtype"
            let dtype =
                match dtypes |> List.tryFind (fun d -> string d = dtypeName) with
                | Some d -> d
                | None -> fail path $"unsupported tensor dtype '{dtypeName}'"
            let shape = n["shape"].AsArray() |> Seq.map (fun d -> d.GetValue<int64>()) |> Array.ofSeq
            let offset = n["offset"].GetValue<int64>()
            let length = n["bytes"].GetValue<int64>()
            if offset < 0L || length < 0L || int64 dataStart + offset + length > bytes.LongLength then
                fail path "truncated (tensor data is cut off)"
            let t = torch.empty(shape, dtype = dtype)
            if t.ElementSize * t.numel() <> length then fail path "corrupt (a tensor's byte length does not match its shape)"
            t.bytes <- Span(bytes, dataStart + int offset, int length)
            t
        let rec stateOf (n: JsonNode) : State =
            let slots =
                [ for KeyValue(k, v) in n["slots"].AsObject() ->
                    let names = v["names"].AsArray() |> Seq.map (fun x -> x.GetValue<string>()) |> Array.ofSeq
                    let values = v["tensors"].AsArray() |> Seq.map tensorOf |> Array.ofSeq
                    k, { Names = names; Values = values } ]
            let scalars = [ for KeyValue(k, v) in n["scalars"].AsObject() -> k, tensorOf v ]
            { Kind = str n "kind"
              Count = n["count"].GetValue<int>()
              Slots = Map.ofList slots
              Scalars = Map.ofList scalars
              Children = n["children"].AsArray() |> Seq.map stateOf |> List.ofSeq }
        try stateOf header["state"]
        with
        | :? InvalidDataException -> reraise ()
        | e -> fail path $"corrupt header ({e.Message})"
