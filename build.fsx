// The project's tasks: dotnet fsi build.fsx <target> [args...]
//   build   build the solution (Release)
//   test    build, then run every test suite; ends with the line "Tests: N passed, M failed"
//   demo    build, then run the main job: `optimizers demo` (extra args are passed on)
//   run     build, then run the CLI with the given arguments: dotnet fsi build.fsx run -- trace ...
//   results build, then `optimizers report --all`: the reports of the paper configs whose full runs
//           are in results/ into docs/results/, and the index docs/results/README.md
//   models  build, then the shipped learned optimizers against Adam at the paper's tuned rates on
//           MlpMnist with each activation (`optimizers evaluate`, 100 seeds; `models 5` for a
//           quick look): the table between the markers in models/README.md is replaced
//   pack    NuGet packages of the core and the facade into artifacts/
// Every target restores what it needs from NuGet; nothing has to be installed by hand.
open System
open System.Diagnostics
open System.Text.RegularExpressions

let root = __SOURCE_DIRECTORY__
let config = "Release"

/// Run a command in the repository root, echoing its output; returns (exit code, output).
let exec (file: string) (args: string list) =
    let psi = ProcessStartInfo(file, args, WorkingDirectory = root, RedirectStandardOutput = true, RedirectStandardError = true)
    psi.Environment["DOTNET_CLI_TELEMETRY_OPTOUT"] <- "1"
    psi.Environment["DOTNET_NOLOGO"] <- "1"
    use p = new Process(StartInfo = psi)
    let out = Text.StringBuilder()
    let echo (e: DataReceivedEventArgs) = if not (isNull e.Data) then (lock out (fun () -> out.AppendLine e.Data |> ignore); printfn "%s" e.Data)
    p.OutputDataReceived.Add echo
    p.ErrorDataReceived.Add echo
    p.Start() |> ignore
    p.BeginOutputReadLine()
    p.BeginErrorReadLine()
    p.WaitForExit()
    p.ExitCode, out.ToString()

let run (file: string) (args: string list) =
    let code, _ = exec file args
    if code <> 0 then
        eprintfn "build.fsx: '%s %s' failed with exit code %d" file (String.Join(" ", args)) code
        exit code

let build () = run "dotnet" [ "build"; "Optimizers.sln"; "-c"; config; "-nologo"; "-clp:NoSummary" ]

/// Expecto's summary: "N passed, I ignored, F failed, E errored".
let expecto (output: string) =
    let m = Regex.Match(output, @"(\d+) passed, (\d+) ignored, (\d+) failed, (\d+) errored")
    if m.Success then Some(int m.Groups[1].Value, int m.Groups[3].Value + int m.Groups[4].Value) else None

/// dotnet test's summary: "Failed: F, Passed: P, Skipped: S".
let vstest (output: string) =
    let ms = Regex.Matches(output, @"Failed:\s+(\d+), Passed:\s+(\d+)")
    if ms.Count = 0 then None
    else Some(ms |> Seq.sumBy (fun m -> int m.Groups[2].Value), ms |> Seq.sumBy (fun m -> int m.Groups[1].Value))

let test () =
    build ()
    let suites =
        [ "Core.Tests (Expecto)", exec "dotnet" [ "run"; "--project"; "tests/Core.Tests"; "-c"; config; "--no-build"; "--"; "--no-spinner"; "--colours"; "0" ], expecto
          "Interop.Tests (xunit)", exec "dotnet" [ "test"; "tests/Interop.Tests"; "-c"; config; "--no-build"; "--nologo" ], vstest ]
    let mutable passed, failed, ok = 0, 0, true
    for name, (code, output), parse in suites do
        match parse output with
        | Some(p, f) ->
            printfn "%s: %d passed, %d failed (exit code %d)" name p f code
            passed <- passed + p
            failed <- failed + f
            if code <> 0 then ok <- false
        | None ->
            printfn "%s: no test summary found (exit code %d)" name code
            ok <- false
    printfn "Tests: %d passed, %d failed" passed failed
    if not ok || failed > 0 then exit 1

let cli (args: string list) = run "dotnet" ([ "run"; "--project"; "src/Experiments"; "-c"; config; "--no-build"; "--" ] @ args)

match fsi.CommandLineArgs |> Array.toList |> List.tail with
| [ "build" ] -> build ()
| [ "test" ] -> test ()
| "demo" :: rest -> build (); cli ("demo" :: rest)
| "run" :: "--" :: rest
| "run" :: rest -> build (); cli rest
| [ "pack" ] ->
    // the two libraries (their buildTransitive targets, models and MNIST subset included; see README,
    // "Use it from your own project"), from the build just made
    build ()
    for project in [ "src/Core.FSharp"; "src/Interop.CSharp" ] do
        run "dotnet" [ "pack"; project; "-c"; config; "--no-build"; "-nologo"; "-o"; "artifacts" ]
| [ "results" ] -> build (); cli [ "report"; "--all" ]
| "models" :: rest ->
    build ()
    let seeds = match rest with [ n ] -> n | _ -> "100"
    // HyperAdam Table 1's hand-tuned Adam rates (shared/notes/REPRODUCTION.md)
    let activations = [ "sigmoid", "0.03125"; "relu", "0.0220971"; "elu", "0.0220971"; "tanh", "0.0110485" ]
    let section = Text.StringBuilder()
    let add (line: string) = section.AppendLine line |> ignore
    let argsOf (activation: string, lr: string) =
        [ "evaluate"; "--task"; "mlp-mnist"; "--task-opt"; $"activation={activation}"; "--optimizer"; $"adam:lr={lr}"
          "--optimizer"; "hyperadam"; "--optimizer"; "hyperadam:file=models/hyperadam-mix.bin"; "--optimizer"; "rnnprop"; "--optimizer"; "dmoptimizer"; "--steps"; "100"; "--seeds"; seeds; "--format"; "markdown" ]
    // One single-threaded process per activation, as many at a time as there are cores.
    let evaluate (args: string list) =
        let psi = ProcessStartInfo("dotnet", [ "run"; "--project"; "src/Experiments"; "-c"; config; "--no-build"; "--" ] @ args, WorkingDirectory = root, RedirectStandardOutput = true)
        psi.Environment["OMP_NUM_THREADS"] <- "1"
        use p = Process.Start psi
        let out = p.StandardOutput.ReadToEnd()
        p.WaitForExit()
        p.ExitCode, out
    printfn "evaluating on %d activations, %s seeds each ..." activations.Length seeds
    let results =
        activations |> List.map (fun a -> async { return a, evaluate (argsOf a) })
        |> fun jobs -> Async.Parallel(jobs, Environment.ProcessorCount) |> Async.RunSynchronously
    for (activation, lr), (code, out) in results do
        let args = argsOf (activation, lr)
        if code <> 0 then (eprintfn "build.fsx: evaluate failed for %s (exit code %d)" activation code; exit code)
        printfn "%s:\n%s" activation out
        add $"**{activation}** (`optimizers {String.Join(' ', args)}`):"
        add ""
        for line in out.Split('\n') |> Array.filter (fun l -> l.StartsWith "|") do add (line.TrimEnd())
        add ""
    let file = IO.Path.Combine(root, "models", "README.md")
    let text = IO.File.ReadAllText file
    let first, last = "<!-- models table: begin (dotnet fsi build.fsx models) -->", "<!-- models table: end -->"
    let i, j = text.IndexOf first, text.IndexOf last
    if i < 0 || j < i then (eprintfn "build.fsx: models/README.md has no '%s' ... '%s' markers" first last; exit 1)
    IO.File.WriteAllText(file, text.Substring(0, i + first.Length) + "\n" + section.ToString() + text.Substring j)
    printfn "models/README.md: table rewritten (%s seeds)" seeds
| _ ->
    eprintfn "usage: dotnet fsi build.fsx build | test | demo | run -- ARGS | results | models [SEEDS] | pack"
    exit 2
