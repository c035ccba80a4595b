namespace Optimizers.Data

open System
open System.IO
open System.IO.Compression

/// An IDX array of unsigned bytes (the format of the MNIST files): dimensions and data, row-major.
type IdxArray =
    { Path: string
      Dims: int[]
      Data: byte[] }

/// Reader of IDX files (LeCun's MNIST format), gzip-compressed or raw, told apart by their first
/// bytes (gzip starts 1f 8b, IDX starts 00 00). Header: two zero bytes, a type code (0x08 =
/// unsigned byte, the only one MNIST uses and the only one read here), the number of
/// dimensions, then each dimension as a big-endian int32, then the data. Any problem (bad gzip,
/// wrong magic number, truncated or oversized data) raises an InvalidDataException whose message
/// starts with the file's path and says what is wrong. The gzip trailer (CRC-32 and length of the
/// data) is checked here: .NET's GZipStream does not, so a file cut inside its last 8 bytes or
/// flipped there would otherwise pass.
module Idx =

    let private fail (path: string) (problem: string) : 'a = raise (InvalidDataException($"{path}: {problem}"))

    let private crcTable =
        Array.init 256 (fun n ->
            let mutable c = uint32 n
            for _ in 1..8 do c <- if c &&& 1u <> 0u then 0xEDB88320u ^^^ (c >>> 1) else c >>> 1
            c)

    /// The CRC-32 of gzip (ISO 3309, polynomial 0xEDB88320, reflected).
    let crc32 (data: byte[]) : uint32 =
        let mutable c = 0xFFFFFFFFu
        for b in data do c <- crcTable[int ((c ^^^ uint32 b) &&& 0xFFu)] ^^^ (c >>> 8)
        c ^^^ 0xFFFFFFFFu

    /// Fail unless a single-member gzip file's trailer (CRC-32, then the data's length mod 2^32,
    /// little-endian) matches the data it decoded to.
    let private checkTrailer (path: string) (file: byte[]) (data: byte[]) =
        let le (at: int) = Buffers.Binary.BinaryPrimitives.ReadUInt32LittleEndian(ReadOnlySpan(file, at, 4))
        if file.Length < 18 then fail path "bad gzip data: the file is too short for gzip's header and trailer; it is truncated"
        if le (file.Length - 4) <> uint32 data.LongLength || le (file.Length - 8) <> crc32 data then
            fail path "bad gzip data: the trailer's CRC-32 or length does not match the data; the file is corrupt or truncated"

    /// The bytes of a file, gunzipped when it starts with the gzip signature.
    let readBytes (path: string) : byte[] =
        let bytes =
            try File.ReadAllBytes path
            with
            | :? FileNotFoundException | :? DirectoryNotFoundException -> raise (FileNotFoundException($"{path}: no such file", path))
        if bytes.Length >= 2 && bytes[0] = 0x1fuy && bytes[1] = 0x8buy then
            try
                use input = new MemoryStream(bytes)
                use gz = new GZipStream(input, CompressionMode.Decompress)
                use output = new MemoryStream()
                gz.CopyTo output
                let data = output.ToArray()
                checkTrailer path bytes data
                data
            with
            | :? InvalidDataException as e -> fail path $"bad gzip data ({e.Message}); the file is corrupt or truncated"
            | :? EndOfStreamException -> fail path "bad gzip data: the compressed stream ends early; the file is truncated"
        else bytes

    let private bigEndian (b: byte[]) (at: int) =
        (int b[at] <<< 24) ||| (int b[at + 1] <<< 16) ||| (int b[at + 2] <<< 8) ||| int b[at + 3]

    /// Read an IDX file of unsigned bytes whose magic number must be `0x0000080D` with D =
    /// `dims` (0x00000803 for images, 0x00000801 for labels). `what` names the expected content
    /// in messages ("MNIST images").
    let readUbyte (what: string) (dims: int) (path: string) : IdxArray =
        let b = readBytes path
        if b.Length < 4 then fail path $"truncated: {b.Length} bytes, too short for an IDX header ({what})"
        let magic = bigEndian b 0
        let expected = 0x800 ||| dims
        if magic <> expected then
            let hint =
                if b[0] = 0uy && b[1] = 0uy && b[2] = 8uy then $"an unsigned-byte IDX array of {b[3]} dimensions, not {dims}"
                elif b[0] = 0uy && b[1] = 0uy then $"IDX type code 0x{b[2]:X2}, not 0x08 (unsigned byte)"
                else "not an IDX file"
            fail path $"wrong magic number 0x{magic:X8}, expected 0x{expected:X8} for {what} ({hint})"
        let header = 4 + 4 * dims
        if b.Length < header then fail path $"truncated: {b.Length} bytes, shorter than the {header}-byte header of {what}"
        let shape = Array.init dims (fun i -> bigEndian b (4 + 4 * i))
        let product = String.Join(" x ", shape)
        let dimsText = String.Join(",", shape)
        if shape |> Array.exists (fun d -> d < 0) then
            fail path $"corrupt header: a negative dimension in [{dimsText}]"
        let expectedData = shape |> Array.fold (fun acc d -> acc * int64 d) 1L
        let actual = int64 (b.Length - header)
        if actual < expectedData then
            fail path $"truncated: the header declares {product} = {expectedData} data bytes, the file holds {actual}"
        if actual > expectedData then
            fail path $"wrong size: {actual - expectedData} bytes follow the {expectedData} data bytes the header declares [{dimsText}]"
        { Path = path; Dims = shape; Data = b[header..] }

    /// Read MNIST-style images: magic 0x00000803, N x rows x cols bytes.
    let readImages (path: string) : IdxArray = readUbyte "images (N x rows x cols)" 3 path

    /// Read MNIST-style labels: magic 0x00000801, N bytes.
    let readLabels (path: string) : IdxArray = readUbyte "labels (N)" 1 path

    /// Write an unsigned-byte IDX array, gzip-compressed when the path ends in ".gz" (for tests
    /// and for making small data sets).
    let write (path: string) (dims: int[]) (data: byte[]) =
        use ms = new MemoryStream()
        let be (x: int) = [| byte (x >>> 24); byte (x >>> 16); byte (x >>> 8); byte x |]
        ms.Write(be (0x800 ||| dims.Length), 0, 4)
        for d in dims do ms.Write(be d, 0, 4)
        ms.Write(data, 0, data.Length)
        let raw = ms.ToArray()
        if path.EndsWith(".gz", StringComparison.OrdinalIgnoreCase) then
            use f = File.Create path
            use gz = new GZipStream(f, CompressionLevel.Optimal)
            gz.Write(raw, 0, raw.Length)
        else File.WriteAllBytes(path, raw)
