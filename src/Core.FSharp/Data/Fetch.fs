namespace Optimizers.Data

open System
open System.IO
open System.Formats.Tar
open System.IO.Compression
open System.Net.Http
open System.Security.Cryptography

/// One file to download: its name, where it lives (relative to a base address), its size and
/// SHA-256.
type Download =
    { File: string
      Bytes: int64
      Sha256: string }

/// A data set to fetch: the base addresses to try in order, the files, and whether the files are
/// a tar.gz archive to unpack.
type DataSource =
    { Name: string
      Mirrors: string list
      Files: Download list
      Unpack: bool }

/// `data fetch`: download the official MNIST and CIFAR-10 files into a data directory, verify
/// every file's size and SHA-256 before it is kept, and unpack CIFAR-10's archive. A file
/// already present with the right checksum is not downloaded again. Without a network the error
/// says where to put the files by hand.
module Fetch =

    /// The official MNIST files (sizes and SHA-256 as published by their mirrors).
    let mnist : DataSource =
        { Name = "mnist"
          Mirrors = [ "https://storage.googleapis.com/cvdf-datasets/mnist/"; "https://ossci-datasets.s3.amazonaws.com/mnist/" ]
          Files =
            [ { File = "train-images-idx3-ubyte.gz"; Bytes = 9_912_422L; Sha256 = "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609" }
              { File = "train-labels-idx1-ubyte.gz"; Bytes = 28_881L; Sha256 = "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c" }
              { File = "t10k-images-idx3-ubyte.gz"; Bytes = 1_648_877L; Sha256 = "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6" }
              { File = "t10k-labels-idx1-ubyte.gz"; Bytes = 4_542L; Sha256 = "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6" } ]
          Unpack = false }

    /// The official CIFAR-10 binary archive (the dataset authors' page; MD5 c32a1d4a... there).
    let cifar10 : DataSource =
        { Name = "cifar10"
          Mirrors = [ "https://www.cs.toronto.edu/~kriz/" ]
          Files = [ { File = "cifar-10-binary.tar.gz"; Bytes = 170_052_171L; Sha256 = "c4a38c50a1bc5f3a1c5537f2155ab9d68f9f25eb1ed8d9ddda3db29a59bca1dd" } ]
          Unpack = true }

    let sources = [ mnist; cifar10 ]

    let sha256Of (path: string) : string =
        use f = File.OpenRead path
        Convert.ToHexString(SHA256.HashData f).ToLowerInvariant()

    /// True when the file exists with the expected size and checksum.
    let verified (path: string) (d: Download) =
        File.Exists path && FileInfo(path).Length = d.Bytes && sha256Of path = d.Sha256

    let private unpack (archive: string) (dir: string) =
        use f = File.OpenRead archive
        use gz = new GZipStream(f, CompressionMode.Decompress)
        TarFile.ExtractToDirectory(gz, dir, true)

    /// Fetch a data source into `dir`; `progress` sees each file's name as it starts.
    /// Returns the files that were downloaded (not already there).
    let run (source: DataSource) (dir: string) (progress: string -> unit) : string list =
        Directory.CreateDirectory dir |> ignore
        use http = new HttpClient(Timeout = TimeSpan.FromMinutes 30.0)
        [ for d in source.Files do
            let target = Path.Combine(dir, d.File)
            if not (verified target d) then
                progress d.File
                let tmp = target + ".part"
                let errors = Collections.Generic.List<string>()
                let mutable ok = false
                for mirror in source.Mirrors do
                    if not ok then
                        try
                            do
                                use response = http.GetAsync(mirror + d.File, HttpCompletionOption.ResponseHeadersRead).Result
                                response.EnsureSuccessStatusCode() |> ignore
                                use body = response.Content.ReadAsStream()
                                use out = File.Create tmp
                                body.CopyTo out
                            let size, hash = FileInfo(tmp).Length, sha256Of tmp
                            if size <> d.Bytes || hash <> d.Sha256 then
                                errors.Add $"{mirror}{d.File}: got {size} bytes with SHA-256 {hash}, expected {d.Bytes} bytes with {d.Sha256}"
                                File.Delete tmp
                            else
                                File.Move(tmp, target, true)
                                ok <- true
                        with e ->
                            let inner = match e with :? AggregateException as a when not (isNull a.InnerException) -> a.InnerException.Message | _ -> e.Message
                            errors.Add $"{mirror}{d.File}: {inner}"
                if not ok then
                    if File.Exists tmp then File.Delete tmp
                    let why = String.Join("; ", errors)
                    raise (IOException(
                        $"{source.Name}: could not fetch {d.File} ({why}). " +
                        $"Without a network, download it by hand into {Path.GetFullPath dir} (SHA-256 {d.Sha256})"))
                yield d.File
            if source.Unpack && not (Directory.Exists(Path.Combine(dir, "cifar-10-batches-bin"))) then unpack target dir ]
