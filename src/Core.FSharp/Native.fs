namespace Optimizers

open System
open System.IO
open System.Runtime.InteropServices

// What must happen before LibTorch loads. Nothing in this file touches a tensor or a TorchSharp
// value: LibTorch reads its settings once, when it loads, and the first TorchSharp value loads it.

/// How long LibTorch's OpenMP worker threads spin between parallel regions before they sleep.
/// libgomp's default spins long; when another process holds one of the cores, the spinning workers
/// take the core that the thread with the work needs. Measured with `optimizers bench` (HyperAdam
/// meta-training on MlpMnist, 2 threads, ms per meta-iteration; "loaded" = one busy loop on the
/// other core): libgomp's default 490-550 quiet / 1440 loaded; OMP_WAIT_POLICY=ACTIVE 435 / 1994-2580;
/// PASSIVE 629 / 663; GOMP_SPINCOUNT=1000 440-530 / 966. A short spin keeps the quiet machine's
/// speed and avoids most of the loaded machine's stall, so that is what `limitSpinning` asks for.
/// The setting is read once, when LibTorch loads: a startup hook (StartupHook.fs, named in the
/// runtimeconfig of every program built against the library) calls it before Main; the CLI, the
/// facade and the learned optimizers call it again at first use (too late to matter when LibTorch
/// is already loaded, harmless then). Setting either variable yourself wins.
module OpenMp =

    [<DllImport("libc", EntryPoint = "setenv")>]
    extern int private setenv(string name, string value, int overwrite)

    /// The spin count `limitSpinning` sets (a literal: nothing here may touch LibTorch).
    [<Literal>]
    let spinCount = "1000"

    /// Set GOMP_SPINCOUNT to `spinCount` unless GOMP_SPINCOUNT or OMP_WAIT_POLICY is already set
    /// (a user's choice wins). Returns the variable and value in effect.
    let limitSpinning () : string * string =
        let get name = match Environment.GetEnvironmentVariable name with null | "" -> None | v -> Some v
        match get "GOMP_SPINCOUNT", get "OMP_WAIT_POLICY" with
        | Some v, _ -> "GOMP_SPINCOUNT", v
        | None, Some v -> "OMP_WAIT_POLICY", v
        | None, None ->
            // the native environment is what LibTorch reads; the managed one is what child processes get
            if RuntimeInformation.IsOSPlatform OSPlatform.Linux then
                try setenv ("GOMP_SPINCOUNT", spinCount, 0) |> ignore with _ -> ()
            Environment.SetEnvironmentVariable("GOMP_SPINCOUNT", spinCount)
            "GOMP_SPINCOUNT", spinCount


/// Loading TorchSharp's native library where the build could not prepare it. TorchSharp 0.107.0's
/// libLibTorchSharp.so asks for GLIBCXX_3.4.32 (GCC 13), for one symbol nothing calls; Debian 12's
/// libstdc++ has 3.4.30, so the library does not load ("... doesn't contain a reference to
/// libtorch-cpu-linux-x64"). A program built against this library gets an output copy with that
/// version need marked weak (buildTransitive/Optimizers.Core.targets). An F# script (`dotnet fsi`
/// with `#r "nuget: ..."`) has no build: TorchSharp loads the file straight from the NuGet cache,
/// which must not be written. `prepare` then writes a patched copy into a folder of its own
/// (~/.local/share/optimizers/libtorchsharp-VERSION, beside links to LibTorch's libraries, which
/// it finds through its $ORIGIN run path) and loads it; TorchSharp's own load by name then finds
/// it already loaded (the dynamic loader matches the soname).
module LibTorch =

    /// The version need made weak.
    [<Literal>]
    let private Glibcxx = "GLIBCXX_3.4.32"

    /// The LibTorch package version TorchSharp 0.107.0 is built against (libtorch-cpu-linux-x64).
    [<Literal>]
    let private LibTorchVersion = "2.10.0"

    /// Offsets of the vna_flags of every need of `version` in an ELF64 little-endian file that is
    /// not yet weak (the same walk as the build's MarkElfVersionNeedWeak): SHT_GNU_verneed
    /// sections, their Verneed entries and each entry's Vernaux list.
    let weakPatches (b: byte[]) (version: string) : int64 list =
        if b.Length < 64 || BitConverter.ToUInt32(b, 0) <> 0x464C457Fu || b[4] <> 2uy || b[5] <> 1uy then []
        else
            let u16 (o: int64) = int64 (BitConverter.ToUInt16(b, int o))
            let u32 (o: int64) = int64 (BitConverter.ToUInt32(b, int o))
            let i64 (o: int64) = BitConverter.ToInt64(b, int o)
            let shoff, shsz, shnum = i64 0x28L, u16 0x3AL, u16 0x3CL
            [ for s in 0L .. shnum - 1L do
                let sh = shoff + s * shsz
                if u32 (sh + 4L) = 0x6ffffffeL then
                    let strtab = i64 (shoff + u32 (sh + 0x28L) * shsz + 0x18L)
                    let mutable vn = i64 (sh + 0x18L)
                    for _ in 1L .. u32 (sh + 0x2CL) do
                        let mutable vna = vn + u32 (vn + 8L)
                        for _ in 1L .. u16 (vn + 2L) do
                            let p = strtab + u32 (vna + 8L)
                            let mutable e = p
                            while b[int e] <> 0uy do e <- e + 1L
                            if Text.Encoding.ASCII.GetString(b, int p, int (e - p)) = version && (u16 (vna + 4L) &&& 2L) = 0L then
                                yield vna + 4L
                            vna <- vna + u32 (vna + 12L)
                        vn <- vn + u32 (vn + 12L) ]

    /// Where the build put TorchSharp's native library beside the program, if it did.
    let private besideProgram () =
        [ Path.Combine(AppContext.BaseDirectory, "libLibTorchSharp.so")
          Path.Combine(AppContext.BaseDirectory, "runtimes", "linux-x64", "native", "libLibTorchSharp.so") ]
        |> List.exists File.Exists

    /// TorchSharp's package folder in the NuGet cache (.../torchsharp/VERSION), from its assembly's
    /// location (lib/TFM/TorchSharp.dll), without running TorchSharp's static initialisation.
    let private torchSharpPackage () =
        let dll = typeof<TorchSharp.torch>.Assembly.Location
        if String.IsNullOrEmpty dll then None
        else Some(DirectoryInfo(Path.GetDirectoryName dll).Parent.Parent)

    /// The patched copy's folder for a TorchSharp package: the copy and links to LibTorch's
    /// libraries, or None when the cache does not hold them in the expected layout.
    let private preparedCopy (package: DirectoryInfo) : string option =
        let original = Path.Combine(package.FullName, "runtimes", "linux-x64", "native", "libLibTorchSharp.so")
        let libtorchVersions = Path.Combine(package.Parent.Parent.FullName, "libtorch-cpu-linux-x64")
        let natives =
            [ Path.Combine(libtorchVersions, LibTorchVersion)
              if Directory.Exists libtorchVersions then yield! Directory.GetDirectories libtorchVersions |> Array.sortDescending ]
            |> List.map (fun d -> Path.Combine(d, "runtimes", "linux-x64", "native"))
            |> List.tryFind (fun d -> File.Exists(Path.Combine(d, "libtorch_cpu.so")))
        match natives with
        | Some natives when File.Exists original ->
            let bytes = File.ReadAllBytes original
            match weakPatches bytes Glibcxx with
            | [] -> None // nothing to patch: TorchSharp's own load works
            | patches ->
                let dir = Path.Combine(Environment.GetFolderPath Environment.SpecialFolder.LocalApplicationData, "optimizers", "libtorchsharp-" + package.Name)
                Directory.CreateDirectory dir |> ignore
                for f in Directory.GetFiles natives do
                    let link = Path.Combine(dir, Path.GetFileName f)
                    if not (File.Exists link) then
                        try File.CreateSymbolicLink(link, f) |> ignore with :? IOException -> () // another process made it
                let copy = Path.Combine(dir, "libLibTorchSharp.so")
                if not (File.Exists copy) || FileInfo(copy).Length <> bytes.LongLength then
                    for at in patches do bytes[int at] <- bytes[int at] ||| 2uy // VER_FLG_WEAK
                    let tmp = $"{copy}.{Environment.ProcessId}.tmp"
                    File.WriteAllBytes(tmp, bytes)
                    File.Move(tmp, copy, true)
                Some copy
        | _ -> None

    let private sync = obj ()
    let mutable private prepared = false

    /// Make LibTorch loadable and set what it reads at load (`OpenMp.limitSpinning`): call before
    /// the first tensor. Idempotent and cheap after the first call; does nothing beyond the spin
    /// limit in a program built against the library (the build prepared its copy) or off Linux.
    /// The library's entry points (the registry, the learned optimizers, the facade) call it, so
    /// only a script that makes a tensor before touching the library needs to call it itself.
    let prepare () : unit =
        lock sync (fun () ->
            if not prepared then
                prepared <- true
                OpenMp.limitSpinning () |> ignore
                if RuntimeInformation.IsOSPlatform OSPlatform.Linux && RuntimeInformation.ProcessArchitecture = Architecture.X64 && not (besideProgram ()) then
                    try
                        match torchSharpPackage () |> Option.bind preparedCopy with
                        | Some copy -> NativeLibrary.Load copy |> ignore
                        | None -> ()
                    with e ->
                        // TorchSharp's own load follows and reports; say why the fix-up did not help
                        eprintfn "Optimizers: could not prepare a loadable copy of libLibTorchSharp.so (%s); TorchSharp will try its own" e.Message)
