/// Optimizer state files: round trips, and clear errors for files that are not one.
module Optimizers.Tests.SerializationTests

open System
open System.IO
open Expecto
open Optimizers
open Optimizers.Handcrafted
open Optimizers.Tests.Check

let tempFile () = Path.Combine(Path.GetTempPath(), $"optimizers-test-{Guid.NewGuid():N}.state")

/// Run steps from a given params/state, returning both.
let run (opt: Transformation) (p: Tree) (s: State) (steps: int) =
    let mutable p = p
    let mutable s = s
    for _ in 1..steps do
        let p', s' = Transform.step opt (grad2x p) s p
        p <- p'
        s <- s'
    p, s

let expectInvalidData (part: string) (f: unit -> unit) =
    let e = Expect.throwsC f id
    Expect.isTrue (e :? InvalidDataException) $"InvalidDataException, got {e.GetType().Name}: {e.Message}"
    Expect.stringContains e.Message part "the message says what is wrong"

[<Tests>]
let tests =
    testList "serialization" [
        for opt in [ Adam.create { Adam.defaults with Lr = Hyper.Fixed 0.05 }; Sgd.create { Sgd.nesterovDefaults with Lr = Hyper.Fixed 0.05 } ] do
            testCase $"{opt.Name}: save after 3 steps, load, 4 more steps = 7 steps uninterrupted (bit for bit)" <| fun () ->
                let start = Tree.ofSeq [ "w", vec [ 1.0; -2.0; 3.0 ]; "b", vec [ 0.5 ] ]
                let p7, s7 = run opt start (opt.Init start) 7
                let p3, s3 = run opt start (opt.Init start) 3
                let file = tempFile ()
                Serialization.saveState file opt s3
                let loaded = Serialization.loadState file opt
                File.Delete file
                Expect.equal loaded.Count s3.Count "step count"
                let p7', s7' = run opt p3 loaded 4
                Expect.equal (floats p7') (floats p7) "parameters"
                Expect.equal (State.tensors s7' |> List.map (fun t -> floats (Tree.single "t" t)))
                             (State.tensors s7 |> List.map (fun t -> floats (Tree.single "t" t))) "state tensors"

        testCase "float32 state keeps its dtype" <| fun () ->
            let opt = Adam.create Adam.defaults
            let p = Tree.single "x" (TorchSharp.torch.ones(3L))
            let _, s = opt.Update p (opt.Init p) p
            let file = tempFile ()
            Serialization.saveState file opt s
            let loaded = Serialization.loadState file opt
            File.Delete file
            Expect.equal (State.tensors loaded |> List.map (fun t -> t.dtype)) (State.tensors s |> List.map (fun t -> t.dtype)) "dtypes"

        testCase "another optimizer's state is refused, naming both" <| fun () ->
            let adam = Adam.create Adam.defaults
            let p = tree1 [ 1.0 ]
            let file = tempFile ()
            Serialization.saveState file adam (adam.Init p)
            expectInvalidData "holds the state of 'adam', not of 'sgd'" (fun () -> Serialization.loadState file (Sgd.create Sgd.defaults) |> ignore)
            File.Delete file

        testCase "a file that is not a state file is refused" <| fun () ->
            let file = tempFile ()
            File.WriteAllText(file, "step,loss\n0,1\n")
            expectInvalidData "not an optimizer state file" (fun () -> Serialization.loadState file (Adam.create Adam.defaults) |> ignore)
            File.Delete file

        testCase "a truncated file is refused" <| fun () ->
            let adam = Adam.create Adam.defaults
            let p = tree1 [ 1.0; 2.0; 3.0 ]
            let file = tempFile ()
            Serialization.saveState file adam (adam.Init p)
            let bytes = File.ReadAllBytes file
            File.WriteAllBytes(file, bytes[.. bytes.Length - 5])
            expectInvalidData "truncated" (fun () -> Serialization.loadState file adam |> ignore)
            File.WriteAllBytes(file, bytes[.. 20])
            expectInvalidData "truncated" (fun () -> Serialization.loadState file adam |> ignore)
            File.Delete file

        testCase "a missing file names the path" <| fun () ->
            let e = Expect.throwsC (fun () -> Serialization.loadState "/no/such/file.state" (Adam.create Adam.defaults) |> ignore) id
            Expect.isTrue (e :? FileNotFoundException) "FileNotFoundException"
            Expect.stringContains e.Message "/no/such/file.state" "names the path"
    ]
