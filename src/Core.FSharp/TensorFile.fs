namespace Optimizers

open System
open System.IO
open System.Text
open System.Text.Json.Nodes
open TorchSharp

/// The one file format of the library: tensors with a JSON header that describes them.
///
/// Layout: 8 ASCII bytes naming the kind of file (e.g. "OPTSTATE"), an int32 format version, an
/// int32 header length, the header as UTF-8 JSON (each tensor described by dtype, shape, offset
/// and byte length), then the tensors' raw little-endian bytes. Files are written whole to a
/// temporary name and renamed, so a crash never leaves a half-written file under the name.
/// Reading checks everything and fails with an InvalidDataException naming the file and the fault.
module TensorFile =

    let formatVersion = 1

    let fail (path: string) (what: string) : 'a = raise (InvalidDataException($"{path}: {what}"))

    let private dtypes =
        [ torch.ScalarType.Float32; torch.ScalarType.Float64; torch.ScalarType.Float16
          torch.ScalarType.BFloat16; torch.ScalarType.Int64; torch.ScalarType.Int32; torch.ScalarType.Bool ]

    /// Collects tensor bytes while the header is built.
    type Writer() =
        let blob = new MemoryStream()
        /// Append a tensor's bytes; returns its descriptor for the header.
        member _.Add(t: Tensor) : JsonNode =
            use c = t.detach().cpu().contiguous()
            let bytes = c.bytes.ToArray()
            let node = JsonObject()
            node["dtype"] <- JsonValue.Create(string c.dtype)
            node["shape"] <- JsonArray(c.shape |> Array.map (fun d -> JsonValue.Create d :> JsonNode))
            node["offset"] <- JsonValue.Create blob.Position
            node["bytes"] <- JsonValue.Create bytes.LongLength
            blob.Write(bytes, 0, bytes.Length)
            node
        member _.Blob = blob

    /// Write a file of the given kind (8 ASCII characters).
    let write (path: string) (kind: string) (header: JsonObject) (w: Writer) =
        let headerBytes = Encoding.UTF8.GetBytes(header.ToJsonString())
        let tmp = path + ".tmp"
        do
            use f = File.Create tmp
            use bw = new BinaryWriter(f)
            bw.Write(Encoding.ASCII.GetBytes kind)
            bw.Write formatVersion
            bw.Write headerBytes.Length
            bw.Write headerBytes
            w.Blob.Position <- 0L
            w.Blob.CopyTo f
        File.Move(tmp, path, true)

    /// Reads tensors described in a header out of a file's bytes.
    type Reader(path: string, bytes: byte[], dataStart: int) =
        member _.Path = path
        /// A string field of a header node, or a clear error.
        member _.Str (n: JsonNode) (key: string) : string =
            match n[key] with
            | null -> fail path $"corrupt header (no '{key}')"
            | v -> v.GetValue<string>()
        /// The tensor a descriptor describes.
        member _.Tensor(n: JsonNode) : Tensor =
            let dtypeName = n["dtype"].GetValue<string>()
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

    /// Open a file of the given kind: its header and a reader for its tensors. `what` names the
    /// kind for messages ("optimizer state file").
    let read (path: string) (kind: string) (what: string) : JsonObject * Reader =
        if not (File.Exists path) then raise (FileNotFoundException($"{path}: no such {what}", path))
        let bytes = File.ReadAllBytes path
        let magic = Encoding.ASCII.GetBytes kind
        if bytes.Length < 16 || not (bytes.AsSpan(0, 8).SequenceEqual(ReadOnlySpan magic)) then
            let actual = if bytes.Length >= 8 then Encoding.ASCII.GetString(bytes, 0, 8) else ""
            let hint = if actual.StartsWith "OPT" then $" (it is a '{actual}' file)" else ""
            fail path $"not an {what} (it does not start with {kind}){hint}"
        let version = BitConverter.ToInt32(bytes, 8)
        if version <> formatVersion then
            fail path $"file format {version} is not supported (this library reads format {formatVersion})"
        let headerLength = BitConverter.ToInt32(bytes, 12)
        if headerLength < 2 || 16L + int64 headerLength > bytes.LongLength then fail path "truncated (the header is cut off)"
        let header =
            try JsonNode.Parse(Encoding.UTF8.GetString(bytes, 16, headerLength)).AsObject()
            with e -> fail path $"corrupt header ({e.Message})"
        header, Reader(path, bytes, 16 + headerLength)

    /// Run `f`, turning any failure other than the reader's own into a clear corrupt-file error.
    let guard (path: string) (f: unit -> 'a) : 'a =
        try f ()
        with
        | :? InvalidDataException -> reraise ()
        | e -> fail path $"corrupt header ({e.Message})"
