namespace Optimizers

open System
open System.Runtime.InteropServices
open TorchSharp

/// A TorchSharp tensor; the one array type of the library.
type Tensor = torch.Tensor

/// An invalid argument: a bad hyperparameter, an unknown name, a malformed option. The message
/// names the thing and says what would be valid; `ParamName` is the argument's name.
type InvalidOptionException(message: string, paramName: string) =
    inherit ArgumentException(message, paramName)
    /// The message alone, without .NET's " (Parameter '...')" suffix: it already names the parameter.
    override _.Message = message

/// Small tensor helpers shared by every module.
module Tensors =

    // Before this file's first TorchSharp value loads LibTorch (an F# script's first use).
    do LibTorch.prepare ()

    /// Raise an InvalidOptionException.
    let invalidArg (paramName: string) (message: string) : 'a =
        raise (InvalidOptionException(message, paramName))

    /// Items joined by ", " (for messages that list what is valid).
    let commas (items: seq<string>) : string = String.Join(", ", items)

    /// A float as a TorchSharp Scalar (for overloads that take Scalar or Tensor).
    let scalar (v: float) : Scalar = Scalar.op_Implicit v

    /// `op x s` with `s` a Scalar holding `v` that is freed right after the call, and `x` kept
    /// alive through it. TorchSharp hands raw handles to native code without GC.KeepAlive, so an
    /// implicit Scalar (as in `x * 0.5`) or a temporary tensor that nothing else references can be
    /// finalized by the GC while the native call still reads it, which corrupts memory (seen in
    /// property tests as "Unknown scalar type" and as wrong numbers). Same native op, same numbers.
    let withScalar (op: Tensor -> Scalar -> Tensor) (x: Tensor) (v: float) : Tensor =
        use s = scalar v
        let r = op x s
        GC.KeepAlive x
        r

    /// alpha = 1 of `add`, alive as long as the process.
    let private one : Scalar = Scalar.op_Implicit 1

    /// a + b. TorchSharp's `a + b` makes an implicit alpha = 1 Scalar in every call, exposed to the
    /// race described at `withScalar`; this passes one that is never finalized.
    let add (a: Tensor) (b: Tensor) : Tensor =
        let r = a.add(b, one)
        GC.KeepAlive a
        GC.KeepAlive b
        r

    /// a - b, with both kept alive through the native call.
    let sub (a: Tensor) (b: Tensor) : Tensor =
        let r = a.sub b
        GC.KeepAlive a
        GC.KeepAlive b
        r

    /// 1.0 as a Scalar that lives as long as the process (ELU's scale and input scale).
    let private oneF : Scalar = Scalar.op_Implicit 1.0

    /// ELU(x) = x for x > 0, alpha (exp x - 1) otherwise, as torch.nn.functional.elu. TorchSharp's
    /// `elu(x, alpha)` makes three implicit Scalars (alpha, scale, input scale) that nothing holds
    /// during the native call: with two jobs in one process, a GC started by the other job's
    /// thread let the finalizer free them under THSTensor_elu ("Expected false to be true" in
    /// c10::Scalar::toFloat, issue 20). Here alpha is owned and freed after the call.
    let elu (x: Tensor) (alpha: float) : Tensor =
        use a = scalar alpha
        let r = x.elu(a, oneF, oneF)
        GC.KeepAlive x
        r

    /// x + v for a number v, as `withScalar`.
    let addNum (x: Tensor) (v: float) : Tensor = withScalar (fun t s -> t.add(s, one)) x v

    /// x * v for a number v, as `withScalar` (the same op as TorchSharp's `v * x`).
    let mulNum (x: Tensor) (v: float) : Tensor = withScalar (fun t s -> t.mul s) x v

    /// x / v for a number v, as `withScalar`.
    let divNum (x: Tensor) (v: float) : Tensor = withScalar (fun t s -> t.div s) x v

    /// sqrt(x + epsRoot). With epsRoot > 0 the derivative stays finite where x = 0, which
    /// differentiating through Adam-like updates needs (DiffSharp issue 287; optax's eps_root).
    let safeSqrt (epsRoot: float) (x: Tensor) : Tensor =
        if epsRoot = 0.0 then x.sqrt() else (addNum x epsRoot).sqrt()

    /// The value of a one-element tensor as a float, whatever its dtype.
    let toFloat (t: Tensor) : float = t.ToDouble()

    /// True when every element is finite (no NaN, no infinity).
    let allFinite (t: Tensor) : bool =
        use f = torch.isfinite t
        use a = f.all()
        a.ToBoolean()

    /// The dtypes the library computes in, by their command-line names.
    let dtypeNames = [ "float32"; "float64" ]

    /// Parse a dtype name ("float32" or "float64").
    let parseDtype (name: string) : torch.ScalarType =
        match name.Trim().ToLowerInvariant() with
        | "float32" | "float" | "single" -> torch.ScalarType.Float32
        | "float64" | "double" -> torch.ScalarType.Float64
        | other -> invalidArg "dtype" $"unknown dtype '{other}'; valid: {commas dtypeNames}"

/// The guard against glibc's allocator trap (shared/notes/TORCHSHARP.md): glibc before 2.38 does
/// not reuse freed aligned chunks, so code that allocates tensor temporaries every step grows
/// without bound. Returning free memory to the system with malloc_trim keeps it flat. Every step
/// loop and meta-iteration loop of the library calls `Memory.afterStep`.
module Memory =

    [<DllImport("libc", EntryPoint = "malloc_trim")>]
    extern int private mallocTrim(unativeint pad)

    [<DllImport("libc", EntryPoint = "gnu_get_libc_version")>]
    extern nativeint private gnuGetLibcVersion()

    /// True on Linux with glibc older than 2.38 and no other allocator preloaded.
    let needsTrim : bool =
        if not (RuntimeInformation.IsOSPlatform OSPlatform.Linux) then false
        else
            let preload = Environment.GetEnvironmentVariable "LD_PRELOAD"
            if not (isNull preload) && preload.Contains "jemalloc" then false
            else
                try
                    match Version.TryParse(Marshal.PtrToStringAnsi(gnuGetLibcVersion ())) with
                    | true, v -> v < Version(2, 38)
                    | _ -> false
                with _ -> false // not glibc (musl): nothing to guard against

    /// How many steps pass between two trims. The call itself is cheap (about 0.03 ms); the cost
    /// is that the memory it returns is page-faulted in again by the next steps. Measured by
    /// `optimizers bench` (10M float32 parameters in 50 tensors, pure-path Adam, 2 threads):
    /// every step 160 ms/step, every 4 steps 61, every 16 steps 28, with the same flat RSS.
    let mutable trimEvery = 16

    let mutable private steps = 0

    /// Give freed native memory back now (no-op where the allocator does not need it).
    let trim () = if needsTrim then mallocTrim 0un |> ignore

    /// Call once per step of any loop that allocates tensor temporaries.
    let afterStep () =
        if needsTrim then
            let n = Threading.Interlocked.Increment(&steps)
            if n % trimEvery = 0 then mallocTrim 0un |> ignore
