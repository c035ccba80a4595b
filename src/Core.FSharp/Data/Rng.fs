namespace Optimizers.Data

open System

/// A small deterministic random-number generator (SplitMix64, Steele, Lea and Flood 2014) for
/// everything a task draws: initial weights, minibatch orders, crops, synthetic sequences. Its
/// output is fixed by the seed on every platform and .NET version (System.Random's is not
/// promised), so a run is reproducible from its seed and a resumed run sees the same numbers.
/// Not thread-safe: each stream owns its instance.
type Rng(seed: uint64) =
    let mutable state = seed
    let mutable spare = nan

    /// The SplitMix64 output function: a bijective mix of 64 bits.
    static member Mix(z: uint64) : uint64 =
        let z = (z ^^^ (z >>> 30)) * 0xBF58476D1CE4E5B9UL
        let z = (z ^^^ (z >>> 27)) * 0x94D049BB133111EBUL
        z ^^^ (z >>> 31)

    /// A generator for a named stream: the seed of the stream is a mix of all the parts, e.g.
    /// `Rng.Of [ seed; step ]` for the minibatch of a step. Different part lists give
    /// independent-looking streams.
    static member Of(parts: int64 list) : Rng =
        let h = parts |> List.fold (fun h p -> Rng.Mix(h ^^^ Rng.Mix(uint64 p + 0x9E3779B97F4A7C15UL))) 0x5851F42D4C957F2DUL
        Rng(h)

    /// The next 64 random bits.
    member _.NextUInt64() : uint64 =
        state <- state + 0x9E3779B97F4A7C15UL
        Rng.Mix state

    /// Uniform in [0, 1), 53 random bits.
    member r.NextDouble() : float = float (r.NextUInt64() >>> 11) * (1.0 / 9007199254740992.0)

    /// Uniform in [lo, hi).
    member r.Uniform(lo: float, hi: float) : float = lo + (hi - lo) * r.NextDouble()

    /// Uniform integer in [0, n), without modulo bias (rejection sampling).
    member r.NextInt(n: int) : int =
        if n <= 0 then invalidArg "n" $"Rng.NextInt: n = {n} must be positive"
        let n64 = uint64 n
        let limit = UInt64.MaxValue - (UInt64.MaxValue % n64) // accept draws below a multiple of n
        let mutable x = r.NextUInt64()
        while x >= limit do x <- r.NextUInt64()
        int (x % n64)

    /// A standard normal draw (Box-Muller; the second value of each pair is kept for the next call).
    member r.Normal() : float =
        if not (Double.IsNaN spare) then
            let v = spare
            spare <- nan
            v
        else
            let mutable u = r.NextDouble()
            while u = 0.0 do u <- r.NextDouble()
            let v = r.NextDouble()
            let radius = sqrt (-2.0 * log u)
            spare <- radius * sin (2.0 * Math.PI * v)
            radius * cos (2.0 * Math.PI * v)

    /// A uniformly random permutation of 0 .. n-1 (Fisher-Yates).
    member r.Permutation(n: int) : int[] =
        let p = Array.init n id
        for i in n - 1 .. -1 .. 1 do
            let j = r.NextInt(i + 1)
            let t = p[i]
            p[i] <- p[j]
            p[j] <- t
        p
