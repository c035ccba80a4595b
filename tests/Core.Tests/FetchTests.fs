/// `data fetch`: downloads verified by size and SHA-256, archives unpacked, nothing fetched twice,
/// against an HTTP server on the loopback address that serves files the test made.
module Optimizers.Tests.FetchTests

open System
open System.IO
open System.Net
open System.Threading
open Expecto
open Optimizers.Data

/// Serve `files` (name -> bytes) on 127.0.0.1 until disposed; returns the base address.
let serve (files: Map<string, byte[]>) : string * IDisposable =
    let rec start attempt =
        let port = 20000 + Random.Shared.Next 20000
        let l = new HttpListener()
        l.Prefixes.Add $"http://127.0.0.1:{port}/"
        try
            l.Start()
            l, port
        with _ when attempt < 10 -> start (attempt + 1)
    let listener, port = start 0
    let cts = new CancellationTokenSource()
    let loop =
        async {
            while not cts.IsCancellationRequested do
                let! ctx = listener.GetContextAsync() |> Async.AwaitTask
                let name = ctx.Request.Url.AbsolutePath.TrimStart('/')
                match files.TryFind name with
                | Some bytes ->
                    ctx.Response.ContentLength64 <- bytes.LongLength
                    ctx.Response.OutputStream.Write(bytes, 0, bytes.Length)
                | None -> ctx.Response.StatusCode <- 404
                ctx.Response.Close()
        }
    Async.Start(loop, cts.Token)
    $"http://127.0.0.1:{port}/",
    { new IDisposable with
        member _.Dispose() =
            cts.Cancel()
            listener.Stop() }

let download (name: string) (bytes: byte[]) : Download =
    { File = name; Bytes = bytes.LongLength; Sha256 = Convert.ToHexString(Security.Cryptography.SHA256.HashData bytes).ToLowerInvariant() }

let tempDir () = Path.Combine(Path.GetTempPath(), $"optimizers-fetch-{Guid.NewGuid():N}")

/// A tar.gz holding one file, made in memory.
let tarGz (entry: string) (content: byte[]) : byte[] =
    use ms = new MemoryStream()
    do
        use gz = new Compression.GZipStream(ms, Compression.CompressionLevel.Fastest, true)
        use tar = new Formats.Tar.TarWriter(gz, Formats.Tar.TarEntryFormat.Pax, false)
        let e = Formats.Tar.PaxTarEntry(Formats.Tar.TarEntryType.RegularFile, entry)
        e.DataStream <- new MemoryStream(content)
        tar.WriteEntry e
    ms.ToArray()

[<Tests>]
let tests =
    testSequenced <| testList "fetch" [
        testCase "files are downloaded, verified, and not fetched twice" <| fun () ->
            let a, b = Text.Encoding.ASCII.GetBytes "first file", Array.init 100_000 byte
            let address, server = serve (Map.ofList [ "a.gz", a; "b.gz", b ])
            use _ = server
            let source = { Name = "test"; Mirrors = [ address ]; Files = [ download "a.gz" a; download "b.gz" b ]; Unpack = false }
            let dir = tempDir ()
            Expect.equal (Fetch.run source dir ignore) [ "a.gz"; "b.gz" ] "both downloaded"
            Expect.equal (File.ReadAllBytes(Path.Combine(dir, "b.gz"))) b "content"
            Expect.equal (Fetch.run source dir ignore) [] "nothing fetched the second time"
            Directory.Delete(dir, true)

        testCase "a file with the wrong checksum is refused and not kept; the next mirror is tried" <| fun () ->
            let good = Text.Encoding.ASCII.GetBytes "the real data"
            let address, server = serve (Map.ofList [ "x.gz", Text.Encoding.ASCII.GetBytes "tampered data" ])
            use _ = server
            let goodAddress, goodServer = serve (Map.ofList [ "x.gz", good ])
            use _ = goodServer
            let dir = tempDir ()
            let bad = { Name = "test"; Mirrors = [ address ]; Files = [ download "x.gz" good ]; Unpack = false }
            let e = Expect.throwsC (fun () -> Fetch.run bad dir ignore |> ignore) id
            Expect.stringContains e.Message "x.gz" "names the file"
            Expect.stringContains e.Message "expected 13 bytes" "says what was expected"
            Expect.stringContains e.Message "download it by hand" "says what to do"
            Expect.isFalse (File.Exists(Path.Combine(dir, "x.gz"))) "the bad file is not kept"
            let twoMirrors = { bad with Mirrors = [ address; goodAddress ] }
            Expect.equal (Fetch.run twoMirrors dir ignore) [ "x.gz" ] "the second mirror serves the right file"
            Directory.Delete(dir, true)

        testCase "an archive is unpacked" <| fun () ->
            let archive = tarGz "cifar-10-batches-bin/data_batch_1.bin" (Array.init 3073 byte)
            let address, server = serve (Map.ofList [ "c.tar.gz", archive ])
            use _ = server
            let dir = tempDir ()
            Fetch.run { Name = "test"; Mirrors = [ address ]; Files = [ download "c.tar.gz" archive ]; Unpack = true } dir ignore |> ignore
            Expect.equal (FileInfo(Path.Combine(dir, "cifar-10-batches-bin", "data_batch_1.bin")).Length) 3073L "unpacked"
            Directory.Delete(dir, true)

        testCase "the official manifests are complete" <| fun () ->
            Expect.equal (Fetch.mnist.Files |> List.map (fun f -> f.File)) [ "train-images-idx3-ubyte.gz"; "train-labels-idx1-ubyte.gz"; "t10k-images-idx3-ubyte.gz"; "t10k-labels-idx1-ubyte.gz" ] "MNIST's four files"
            Expect.all (Fetch.sources |> List.collect (fun s -> s.Files)) (fun f -> f.Sha256.Length = 64 && f.Bytes > 0L) "sizes and SHA-256 for every file"
            use out = new StringWriter()
            use err = new StringWriter()
            Expect.equal (Optimizers.Experiments.Cli.run [| "data"; "fetch"; "imagenet" |] out err) 2 "an unknown data set is bad input"
            Expect.stringContains (err.ToString()) "valid: mnist, cifar10" "lists the valid ones"
    ]
