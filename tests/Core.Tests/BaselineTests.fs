/// The HyperAdam paper's two learned baselines, DMoptimizer and RNNprop: the log-and-sign
/// preprocessing against hand-computed values, theta and state shapes, RNNprop's invariance to
/// the gradient's scale (and DMoptimizer's lack of it), meta-training that lowers the meta-loss,
/// and trained-file round trips.
module Optimizers.Tests.BaselineTests

open System
open System.IO
open Expecto
open TorchSharp
open Optimizers
open Optimizers.Learned
open Optimizers.Meta
open Optimizers.Tasks
open Optimizers.Tests.Check
open Optimizers.Tests.LearnedCheck

let shape (t: Tensor) = t.shape |> List.ofArray

/// Meta-train 40 episodes; the mean meta-loss of the last 8 episodes must be below `ratio` times
/// that of the first 8.
let metaLossFalls (k: LearnedKind) (options: (string * string) list) (ratio: float) =
    let r = MetaTrain.train (metaSettings k options) ignore
    let first = r.MetaLosses |> List.take 8 |> List.average
    let last = r.MetaLosses |> List.skip 32 |> List.average
    Expect.isLessThan last (ratio * first) $"{k.Kind}: mean meta-loss of the first 8 episodes {first}, of the last 8 {last}"

[<Tests>]
let tests =
    testList "baselines" [
        testCase "log-and-sign matches hand-computed values on both branches" <| fun () ->
            let check (k: float) (g: float list) (expected: (float * float) list) =
                let out = DmOptimizer.logAndSign k (vec g)
                Expect.equal (shape out) [ int64 g.Length; 2L ] "one row per coordinate, (log, sign) columns"
                let flat = floats (Tree.single "o" out)
                closeRel 1e-12 flat (expected |> List.collect (fun (a, b) -> [ a; b ]) |> Array.ofList) $"k = {k}"
            // k = 5: |g| >= e^-5 = 0.006738 gives (ln|g| / 5, sign g); below it (-1, e^5 g).
            check 5.0 [ 0.5; -2.0; 0.01; 1e-4; -1e-3; 0.0 ]
                [ -0.13862943611198906, 1.0
                  0.13862943611198906, -1.0
                  -0.92103403719761836, 1.0
                  -1.0, 0.014841315910257660
                  -1.0, -0.14841315910257660
                  -1.0, 0.0 ]
            // k = 1: the threshold is e^-1 = 0.3679.
            check 1.0 [ 0.2; -0.5; 3.0 ]
                [ -1.0, 0.54365636569180905
                  -0.69314718055994531, -1.0
                  1.0986122886681098, 1.0 ]

        testCase "dmoptimizer: theta, state and update shapes; theta checked" <| fun () ->
            let theta = theta64 DmOptimizer.kind [] 0
            Expect.equal (theta.Names |> List.ofArray) [ "lstm1.kernel"; "lstm1.bias"; "lstm2.kernel"; "lstm2.bias"; "out.w"; "out.b" ] "names"
            Expect.equal (theta.Values |> Array.map shape |> List.ofArray)
                [ [ 22L; 80L ]; [ 80L ]; [ 40L; 80L ]; [ 80L ]; [ 20L; 1L ]; [ 1L ] ] "[2 inputs + 20, 4 x 20], ..., [20, 1]"
            Expect.equal (shape (theta64 DmOptimizer.kind [ "preprocess", "none" ] 0).["lstm1.kernel"]) [ 21L; 80L ] "one input without preprocessing"
            // The reference code's initialisation: truncated normal, std 1 / sqrt(fan-in), biases too.
            for name, fanIn in [ "lstm1.kernel", 22; "lstm1.bias", 22; "lstm2.kernel", 40; "out.w", 20 ] do
                let x = floats (Tree.single name theta.[name])
                Expect.isLessThanOrEqual (x |> Array.map abs |> Array.max) (2.0 / sqrt (float fanIn) + 1e-7) $"{name} within two std"
                Expect.isGreaterThan (x |> Array.map abs |> Array.max) 0.0 $"{name} is not zero"
            let p = Tree.ofSeq [ "w", torch.ones([| 3L; 2L |], dtype = f64); "b", torch.ones([| 4L |], dtype = f64) ]
            let opt = create DmOptimizer.kind [] theta
            let s = opt.Init p
            for n in [ "h1"; "c1"; "h2"; "c2" ] do
                Expect.equal (shape (s.Slot "cells").[n]) [ 10L; 20L ] $"{n}: one row per coordinate, 20 columns"
            let u, s' = opt.Update p s p
            Expect.equal (u.Values |> Array.map shape) [| [ 3L; 2L ]; [ 4L ] |] "updates shaped like the parameters"
            Expect.equal s'.Count 1 "one step counted"
            let e = Expect.throwsC (fun () -> create DmOptimizer.kind [ "preprocess", "none" ] theta |> ignore) id
            Expect.stringContains e.Message "expected [21; 80]" "a theta of another layout is refused"
            let e = Expect.throwsC (fun () -> create DmOptimizer.kind [ "preprocess", "log" ] theta |> ignore) id
            Expect.stringContains e.Message "log-sign, none" "an unknown preprocessing lists the valid ones"

        testCase "rnnprop: theta, state and update shapes; theta checked" <| fun () ->
            let theta = theta64 RnnProp.kind [] 0
            Expect.equal (theta.Names |> List.ofArray) [ "in.w"; "in.b"; "lstm1.kernel"; "lstm1.bias"; "lstm2.kernel"; "lstm2.bias"; "out.w"; "out.b" ] "names"
            Expect.equal (theta.Values |> Array.map shape |> List.ofArray)
                [ [ 2L; 20L ]; [ 20L ]; [ 40L; 80L ]; [ 80L ]; [ 40L; 80L ]; [ 80L ]; [ 20L; 1L ]; [ 1L ] ] "2 -> 20 (ELU) -> LSTM 20 -> LSTM 20 -> 1"
            // The reference code's initialisation: FC weights truncated normal (std 0.1), zero biases.
            for name in [ "in.w"; "out.w" ] do
                Expect.isLessThanOrEqual (floats (Tree.single name theta.[name]) |> Array.map abs |> Array.max) (0.2 + 1e-7) $"{name} within two std"
            for name in [ "in.b"; "lstm1.bias"; "lstm2.bias"; "out.b" ] do
                Expect.all (floats (Tree.single name theta.[name])) (fun x -> x = 0.0) $"{name} is zero"
            let p = Tree.ofSeq [ "w", torch.ones([| 3L; 2L |], dtype = f64); "b", torch.ones([| 4L |], dtype = f64) ]
            let opt = create RnnProp.kind [] theta
            let s = opt.Init p
            Expect.equal (shape (s.Slot "cells").["m"]) [ 10L; 1L ] "first moment: one row per coordinate"
            Expect.equal (shape (s.Slot "cells").["h2"]) [ 10L; 20L ] "LSTM state: 20 columns"
            let u, _ = opt.Update p s p
            Expect.equal (u.Values |> Array.map shape) [| [ 3L; 2L ]; [ 4L ] |] "updates shaped like the parameters"
            Expect.all (floats u) (fun x -> abs x < 0.1) "|step| < lr = 0.1"
            let e = Expect.throwsC (fun () -> create RnnProp.kind [ "hidden", "8" ] theta |> ignore) id
            Expect.stringContains e.Message "expected [2; 8]" "a theta of other sizes is refused"
            let e = Expect.throwsC (fun () -> create RnnProp.kind [ "beta1", "1" ] theta |> ignore) id
            Expect.stringContains e.Message "beta1" "a decay rate of 1 is refused"

        testCase "rnnprop's Adam-normalised inputs are the reference code's" <| fun () ->
            // Two steps by hand with beta1 = beta2 = 0.95, eps = 1e-8, g = 2 then -1.
            let b = 0.95
            let g1, g2 = 2.0, -1.0
            let m1, v1 = (1.0 - b) * g1, (1.0 - b) * g1 * g1
            let m2, v2 = b * m1 + (1.0 - b) * g2, b * v1 + (1.0 - b) * g2 * g2
            let s2 = sqrt (v2 / (1.0 - b * b)) + 1e-8
            let col (x: float) = vec [ x ] |> fun t -> t.unsqueeze(1L)
            let x1, m, v = RnnProp.inputs b b 1e-8 1 (col g1) (col 0.0) (col 0.0)
            closeRel 1e-12 (floats (Tree.single "x" x1)) [| g1 / (2.0 + 1e-8); g1 / (2.0 + 1e-8) |] "step 1: g / |g| twice"
            let x2, _, _ = RnnProp.inputs b b 1e-8 2 (col g2) m v
            closeRel 1e-12 (floats (Tree.single "x" x2)) [| g2 / s2; m2 / (1.0 - b * b) / s2 |] "step 2: [g / s, m-hat / s]"

        testPropertyWithConfig problemConfig "rnnprop's update is invariant to the gradient's scale (up to eps)" <| fun (pr: Problem) (Scale c) ->
            let options = [ "hidden", "7"; "eps", "1e-16" ]
            let opt = create RnnProp.kind options (theta64 RnnProp.kind options 3)
            List.iter2 (fun a b -> closeRel 1e-7 a b $"scaled by {c}") (updates opt pr c) (updates opt pr 1.0)

        testCase "dmoptimizer's update is not invariant to the gradient's scale" <| fun () ->
            let pr = { Grads = [| [| 0.5; -0.2; 0.01; 3.0 |]; [| 0.4; -0.1; 0.02; 2.0 |] |]; Start = [| 1.0; 1.0; 1.0; 1.0 |] }
            let opt = create DmOptimizer.kind [] (theta64 DmOptimizer.kind [] 0)
            let unit = updates opt pr 1.0 |> Array.concat
            let scaled = updates opt pr 1000.0 |> Array.concat
            let diff = Array.map2 (fun a b -> abs (a - b)) scaled unit |> Array.max
            Expect.isGreaterThan diff (0.05 * (unit |> Array.map abs |> Array.max)) $"updates for g and 1000 g differ (max difference {diff})"
            // RNNprop on the same gradients: the same updates.
            let rp = create RnnProp.kind [] (theta64 RnnProp.kind [] 0)
            closeRel 1e-6 (updates rp pr 1000.0 |> Array.concat) (updates rp pr 1.0 |> Array.concat) "rnnprop for comparison"

        testCase "trained files round-trip and build the same optimizer" <| fun () ->
            let dir = tempDir "baselines"
            let p = Tree.ofSeq [ "w", torch.tensor([| 0.3; -1.2; 2.0 |], dtype = f64) ]
            let g = Tree.ofSeq [ "w", torch.tensor([| 0.5; -0.01; 4.0 |], dtype = f64) ]
            for k, options in [ DmOptimizer.kind, [ "hidden", "6"; "k", "10" ]; RnnProp.kind, [ "hidden", "5"; "lr", "0.05" ] ] do
                let t : TrainedOptimizer = { Kind = k.Kind; Options = options; Theta = theta64 k options 7; Info = Map.ofList [ "command", "test" ] }
                let file = Path.Combine(dir, k.Kind + ".bin")
                LearnedOptimizer.save file t
                let back = LearnedOptimizer.load file
                Expect.equal back.Kind k.Kind "kind"
                Expect.equal back.Options options "options"
                Expect.equal back.Theta.Names t.Theta.Names "names"
                Expect.equal (floats back.Theta) (floats t.Theta) "theta"
                let run (opt: Transformation) =
                    let u1, s1 = opt.Update g (opt.Init p) p
                    let u2, _ = opt.Update g s1 p
                    Array.append (floats u1) (floats u2)
                Expect.equal (run (LearnedOptimizer.create k back)) (run (create k options t.Theta)) $"{k.Kind}: the loaded optimizer steps as the saved one"
                Expect.equal (Registry.findLearnedKind k.Kind).Kind k.Kind "registered"
            let e = Expect.throwsC (fun () -> LearnedOptimizer.create RnnProp.kind (LearnedOptimizer.load (Path.Combine(dir, "dmoptimizer.bin"))) |> ignore) id
            Expect.stringContains e.Message "a trained 'dmoptimizer' cannot be used as a 'rnnprop'" "kinds are not mixed up"
            Directory.Delete(dir, true)

        testSequenced <| testList "meta-training" [
            testCase "dmoptimizer: the meta-loss falls" <| fun () -> metaLossFalls DmOptimizer.kind [] 0.7
            testCase "dmoptimizer without preprocessing: the meta-loss falls" <| fun () -> metaLossFalls DmOptimizer.kind [ "preprocess", "none" ] 0.7
            // Each step moves a coordinate by less than lr, so with the default lr = 0.1 twenty steps
            // move it by less than 2 on a task that starts in U(-10, 10): lr = 1 lets it show.
            testCase "rnnprop: the meta-loss falls" <| fun () -> metaLossFalls RnnProp.kind [ "lr", "1" ] 0.7
        ]
    ]
