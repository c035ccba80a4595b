/// The thesis's optimizers (seed 004, issue 7): MNG against a hand-computed trajectory and a
/// plain-float transcription of Algorithm 1 (ReferenceFormulas.fs); k Timesteps, k Momentums and
/// Multiscale Adam: shapes, special cases, LA_b's weights, trained-file round trips, the CLI, and
/// the meta-loss falling.
module Optimizers.Tests.ThesisTests

open System
open System.IO
open Expecto
open FsCheck
open FsCheck.FSharp
open TorchSharp
open Optimizers
open Optimizers.Handcrafted
open Optimizers.Learned
open Optimizers.Meta
open Optimizers.Tasks
open Optimizers.Tests.Check
open Optimizers.Tests.LearnedCheck
open Optimizers.Tests.ReferenceFormulas

let mng k eta signOnly = Mng.create { K = k; EtaMin = Hyper.Fixed eta; SignOnly = signOnly }

/// A gradient function on trees from one on float arrays.
let onTree (grad: float[] -> float[]) (p: Tree) = tree1 (List.ofArray (grad (floats p)))

/// Every learned kind of the thesis with small options, for contract tests.
let kinds : (string * LearnedKind * (string * string) list) list =
    [ "ktimesteps", NormalizedInputs.kTimestepsKind, [ "k", "4"; "hidden", "8" ]
      "ktimesteps tanh", NormalizedInputs.kTimestepsKind, [ "k", "3"; "hidden", "8"; "head", "tanh" ]
      "kmomentums", NormalizedInputs.kMomentumsKind, [ "k", "3"; "hidden", "8" ]
      "kmomentums x inputs, adam normalisation", NormalizedInputs.kMomentumsKind, [ "k", "3"; "hidden", "8"; "x_inputs", "true"; "normalization", "adam" ]
      "msadam-la", MultiscaleAdam.laKind, []
      "msadam-mlp", MultiscaleAdam.mlpKind, [ "k", "5"; "hidden", "8" ]
      "msadam-rnn 2 layers", MultiscaleAdam.rnnKind, [ "k", "11"; "hidden", "8"; "layers", "2" ] ]

/// Meta-training settings for a kind on a small task (seed 3).
let thesisSettings (kind: LearnedKind) (options: (string * string) list) (task: Task) (horizon: int) (window: int) (episodes: int) (metaLr: float) : MetaSettings =
    { metaSettings kind options with
        Task = (fun _ -> task)
        Horizon = horizon
        Window = window
        Episodes = episodes
        MetaLr = metaLr
        MetaLrFinal = metaLr
        Seed = 3 }

/// Raw LA weights, drawn by FsCheck.
type LaWeights = LaWeights of float[]

type ThesisArbs =
    static member LaWeights() : Arbitrary<LaWeights> =
        gen {
            let! k = Gen.choose (1, 11)
            let! w = Gen.arrayOfLength k (Gen.choose (-10000, 10000) |> Gen.map (fun i -> float i / 1000.0))
            return LaWeights w
        }
        |> Arb.fromGen

let laConfig = { problemConfig with arbitrary = [ typeof<ThesisArbs> ] }

[<Tests>]
let tests =
    testList "thesis" [
        testCase "mng follows the hand-computed trajectory (k = 3, eta_min = 1/2, f = x^2 from 2)" <| fun () ->
            // Step 0: H_x = [2 2 2], H_g = [4 4 4]: dx = 1, x_ref = 2, x_diff = 0  -> x1 = 2 - 1/2 = 3/2.
            // Step 1: H_x = [2 2 3/2], H_g = [4 4 3] / 4: dx = 11/12, x_ref = 7/4, x_diff = 1/2 -> x2 = 7/4 - 11/12 = 5/6.
            // Step 2: H_x = [2 3/2 5/6], H_g = [4 3 5/3] / 4: dx = 13/18, x_ref = 17/12, x_diff = 7/6 -> x3 = 17/12 - 13/18 * 5/3 = 23/108.
            // Step 3: H_x = [3/2 5/6 23/108], H_g = [3 5/3 23/54] / 3: dx = (1 + 5/9 + 23/162) / 3 = 275/486,
            //         x_ref = (3/2 + 23/108) / 2 = 185/216, x_diff = 3/2 - 23/108 = 139/108 -> x4 = 185/216 - 275/486 * (139/108 + 1/2).
            let expected = [ 3.0 / 2.0; 5.0 / 6.0; 23.0 / 108.0; 185.0 / 216.0 - 275.0 / 486.0 * (139.0 / 108.0 + 0.5) ]
            let actual = trajectory (mng 3 0.5 false) grad2x (tree1 [ 2.0 ]) 4 |> List.map (fun x -> x[0])
            closeRel 1e-14 (Array.ofList actual) (Array.ofList expected) "x1..x4"

        testCase "mng's sign-only variant follows the hand-computed trajectory" <| fun () ->
            // x0 = 2, k = 2, eta_min = 1/2: x1 = 2 - 1/2 = 3/2; H_x = [2 3/2], signs [1 1]: x2 = 7/4 - (1/2 + 1/2) = 3/4;
            // H_x = [3/2 3/4]: x3 = 9/8 - (3/4 + 1/2) = -1/8; H_x = [3/4 -1/8], signs [1 -1]: dx = 0, x4 = 5/16.
            let actual = trajectory (mng 2 0.5 true) grad2x (tree1 [ 2.0 ]) 4 |> List.map (fun x -> x[0])
            closeRel 1e-15 (Array.ofList actual) [| 1.5; 0.75; -0.125; 0.3125 |] "x1..x4"

        testCase "mng equals a plain-float transcription of Algorithm 1 on Rosenbrock and sum of squares" <| fun () ->
            for k, eta, signOnly in [ 5, 1e-3, false; 4, 0.01, true; 1, 0.05, false; 10, 1e-2, false ] do
                let ours = trajectory (mng k eta signOnly) (onTree rosenGrad) (tree1 [ -1.5; 2.0 ]) 60
                let theirs = Ref.mng k eta signOnly rosenGrad [| -1.5; 2.0 |] 60
                List.iteri2 (fun i a b -> closeRel 1e-9 a b $"rosenbrock k = {k}, eta_min = {eta}, sign_only = {signOnly}, x{i + 1}") ours theirs
            // A zero gradient coordinate (row of zeros) stays put apart from eta_min * 0.
            let start = [ 3.0; -7.5; 0.0; 0.25 ]
            let ours = trajectory (mng 5 0.1 false) grad2x (tree1 start) 40
            let theirs = Ref.mng 5 0.1 false (Array.map (fun x -> 2.0 * x)) (Array.ofList start) 40
            List.iteri2 (fun i a b -> closeRel 1e-10 a b $"sum of squares x{i + 1}") ours theirs

        testCase "mng keeps its histories in the state, newest column last" <| fun () ->
            let opt = mng 3 0.5 false
            let p = Tree.ofSeq [ "w", torch.tensor([| 1.0; 2.0; 3.0; 4.0 |], dtype = f64).reshape(2L, 2L); "b", torch.tensor([| 5.0 |], dtype = f64) ]
            let s0 = opt.Init p
            Expect.equal ((s0.Slot "history").["x"].shape) [| 5L; 3L |] "one row per coordinate, k columns"
            let g = Tree.map (fun x -> -x) p
            let u, s1 = opt.Update g s0 p
            Expect.equal (u.Values |> Array.map (fun x -> x.shape)) [| [| 2L; 2L |]; [| 1L |] |] "updates shaped like the parameters"
            Expect.equal (floats u) [| 0.5; 0.5; 0.5; 0.5; 0.5 |] "step 0 moves eta_min against the gradient's sign"
            Expect.equal (floats (Tree.single "x" (s1.Slot "history").["x"])) [| 1.; 1.; 1.; 2.; 2.; 2.; 3.; 3.; 3.; 4.; 4.; 4.; 5.; 5.; 5. |] "populated with x_0"
            let p1 = Transform.applyUpdates p u
            let _, s2 = opt.Update (Tree.map (fun x -> -x) p1) s1 p1
            Expect.equal ((floats (Tree.single "x" (s2.Slot "history").["x"])).[0..2]) [| 1.; 1.; 1.5 |] "x_1 pushed as the newest column"

        testCase "mng is registered: trace --optimizer mng, with its options checked" <| fun () ->
            let code, out, err = cli [ "trace"; "--task"; "rosenbrock"; "--start"; "-1.5,2"; "--optimizer"; "mng"; "--opt"; "k=3"; "--opt"; "eta_min=0.5"; "--steps"; "3"; "--dtype"; "float64" ]
            Expect.equal code 0 $"exit code ({err})"
            let rows = out.Split('\n', StringSplitOptions.RemoveEmptyEntries)
            Expect.equal rows.Length 5 "header, start and 3 steps"
            // g_0 = (-2 * 2.5 - 400 * -1.5 * (2 - 2.25), 200 * (2 - 2.25)) = (-155, -50): both move +eta_min.
            Expect.equal (rows[2].Split(',') |> Array.skip 2) [| "-1"; "2.5" |] "x1 = x0 + 0.5"
            let expected = trajectory (mng 3 0.5 false) (onTree rosenGrad) (tree1 [ -1.5; 2.0 ]) 3 |> List.last
            closeRel 1e-12 (rows[4].Split(',') |> Array.skip 2 |> Array.map float) expected "x3 as the library's"
            let code, _, err = cli [ "trace"; "--task"; "rosenbrock"; "--optimizer"; "mng"; "--opt"; "k=0" ]
            Expect.equal code 2 "k = 0"
            Expect.stringContains err "mng: k = 0" "names it"
            let code, _, err = cli [ "trace"; "--task"; "rosenbrock"; "--optimizer"; "mng"; "--opt"; "eta_min=-1" ]
            Expect.equal code 2 "negative eta_min"
            Expect.stringContains err "eta_min" "names it"

        testCase "k timesteps with a constant head shoots like mng with dx = E[sign] E[magnitude]" <| fun () ->
            // Second layer 0, sign logits (ln 3, 0): E[sign] = 3/4 - 1/4 = 1/2; magnitude logits 0: E[magnitude] = 1/2.
            let options = [ "k", "3"; "hidden", "4"; "eta_min", "0.5" ]
            let theta =
                theta64 NormalizedInputs.kTimestepsKind options 0 |> Tree.mapi (fun name x ->
                    match name with
                    | "mlp.w2" -> torch.zeros_like x
                    | "mlp.b2" -> torch.tensor(Array.append [| log 3.0; 0.0 |] (Array.zeroCreate 10), dtype = f64)
                    | _ -> x)
            let actual = trajectory (create NormalizedInputs.kTimestepsKind options theta) grad2x (tree1 [ 2.0; -1.0 ]) 3
            // x1 = x0 - 1/4 * 1/2; then x_ref - 1/4 (x_diff + 1/2) with x_ref, x_diff of the last 3 iterates.
            let x1 = [| 2.0 - 0.125; -1.0 - 0.125 |]
            let x2 = Array.map2 (fun a b -> (a + b) / 2.0 - 0.25 * (abs (a - b) + 0.5)) [| 2.0; -1.0 |] x1
            let x3 = Array.init 2 (fun i -> let h = [ [| 2.0; -1.0 |][i]; x1[i]; x2[i] ] in (List.max h + List.min h) / 2.0 - 0.25 * (List.max h - List.min h + 0.5))
            List.iter2 (fun a b -> closeRel 1e-12 a b "iterates") actual [ x1; x2; x3 ]

        testCase "k momentums keeps k moving averages populated at step 0 and shoots from x_t" <| fun () ->
            let options = [ "k", "2"; "hidden", "4"; "eta_min", "0.5"; "timescales", "0.5,0.9"; "head", "tanh" ]
            let theta =
                theta64 NormalizedInputs.kMomentumsKind options 0 |> Tree.mapi (fun name x ->
                    match name with
                    | "mlp.w2" -> torch.zeros_like x
                    | "mlp.b2" -> torch.tensor([| 0.5 |], dtype = f64)
                    | _ -> x)
            let opt = create NormalizedInputs.kMomentumsKind options theta
            let dx = tanh 0.5
            let p0 = tree1 [ 2.0 ]
            let s0 = opt.Init p0
            let u0, s1 = opt.Update (grad2x p0) s0 p0
            closeRel 1e-12 (floats u0) [| -dx * 0.5 |] "step 0: x_diff = 0"
            let x1 = 2.0 - dx * 0.5
            let p1 = tree1 [ x1 ]
            let u1, s2 = opt.Update (grad2x p1) s1 p1
            let hx = [| 0.5 * 2.0 + 0.5 * x1; 0.9 * 2.0 + 0.1 * x1 |]
            closeRel 1e-12 (floats (Tree.single "h" (s2.Slot "history").["x"])) hx "H_x = m H_x + (1 - m) x_1"
            closeRel 1e-12 (floats u1) [| -dx * (abs (hx[0] - hx[1]) + 0.5) |] "x_2 = x_1 - dx (x_diff + eta_min)"

        testCase "k momentums' timescales: the five configurations of section 3.5.2, and bad ones refused" <| fun () ->
            let ts = NormalizedInputs.kMomentumsConfigurations |> List.map (fun (_, o) -> NormalizedInputs.timescales (typed NormalizedInputs.kMomentumsRegistration o))
            Expect.equal (ts |> List.map Array.length) [ 6; 6; 6; 7; 10 ] "k"
            closeRel 1e-12 ts[2] [| 0.2; 0.358; 0.516; 0.674; 0.832; 0.99 |] "k = 6, 0.2-0.99"
            closeRel 1e-12 ts[3] (Array.init 7 (fun i -> 0.1 + 0.89 * float i / 6.0)) "k = 7, 0.1-0.99"
            Expect.throwsC (fun () -> NormalizedInputs.timescales (typed NormalizedInputs.kMomentumsRegistration [ "k", "2"; "timescales", "0.5,1" ]) |> ignore) (fun e ->
                Expect.stringContains e.Message "timescale 1" "names the bad timescale")

        testPropertyWithConfig problemConfig "msadam-la (LA_c) with a one-hot weight is that Adam, step for step" <| fun (pr: Problem) ->
            let options = [ "variant", "c"; "lr", "0.05" ]
            for i, (_, b1, b2) in List.indexed (MultiscaleAdam.tableTimescales 6) do
                let theta = Tree.single "la.w" (torch.tensor(Array.init 6 (fun j -> if j = i then 1.0 else 0.0), dtype = f64))
                let ours = create MultiscaleAdam.laKind options theta
                let adam = Adam.create { Adam.defaults with Lr = Hyper.Fixed 0.05; Beta1 = Hyper.Fixed b1; Beta2 = Hyper.Fixed b2 }
                List.iter2 (fun a b -> closeRel 1e-12 a b $"Adam({b1}, {b2})") (updates ours pr 1.0) (updates adam pr 1.0)

        testPropertyWithConfig laConfig "LA_b's weights are non-negative and sum to one; LA_a's sum to one" <| fun (LaWeights w) ->
            let betas = String.Join(",", Array.create w.Length "0.9")
            let options variant = [ "variant", variant; "beta1s", betas; "beta2s", String.Join(",", Array.create w.Length "0.99") ]
            let theta = Tree.single "la.w" (torch.tensor(w, dtype = f64))
            if w |> Array.exists (fun x -> x <> 0.0) then
                let b = MultiscaleAdam.weights (typed MultiscaleAdam.laRegistration (options "b")) theta |> List.map (fun r -> r.Weight)
                Expect.all b (fun x -> x >= 0.0) "LA_b: non-negative"
                closeTo Tol.veryHigh (List.sum b) 1.0 "LA_b: sum"
            if abs (Array.sum w) > 1e-3 then
                let a = MultiscaleAdam.weights (typed MultiscaleAdam.laRegistration (options "a")) theta |> List.map (fun r -> r.Weight)
                closeTo Tol.medium (List.sum a) 1.0 "LA_a: sum"

        testCase "multiscale adam's timescales are Table 4.1's" <| fun () ->
            let names k = MultiscaleAdam.tableTimescales k |> List.map (fun (n, _, _) -> n)
            Expect.equal (names 6) [ "Adam.99"; "Adam.9"; "Adam.8"; "Adam.7"; "Adam.6"; "Adam.5" ] "k = 6"
            Expect.equal (names 5) [ "Adam.99"; "Adam.9"; "Adam.8"; "Adam.7"; "Adam.6" ] "k = 5 drops Adam.5"
            Expect.equal (names 11) [ "Adam.99"; "Adam.95"; "Adam.9"; "Adam.85"; "Adam.8"; "Adam.75"; "Adam.7"; "Adam.65"; "Adam.6"; "Adam.55"; "Adam.5" ] "k = 11"
            Expect.throwsC (fun () -> MultiscaleAdam.tableTimescales 7 |> ignore) (fun e -> Expect.stringContains e.Message "beta1s" "says what to do")

        testCase "every thesis kind: theta and state shapes, updates shaped like the parameters, a wrong theta refused" <| fun () ->
            let p = Tree.ofSeq [ "w", torch.ones([| 3L; 2L |], dtype = f64); "b", torch.ones([| 4L |], dtype = f64) ]
            for label, kind, options in kinds do
                let theta = theta64 kind options 0
                let opt = create kind options theta
                let mutable s = opt.Init p
                let mutable q = p
                for step in 0 .. 2 do
                    let u, s' = opt.Update (Tree.map (fun x -> x * 0.5 - 0.1 * float step) q) s q
                    Expect.equal (u.Values |> Array.map (fun x -> x.shape)) [| [| 3L; 2L |]; [| 4L |] |] $"{label}: updates shaped like the parameters"
                    Expect.isTrue (floats u |> Array.forall Double.IsFinite) $"{label}: finite updates"
                    for t in State.tensors s' do Expect.equal t.shape.[0] 10L $"{label}: one state row per coordinate"
                    s <- s'
                    q <- Transform.applyUpdates q u
                let other = theta |> Tree.map (fun x -> torch.zeros([| x.shape[0] + 1L |], dtype = f64))
                Expect.throwsC (fun () -> create kind options other |> ignore) (fun e -> Expect.stringContains e.Message "meta-parameter" $"{label}: a theta of other shapes is refused")
            let ms = MultiscaleAdam.rnnKind
            let theta = theta64 ms [ "layers", "2"; "hidden", "7" ] 0
            Expect.equal (theta.Names) [| "rnn1.w"; "rnn1.b"; "rnn2.w"; "rnn2.b"; "out.w"; "out.b" |] "two recurrent layers and the softmax output"
            Expect.equal theta["rnn1.w"].shape [| 13L; 7L |] "[steps (6), h] -> h"
            Expect.equal (theta64 NormalizedInputs.kTimestepsKind [] 0).["mlp.w2"].shape [| 50L; 12L |] "50 ReLU units, 2 sign + 10 magnitude logits"

        testCase "every thesis kind: a trained file round-trips and gives the same updates" <| fun () ->
            let dir = tempDir "thesis"
            let p = tree1 [ 1.0; -2.0; 0.5 ]
            for label, kind, options in kinds do
                let file = Path.Combine(dir, kind.Kind + ".bin")
                let t : TrainedOptimizer = { Kind = kind.Kind; Options = options; Theta = kind.InitTheta (values kind options) 7; Info = Map.ofList [ "test", label ] }
                LearnedOptimizer.save file t
                let back = LearnedOptimizer.load file
                Expect.equal back.Options options $"{label}: options"
                let run (opt: Transformation) = trajectory opt grad2x p 4
                Expect.equal (run (LearnedOptimizer.create kind back)) (run (LearnedOptimizer.create kind t)) $"{label}: same trajectory"
            Directory.Delete(dir, true)

        testCase "meta-train, evaluate and inspect thesis kinds from the command line" <| fun () ->
            let dir = tempDir "thesis"
            let la = Path.Combine(dir, "la.bin")
            let code, out, err =
                cli [ "meta-train"; "--kind"; "msadam-la"; "--opt"; "variant=b"; "--task"; "rosenbrock"; "--horizon"; "6"; "--window"; "3"
                      "--episodes"; "2"; "--validate-every"; "1"; "--validation-seeds"; "1"; "--out"; la; "--quiet" ]
            Expect.equal code 0 $"meta-train exit code ({err})"
            Expect.stringContains out "saved" "reports the file"
            let kt = Path.Combine(dir, "kt.bin")
            let code, _, err =
                cli [ "meta-train"; "--kind"; "ktimesteps"; "--opt"; "hidden=6"; "--task"; "sum-of-squares"; "--task-opt"; "dim=4"; "--horizon"; "4"; "--window"; "2"
                      "--episodes"; "1"; "--out"; kt; "--quiet" ]
            Expect.equal code 0 $"meta-train ktimesteps exit code ({err})"
            let code, out, err =
                cli [ "evaluate"; "--task"; "rosenbrock"; "--optimizer"; $"msadam-la:file={la}"; "--optimizer"; $"ktimesteps:file={kt},eta_min=0.001"
                      "--optimizer"; "mng:k=5,eta_min=0.001"; "--optimizer"; "msadam-rnn:init_seed=1,layers=2"; "--steps"; "5"; "--seeds"; "2"; "--format"; "csv" ]
            Expect.equal code 0 $"evaluate exit code ({err})"
            Expect.equal (out.Split('\n', StringSplitOptions.RemoveEmptyEntries).Length) 5 "header and four optimizers"
            let code, out, err = cli [ "inspect"; "--file"; la; "--format"; "csv" ]
            Expect.equal code 0 $"inspect exit code ({err})"
            let rows = out.Split('\n', StringSplitOptions.RemoveEmptyEntries) |> Array.map (fun l -> l.TrimEnd('\r').Split(','))
            Expect.equal rows[0] [| "adam"; "beta1"; "beta2"; "LA_b" |] "Table 4.2's layout"
            Expect.equal (rows[1..] |> Array.map (fun r -> r[0])) [| "Adam.99"; "Adam.9"; "Adam.8"; "Adam.7"; "Adam.6"; "Adam.5" |] "one row per timescale"
            closeTo { Abs = 1e-4; Rel = 1e-4 } (rows[1..] |> Array.sumBy (fun r -> float r[3])) 1.0 "LA_b's weights sum to one"
            let code, out, err = cli [ "inspect"; "--file"; kt ]
            Expect.equal code 0 $"inspect ktimesteps exit code ({err})"
            Expect.equal (out.Split('\n', StringSplitOptions.RemoveEmptyEntries).Length) 13 "Table 3.1: header and twelve histories"
            Directory.Delete(dir, true)

        testSequenced <| testList "meta-training" [
            // The meta-objective (mean loss over the horizon) on held-out optimizees, before and after
            // meta-training: the same starts, so the comparison is not blurred by the episodes' draws.
            let falls (label: string) (s: MetaSettings) (factor: float) =
                testCase $"{label}: the meta-loss falls" <| fun () ->
                    let values = LearnedOptimizer.values s.Kind s.KindOptions
                    let objective (theta: Tree) =
                        let opt = s.Kind.Create values theta
                        [ -1; -2; -3; -4 ] |> List.averageBy (fun seed -> MetaTrain.objective (MetaTrain.optimizee s seed) opt s.Dtype seed s.Horizon)
                    let before = objective (s.Kind.InitTheta values s.Seed)
                    let r = MetaTrain.train s ignore
                    let after = objective r.Last.Theta
                    let n = max 1 (s.Episodes / 5)
                    let first = r.MetaLosses |> List.take n |> List.average
                    let last = r.MetaLosses |> List.rev |> List.take n |> List.average
                    Expect.isLessThan after (factor * before)
                        $"held-out meta-objective before {before}, after {after}; mean meta-loss of the first {n} episodes {first}, of the last {n} {last}"
            let sos = Synthetic.sumOfSquares 10 None
            let ms (options: (string * string) list) = [ "lr", "2" ] @ options
            falls "ktimesteps" (thesisSettings NormalizedInputs.kTimestepsKind [ "k", "5"; "eta_min", "0.1" ] sos 20 5 40 1e-2) 0.7
            falls "ktimesteps, tanh head" (thesisSettings NormalizedInputs.kTimestepsKind [ "k", "5"; "eta_min", "0.1"; "head", "tanh" ] sos 20 5 40 1e-2) 0.7
            falls "kmomentums" (thesisSettings NormalizedInputs.kMomentumsKind [ "eta_min", "0.1" ] sos 20 5 40 1e-2) 0.7
            falls "kmomentums, x inputs, adam normalisation" (thesisSettings NormalizedInputs.kMomentumsKind [ "eta_min", "0.1"; "x_inputs", "true"; "normalization", "adam" ] sos 20 5 40 1e-2) 0.7
            // A random mix of the six Adams is already close to the best one here, so LA_a and LA_b
            // start from (almost) all the weight on Adam.99, the worst, and must learn to move it.
            let fromAdam99 = { MultiscaleAdam.laKind with InitTheta = fun _ _ -> Tree.single "la.w" (torch.tensor([| 1.0f; 0.01f; 0.01f; 0.01f; 0.01f; 0.01f |])) }
            falls "msadam-la, LA_a" (thesisSettings fromAdam99 (ms [ "variant", "a" ]) sos 40 10 40 1e-2) 0.8
            falls "msadam-la, LA_b" (thesisSettings fromAdam99 (ms [ "variant", "b" ]) sos 40 10 40 1e-2) 0.8
            falls "msadam-la, LA_c" (thesisSettings MultiscaleAdam.laKind (ms [ "variant", "c" ]) sos 40 10 40 1e-2) 0.8
            falls "msadam-mlp" (thesisSettings MultiscaleAdam.mlpKind (ms []) sos 40 10 60 1e-2) 0.9
            falls "msadam-rnn, one layer" (thesisSettings MultiscaleAdam.rnnKind (ms []) sos 40 20 60 1e-2) 0.9
            falls "msadam-rnn, two layers" (thesisSettings MultiscaleAdam.rnnKind (ms [ "layers", "2" ]) sos 40 20 60 1e-2) 0.9
        ]
    ]
