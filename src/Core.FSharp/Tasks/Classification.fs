namespace Optimizers.Tasks

open System
open TorchSharp
open Optimizers
open Optimizers.Data

/// How images become network inputs.
type Preprocess =
    /// Pixels / 255, in [0, 1] (HyperAdam's and the thesis's MNIST input).
    | Scale01
    /// (pixels / 255 - mean) / std (the hypergradient paper's MNIST: 0.1307, 0.3081).
    | Standardize of mean: float * std: float
    /// TensorFlow's CIFAR-10 tutorial input: a crop x crop window, random (with a random
    /// horizontal flip) for training batches when `augment`, central otherwise, then per-image
    /// standardisation (x - mean) / max(stddev, 1 / sqrt(pixels)). The tutorial's random
    /// brightness and contrast changes are left out.
    | CifarCrop of crop: int * augment: bool

/// Options shared by the image-classification tasks.
type ClassificationOptions =
    { /// Examples per training minibatch.
      BatchSize: int
      /// Seed of the minibatch sequence (and of random crops): same seed, same batches.
      DataSeed: int
      Init: InitScheme
      Preprocess: Preprocess
      /// Weight decay added to the training loss as coefficient * sum(w^2) / 2 over the named
      /// parameters (TensorFlow's l2_loss, as the CIFAR-10 tutorial does); 0 for none.
      WeightDecay: float
      DecayedParams: string list }

    /// HyperAdam's settings: batch 128, N(0, 0.1^2) initialisation, pixels in [0, 1].
    static member Default =
        { BatchSize = 128; DataSeed = 0; Init = Normal 0.1; Preprocess = Scale01; WeightDecay = 0.0; DecayedParams = [] }

/// Image classification tasks: a functional network, a data set, cross-entropy loss.
module Classification =

    // Each set's pixels as one uint8 tensor [N, C, H, W] on the CPU, made on first use and kept
    // out of every DisposeScope; a batch is then one index_select and one conversion.
    let private pixelTensors = System.Runtime.CompilerServices.ConditionalWeakTable<ImageSet, Tensor>()

    let private pixelsOf (set: ImageSet) : Tensor =
        lock pixelTensors (fun () ->
            match pixelTensors.TryGetValue set with
            | true, t -> t
            | _ ->
                let t = torch.tensor(set.Pixels, dtype = torch.ScalarType.Byte).reshape(int64 set.Count, int64 set.Channels, int64 set.Height, int64 set.Width)
                let t = t.DetachFromDisposeScope()
                pixelTensors.Add(set, t)
                t)

    /// Network inputs [B, C, H', W'] for the images `indices` of a set, as `dtype` on `device`;
    /// `rng` draws crops and flips for augmented training batches.
    let inputs (pre: Preprocess) (set: ImageSet) (indices: int[]) (rng: Rng option) (dtype: torch.ScalarType) (device: torch.Device) : Tensor =
        let b = indices.Length
        match pre with
        | Scale01 | Standardize _ ->
            use idx = torch.tensor(indices |> Array.map int64, dtype = torch.ScalarType.Int64)
            let x = pixelsOf(set).index_select(0L, idx).``to``(dtype, device) / 255.0
            match pre with
            | Standardize(mean, std) -> (x - mean) / std
            | _ -> x
        | CifarCrop(crop, augment) ->
            if crop > set.Height || crop > set.Width then
                Tensors.invalidArg "crop" $"crop {crop} is larger than the {set.Height} x {set.Width} images"
            // per image: the crop's top row dy, left column dx, and whether it is mirrored
            let dy, dx, flip = Array.zeroCreate<int> b, Array.zeroCreate<int> b, Array.zeroCreate<bool> b
            for i in 0 .. b - 1 do
                match rng with
                | Some r when augment ->
                    dy[i] <- r.NextInt(set.Height - crop + 1)
                    dx[i] <- r.NextInt(set.Width - crop + 1)
                    flip[i] <- r.NextInt 2 = 1
                | _ ->
                    dy[i] <- (set.Height - crop) / 2
                    dx[i] <- (set.Width - crop) / 2
            let c, cropL, bL = int64 set.Channels, int64 crop, int64 b
            let rows = Array.init (b * crop) (fun j -> int64 (dy[j / crop] + j % crop))
            let cols =
                Array.init (b * crop) (fun j ->
                    let i, x = j / crop, j % crop
                    int64 (if flip[i] then dx[i] + crop - 1 - x else dx[i] + x))
            use idx = torch.tensor(indices |> Array.map int64, dtype = torch.ScalarType.Int64)
            let images = pixelsOf(set).index_select(0L, idx).to_type(dtype)
            let rowIndex = torch.tensor(rows, dtype = torch.ScalarType.Int64).reshape(bL, 1L, cropL, 1L).expand(bL, c, cropL, int64 set.Width)
            let colIndex = torch.tensor(cols, dtype = torch.ScalarType.Int64).reshape(bL, 1L, 1L, cropL).expand(bL, c, cropL, cropL)
            let x = images.gather(2L, rowIndex).gather(3L, colIndex)
            let dims = [| 1L; 2L; 3L |]
            let mean = x.mean(dims, keepdim = true)
            let std = x.std(dims, unbiased = false, keepdim = true).clamp_min(TorchSharp.Scalar.op_Implicit (1.0 / sqrt (float (c * cropL * cropL))))
            ((x - mean) / std).``to``(device)

    /// Labels of the images `indices` as an int64 tensor.
    let labels (set: ImageSet) (indices: int[]) (device: torch.Device) : Tensor =
        torch.tensor(indices |> Array.map (fun i -> int64 set.Labels[i]), dtype = torch.ScalarType.Int64, device = device)

    /// Top-1 and top-2 hits (counts) of logits against labels.
    let private hits (logits: Tensor) (y: Tensor) : float * float =
        let struct (_, top) = logits.topk(2, 1, true, true)
        let eq = top.eq(y.unsqueeze(1))
        eq.select(1, 0L).sum().ToDouble(), eq.any(1).sum().ToDouble()

    /// The metrics of `net` on every image of a set, in chunks of `chunk` images, without a graph.
    let evaluateSet (net: Network) (pre: Preprocess) (set: ImageSet) (chunk: int) (p: Tree) : Metrics =
        let like = p.Values[0]
        let mutable loss = 0.0
        let mutable top1 = 0.0
        let mutable top2 = 0.0
        use _ = torch.no_grad()
        for idx in Sampler.chunks set.Count chunk do
            use _scope = torch.NewDisposeScope()
            let x = inputs pre set idx None like.dtype like.device
            let y = labels set idx like.device
            let logits = net.Forward p x
            loss <- loss + torch.nn.functional.cross_entropy(logits, y, reduction = torch.nn.Reduction.Sum).ToDouble()
            let h1, h2 = hits logits y
            top1 <- top1 + h1
            top2 <- top2 + h2
            Memory.afterStep ()
        let n = float set.Count
        { Loss = loss / n; Top1 = Some(top1 / n); Top2 = Some(top2 / n); Count = set.Count }

    /// A classification task: the loss of step t is the mean cross-entropy of `net` on the
    /// minibatch `Sampler.batch o.DataSeed n o.BatchSize t` of the training set (plus the weight
    /// decay term, if any); `Evaluate` gives loss, top-1 and top-2 on a whole split.
    let task (name: string) (net: Network) (data: ImageSplits) (o: ClassificationOptions) : Task =
        let train = data.Train
        Sampler.batchesPerEpoch train.Count o.BatchSize |> ignore // validates the batch size
        let specNames = net.Params |> List.map (fun s -> s.Name)
        for d in o.DecayedParams do
            if not (List.contains d specNames) then invalidOp $"{name}: weight decay on '{d}', which the network does not have"
        if o.WeightDecay < 0.0 then Tensors.invalidArg "weight_decay" $"{name}: weight_decay = {o.WeightDecay} is invalid; it must be >= 0"
        let loss (step: int) (p: Tree) =
            let like = p.Values[0]
            let idx = Sampler.batch o.DataSeed train.Count o.BatchSize step
            let rng = match o.Preprocess with CifarCrop(_, true) -> Some(Rng.Of [ int64 o.DataSeed; int64 step; 0xC209L ]) | _ -> None
            let x = inputs o.Preprocess train idx rng like.dtype like.device
            let y = labels train idx like.device
            let ce = torch.nn.functional.cross_entropy(net.Forward p x, y)
            if o.WeightDecay = 0.0 || o.DecayedParams.IsEmpty then ce
            else
                let l2 = o.DecayedParams |> List.map (fun n -> p[n].square().sum()) |> List.reduce (+)
                ce + l2 * (0.5 * o.WeightDecay)
        { Name = name
          Init = Layers.init o.Init net.Params
          Loss = loss
          Evaluate = Some(fun split p -> evaluateSet net o.Preprocess (data.Get split) 500 p) }
