namespace Optimizers.Data

open System.Collections.Generic

/// Seeded minibatches over n examples. Training walks epochs: epoch e visits every example once,
/// in the order of a permutation drawn from (seed, e); step t takes the (t mod k)-th block of
/// `batch` examples of epoch t / k, where k = n / batch full batches per epoch (the n mod batch
/// examples left over at the end of a permutation are skipped in that epoch; a different
/// permutation leaves out others). So the batch of step t is a function of (seed, t) alone: a
/// run resumed at step t sees exactly the batches an uninterrupted run would.
module Sampler =

    let private check (n: int) (batch: int) =
        if batch < 1 then invalidArg "batch" $"batch size {batch} is invalid; it must be >= 1"
        if batch > n then invalidArg "batch" $"batch size {batch} exceeds the {n} examples of the data set"

    /// Full batches per epoch.
    let batchesPerEpoch (n: int) (batch: int) : int =
        check n batch
        n / batch

    // the last few permutations, so that consecutive steps do not redraw the epoch's order
    let private recent = Queue<(int * int * int) * int[]>()

    /// The order of the examples in epoch `epoch` (a permutation of 0 .. n-1).
    let permutation (seed: int) (n: int) (epoch: int) : int[] =
        lock recent (fun () ->
            let key = (seed, n, epoch)
            match recent |> Seq.tryFind (fun (k, _) -> k = key) with
            | Some(_, p) -> p
            | None ->
                let p = Rng.Of([ int64 seed; int64 n; int64 epoch; 0x5A3L ]).Permutation n
                if recent.Count >= 8 then recent.Dequeue() |> ignore
                recent.Enqueue((key, p))
                p)

    /// The example indices of the minibatch of 0-based step `step`.
    let batch (seed: int) (n: int) (batchSize: int) (step: int) : int[] =
        if step < 0 then invalidArg "step" $"step {step} is invalid; steps count from 0"
        let k = batchesPerEpoch n batchSize
        let p = permutation seed n (step / k)
        let start = (step % k) * batchSize
        p[start .. start + batchSize - 1]

    /// The minibatches of one epoch in order: the `batchesPerEpoch` full batches that `batch`
    /// gives for the steps of that epoch, then, when `includePartial`, the last n mod batch
    /// examples as one smaller batch (so an epoch can visit every example).
    let epoch (seed: int) (n: int) (batchSize: int) (includePartial: bool) (epoch: int) : seq<int[]> =
        let k = batchesPerEpoch n batchSize
        if epoch < 0 then invalidArg "epoch" $"epoch {epoch} is invalid; epochs count from 0"
        seq {
            let p = permutation seed n epoch
            for i in 0 .. k - 1 -> p[i * batchSize .. (i + 1) * batchSize - 1]
            if includePartial && k * batchSize < n then yield p[k * batchSize ..]
        }

    /// Consecutive chunks 0 .. n-1 of at most `size` (evaluation over a whole set, in order).
    let chunks (n: int) (size: int) : seq<int[]> =
        seq { for start in 0 .. size .. n - 1 -> Array.init (min size (n - start)) (fun i -> start + i) }
