/// Learned optimizers and meta-training: HyperAdam's special case and invariance, trained-file
/// round trips and errors, the meta-loss falling, and bit-identical resume after a kill.
module Optimizers.Tests.LearnedTests

open System
open System.IO
open Expecto
open TorchSharp
open Optimizers
open Optimizers.Handcrafted
open Optimizers.Learned
open Optimizers.Meta
open Optimizers.Tasks
open Optimizers.Tests.Check
open Optimizers.Tests.LearnedCheck

let logit (p: float) = log (p / (1.0 - p))

/// Theta for J = 1 whose decay rates are the constants b1, b2 and whose weight is 1.
let adamTheta (b1: float) (b2: float) =
    let t = freshTheta [ "j", "1" ] 0
    t |> Tree.mapi (fun name x ->
        match name with
        | "adam.kernel" | "weight.w" -> torch.zeros_like x
        | "adam.bias" -> torch.tensor([| logit b1; logit b2 |], dtype = f64)
        | "weight.b" -> torch.ones_like x
        | _ -> x)

[<Tests>]
let tests =
    testList "learned" [
        testPropertyWithConfig problemConfig "hyperadam with J = 1, constant decay rates and weight 1 is adam step for step" <| fun (pr: Problem) ->
            let lr = 0.05
            let ours = hyperAdam [ "j", "1"; "lr", string lr; "eps", "1e-24" ] (adamTheta 0.9 0.999)
            let adam = Adam.create { Adam.defaults with Lr = Hyper.Fixed lr; Eps = 1e-300; EpsRoot = 1e-24 }
            List.iter2 (fun a b -> closeRel 1e-10 a b "updates") (updates ours pr 1.0) (updates adam pr 1.0)

        testPropertyWithConfig problemConfig "hyperadam at adamTheta with no noise is adam at the given rate, for any J" <| fun (pr: Problem) ->
            let options = [ "j", "3"; "hidden", "4"; "lr", "0.005"; "eps", "1e-24" ]
            let theta = HyperAdam.adamTheta (typed HyperAdam.registration options) 7 0.03 0.9 0.999 0.0 |> Tree.map (fun t -> t.to_type f64)
            let adam = Adam.create { Adam.defaults with Lr = Hyper.Fixed 0.03; Eps = 1e-300; EpsRoot = 1e-24 }
            // the rates pass through float32 logits: equal to about 1e-7
            List.iter2 (fun a b -> closeRel 1e-5 a b "updates") (updates (hyperAdam options theta) pr 1.0) (updates adam pr 1.0)

        testPropertyWithConfig problemConfig "hyperadam's update is invariant to the gradient's scale" <| fun (pr: Problem) (Scale c) ->
            let opt = hyperAdam [ "j", "5"; "hidden", "7" ] (freshTheta [ "j", "5"; "hidden", "7" ] 3)
            List.iter2 (fun a b -> closeRel 1e-7 a b $"scaled by {c}") (updates opt pr c) (updates opt pr 1.0)

        testCase "hyperadam's state has the documented shapes and its theta is checked" <| fun () ->
            let theta = freshTheta [] 0
            Expect.equal theta.["adam.kernel"].shape [| 40L; 40L |] "[n(s), n(m)] (20 + 20) -> 2J (40)"
            let p = Tree.ofSeq [ "w", torch.ones([| 3L; 2L |], dtype = f64); "b", torch.ones([| 4L |], dtype = f64) ]
            let opt = hyperAdam [] theta
            let s = opt.Init p
            Expect.equal ((s.Slot "cells").["m"].shape) [| 10L; 20L |] "one row per coordinate, J columns"
            let u, _ = opt.Update p s p
            Expect.equal (u.Values |> Array.map (fun x -> x.shape)) [| [| 3L; 2L |]; [| 4L |] |] "updates shaped like the parameters"
            let e = Expect.throwsC (fun () -> hyperAdam [ "j", "5" ] theta |> ignore) id
            Expect.stringContains e.Message "expected [25; 10]" "a theta of other sizes is refused"

        testCase "a trained optimizer file round-trips, and wrong files are refused clearly" <| fun () ->
            let dir = tempDir "meta"
            let file = Path.Combine(dir, "h.bin")
            let t : TrainedOptimizer = { Kind = "hyperadam"; Options = [ "j", "3" ]; Theta = freshTheta [ "j", "3" ] 1; Info = Map.ofList [ "command", "test" ] }
            LearnedOptimizer.save file t
            let back = LearnedOptimizer.load file
            Expect.equal back.Options t.Options "options"
            Expect.equal back.Info t.Info "info"
            Expect.equal (floats back.Theta) (floats t.Theta) "theta"
            let opt = LearnedOptimizer.create HyperAdam.kind back
            Expect.equal opt.Name "hyperadam" "usable"
            let stateFile = Path.Combine(dir, "s.state")
            let adam = Adam.create Adam.defaults
            Serialization.saveState stateFile adam (adam.Init (tree1 [ 1.0 ]))
            let e = Expect.throwsC (fun () -> LearnedOptimizer.load stateFile |> ignore) id
            Expect.stringContains e.Message "not an trained optimizer file" "a state file is not a trained optimizer"
            Expect.stringContains e.Message "OPTSTATE" "and says what it is"
            File.WriteAllBytes(file, (File.ReadAllBytes file)[.. 100])
            let e = Expect.throwsC (fun () -> LearnedOptimizer.load file |> ignore) id
            Expect.stringContains e.Message "truncated" "a cut file"
            Directory.Delete(dir, true)

        testCase "meta-train and evaluate from the command line" <| fun () ->
            let dir = tempDir "meta"
            let file = Path.Combine(dir, "h.bin")
            let code, out, err =
                cli [ "meta-train"; "--kind"; "hyperadam"; "--opt"; "j=2"; "--opt"; "hidden=3"; "--task"; "sum-of-squares"; "--task-opt"; "dim=5"
                      "--horizon"; "8"; "--window"; "4"; "--episodes"; "3"; "--validate-every"; "1"; "--validation-seeds"; "2"; "--validation-baseline"; "adam:lr=0.1"; "--out"; file; "--quiet" ]
            Expect.equal code 0 $"meta-train exit code ({err})"
            Expect.stringContains out "saved" "reports the file"
            let trained = LearnedOptimizer.load file
            // The baseline: Adam on the same two validation optimizees (seeds -1001, -1002), measured once.
            let task = Registry.createSeededTask "sum-of-squares" [ "dim", "5" ]
            let adam = Registry.createOptimizer "adam" [ "lr", "0.1" ]
            let expected = [ -1001; -1002 ] |> List.averageBy (fun vs -> MetaTrain.validationLoss (task vs) adam TorchSharp.torch.float32 vs 8)
            Expect.stringContains out $"validation baseline adam:lr=0.1: {Optimizers.Experiments.Output.short expected}" "the baseline's validation loss is printed"
            Expect.equal trained.Info["validation_baseline adam:lr=0.1"] (Optimizers.Experiments.Output.short expected) "and recorded in the file"
            Expect.equal (trained.Info["validations"].Split(' ').Length) 3 "one validation per episode is recorded"
            Expect.stringContains trained.Info["command"] "meta-train --kind hyperadam" "the command line is recorded in the file"
            Expect.equal trained.Options [ "j", "2"; "hidden", "3" ] "the kind's options are recorded"
            Expect.equal trained.Info["validation_split"] "validation" "the selecting split is recorded"
            let code, _, err =
                cli [ "meta-train"; "--kind"; "hyperadam"; "--task"; "sum-of-squares"; "--validation-split"; "test"; "--out"; Path.Combine(dir, "x.bin"); "--quiet" ]
            Expect.equal code 2 "a bad --validation-split is a usage error"
            Expect.stringContains err "--validation-split test is invalid; give validation or train" "and says what is valid"
            let code, out, err = cli [ "evaluate"; "--task"; "sum-of-squares"; "--task-opt"; "dim=5"; "--optimizer"; $"hyperadam:file={file}"; "--optimizer"; "adam"; "--steps"; "5"; "--seeds"; "3"; "--format"; "csv" ]
            Expect.equal code 0 $"evaluate exit code ({err})"
            Expect.equal (out.Split('\n', StringSplitOptions.RemoveEmptyEntries).Length) 3 "header and two optimizers"
            let code, runs, err = cli [ "evaluate"; "--task"; "sum-of-squares"; "--task-opt"; "dim=5"; "--optimizer"; $"hyperadam:file={file}"; "--optimizer"; "adam"; "--steps"; "5"; "--seeds"; "3"; "--format"; "runs" ]
            Expect.equal code 0 $"evaluate --format runs exit code ({err})"
            let runLines = runs.Split('\n', StringSplitOptions.RemoveEmptyEntries) |> Array.map (fun l -> l.Trim())
            Expect.equal runLines.Length 7 "header and one line per optimizer and seed"
            Expect.equal (runLines |> Array.skip 1 |> Array.map (fun l -> l.Split(',')[1])) [| "0"; "1"; "2"; "0"; "1"; "2" |] "the same seeds for both"
            // The per-run lines average to the summary's mean final loss.
            let adamMean = out.Split('\n') |> Array.find (fun l -> l.StartsWith "\"adam\"") |> fun l -> float (l.Split(',')[1])
            let adamRuns = runLines |> Array.filter (fun l -> l.StartsWith "\"adam\"") |> Array.averageBy (fun l -> float (l.Split(',')[2]))
            closeTo Tol.medium adamRuns adamMean "per-run and summary agree"
            // --init continues from a trained file: its options, its theta (a tiny meta lr barely moves it).
            let continued = Path.Combine(dir, "h2.bin")
            let code, _, err =
                cli [ "meta-train"; "--kind"; "hyperadam"; "--init"; file; "--task"; "sum-of-squares"; "--task-opt"; "dim=5"
                      "--horizon"; "8"; "--window"; "4"; "--episodes"; "1"; "--meta-lr"; "1e-12"; "--out"; continued; "--quiet" ]
            Expect.equal code 0 $"meta-train --init exit code ({err})"
            let again = LearnedOptimizer.load continued
            Expect.equal again.Options trained.Options "the file's options"
            for a, b in Array.zip (Tree.toFloats again.Theta) (Tree.toFloats trained.Theta) do
                closeTo Tol.medium a b "theta starts from the file's"
            // --init-adam starts at Adam with that rate: J weights of lr / (alpha J), the rates' logits.
            let code, _, err =
                cli [ "meta-train"; "--kind"; "hyperadam"; "--opt"; "j=4"; "--opt"; "lr=0.01"; "--init-adam"; "0.03"; "--task"; "sum-of-squares"; "--task-opt"; "dim=5"
                      "--horizon"; "8"; "--window"; "4"; "--episodes"; "1"; "--meta-lr"; "1e-12"; "--out"; continued; "--quiet" ]
            Expect.equal code 0 $"meta-train --init-adam exit code ({err})"
            let fromAdam = LearnedOptimizer.load continued
            for w in Tree.toFloats (Tree.single "b" fromAdam.Theta["weight.b"]) do
                closeTo Tol.medium w 0.75 "each weight is 0.03 / (0.01 * 4)"
            let rates = Tree.toFloats (Tree.single "b" fromAdam.Theta["adam.bias"]) |> Array.map (fun z -> 1.0 / (1.0 + exp -z))
            closeTo Tol.medium rates[0] 0.9 "beta1's logit"
            closeTo Tol.medium rates[7] 0.999 "beta2's logit"
            // --task-choice: each optimizee takes one value in turn by its seed (-1001: the second, -1002: the first).
            let code, out, err =
                cli [ "meta-train"; "--kind"; "hyperadam"; "--opt"; "j=2"; "--opt"; "hidden=3"; "--task"; "sum-of-squares"; "--task-choice"; "dim=3,5"
                      "--horizon"; "8"; "--window"; "4"; "--episodes"; "2"; "--validate-every"; "1"; "--validation-seeds"; "2"; "--validation-baseline"; "adam:lr=0.1"; "--out"; continued; "--quiet" ]
            Expect.equal code 0 $"meta-train --task-choice exit code ({err})"
            let on dim vs = MetaTrain.validationLoss (Registry.createSeededTask "sum-of-squares" [ "dim", dim ] vs) adam TorchSharp.torch.float32 vs 8
            let mixed = (on "5" -1001 + on "3" -1002) / 2.0
            Expect.stringContains out $"validation baseline adam:lr=0.1: {Optimizers.Experiments.Output.short mixed}" "the validation optimizees take the values in turn"
            let code, _, err = cli [ "meta-train"; "--kind"; "hyperadam"; "--task"; "sum-of-squares"; "--task-choice"; "dim=3,x"; "--out"; continued ]
            Expect.equal code 2 "a bad value among the choices"
            Expect.stringContains err "dim" "names the option"
            let code, _, err = cli [ "meta-train"; "--kind"; "hyperadam"; "--task"; "sum-of-squares"; "--task-opt"; "dim=4"; "--task-choice"; "dim=3,5"; "--out"; continued ]
            Expect.equal code 2 "the same option fixed and chosen"
            Expect.stringContains err "keep one" "says how to fix it"
            let code, _, err = cli [ "meta-train"; "--kind"; "rnnprop"; "--init-adam"; "0.03"; "--task"; "rosenbrock"; "--out"; continued ]
            Expect.equal code 2 "--init-adam for a kind without an Adam special case"
            Expect.stringContains err "only hyperadam" "says which kind has one"
            let code, _, err = cli [ "meta-train"; "--kind"; "hyperadam"; "--init"; file; "--init-adam"; "0.03"; "--task"; "rosenbrock"; "--out"; continued ]
            Expect.equal code 2 "--init and --init-adam together"
            Expect.stringContains err "pass one of them" "says how to fix it"
            let code, _, err = cli [ "meta-train"; "--kind"; "rnnprop"; "--init"; file; "--task"; "rosenbrock"; "--out"; continued ]
            Expect.equal code 2 "an --init file of another kind"
            Expect.stringContains err "holds a 'hyperadam'" "names what the file holds"
            let code, _, err = cli [ "meta-train"; "--kind"; "hyperadam"; "--opt"; "j=3"; "--init"; file; "--task"; "rosenbrock"; "--out"; continued ]
            Expect.equal code 2 "options that differ from the --init file's"
            Expect.stringContains err "drop --opt" "says how to fix it"
            let code, _, err = cli [ "meta-train"; "--kind"; "hyperadamz"; "--task"; "rosenbrock"; "--out"; file ]
            Expect.equal code 2 "unknown kind"
            Expect.stringContains err "valid: hyperadam" "lists the kinds"
            let code, _, err = cli [ "meta-train"; "--kind"; "hyperadam"; "--task"; "rosenbrock"; "--horizon"; "10"; "--window"; "3"; "--out"; file ]
            Expect.equal code 2 "a window that does not divide the horizon"
            Expect.stringContains err "window = 3" "names it"
            Directory.Delete(dir, true)

        testSequenced <| testList "meta-training" [
            testCase "the meta-loss falls" <| fun () ->
                let s = { hyperAdamSettings 40 None with Horizon = 20; Window = 5; MetaLr = 1e-2; MetaLrFinal = 1e-2; ValidateEvery = 1000 }
                let r = MetaTrain.train s ignore
                let first = r.MetaLosses |> List.take 8 |> List.average
                let last = r.MetaLosses |> List.skip 32 |> List.average
                Expect.isLessThan last (0.7 * first) $"mean meta-loss of the first 8 episodes {first}, of the last 8 {last}"

            for objective, name in [ MetaObjective.MeanLoss, "mean loss"; MetaObjective.MeanLogLoss, "mean log loss"; MetaObjective.LateLogLoss, "late-weighted log loss" ] do
                testCase $"a window's surrogate has the meta-gradient of backpropagating its {name} through the unrolled steps" <| fun () ->
                    let s = { hyperAdamSettings 1 None with Window = 5; Dtype = f64; Objective = objective }
                    // the loss after t updates as the objective counts it (late-log: weighted by 2 t / (T + 1))
                    let measure (t: int) (l: Tensor) =
                        match objective with
                        | MetaObjective.MeanLoss -> l
                        | MetaObjective.MeanLogLoss -> l.log()
                        | MetaObjective.LateLogLoss -> l.log() * (2.0 * float t / float (s.Horizon + 1))
                    let task = Synthetic.rosenbrock 1.0 100.0 None
                    let values = LearnedOptimizer.values HyperAdam.kind s.KindOptions
                    let leaves = freshTheta s.KindOptions 3 |> Tree.asLeaves
                    let opt = HyperAdam.kind.Create values leaves
                    let p0 = task.Init { TaskInit.Default with Seed = 1; Dtype = f64 }
                    let s0 = opt.Init p0
                    // The reference: every loss kept in the graph with the optimizee's network, the
                    // gradients fed to the optimizer detached (no second derivatives)
                    let mutable p, st, losses = p0, s0, []
                    for i in 0 .. s.Window - 1 do
                        let input = if p.Values[0].requires_grad then p else Tree.asLeaves p
                        let loss = task.Loss i input
                        if i > 0 then losses <- loss :: losses
                        let g = torch.autograd.grad([| loss |], input.Values, retain_graph = true) |> Seq.map (fun x -> x.detach()) |> Array.ofSeq
                        let p', st' = Transform.step opt { Names = p.Names; Values = g } st input
                        p <- p'
                        st <- st'
                    let meanLoss = torch.stack(Array.ofList (task.Loss s.Window p :: losses) |> Array.rev |> Array.mapi (fun i l -> measure (i + 1) l)).mean()
                    let expected = torch.autograd.grad([| meanLoss |], leaves.Values, retain_graph = true)
                    let value, surrogate, _, _ = MetaTrain.window s task opt 0 p0 s0
                    let actual = torch.autograd.grad([| surrogate |], leaves.Values)
                    closeRel 1e-12 [| value.ToDouble() |] [| meanLoss.ToDouble() |] "mean loss"
                    Seq.iter2 (fun (a: Tensor) (e: Tensor) -> closeRel 1e-10 (a.data<float>().ToArray()) (e.data<float>().ToArray()) "dmeta/dtheta") actual expected
                    Expect.isGreaterThan (expected |> Seq.sumBy (fun e -> e.abs().sum().ToDouble())) 1e-6 "a meta-gradient that is not zero"

            testCase "a killed run resumed from its checkpoint ends bit-identical to an uninterrupted one" <| fun () ->
                let whole = MetaTrain.train (hyperAdamSettings 6 None) ignore
                let dir = tempDir "meta"
                let killed = hyperAdamSettings 6 (Some dir)
                Expect.throws (fun () -> MetaTrain.train killed (fun p -> if p.Episode = 2 then failwith "killed") |> ignore) "the run dies after episode 2"
                let resumed = MetaTrain.train killed ignore
                Expect.equal (floats resumed.Last.Theta) (floats whole.Last.Theta) "last theta"
                Expect.equal (floats resumed.Best.Theta) (floats whole.Best.Theta) "best theta"
                Expect.equal resumed.MetaLosses whole.MetaLosses "meta-loss history"
                Directory.Delete(dir, true)

            testCase "random resets draw episode lengths in the range, the same on every call" <| fun () ->
                let s = { hyperAdamSettings 200 None with ResetRange = Some(6, 17) }
                let lengths = [ for e in 0 .. 199 -> MetaTrain.episodeWindows s e ]
                Expect.allEqual (lengths |> List.map (fun w -> w >= 1 && w <= 4)) true $"windows of 4 steps within 6..17 steps: {lengths}"
                Expect.equal (lengths |> List.distinct |> List.sort) [ 1; 2; 3; 4 ] "every length in the range occurs"
                Expect.equal [ for e in 0 .. 199 -> MetaTrain.episodeWindows s e ] lengths "deterministic"
                Expect.equal (MetaTrain.episodeWindows (hyperAdamSettings 1 None) 7) 3 "without resets: horizon / window"
                Expect.throws (fun () -> MetaTrain.train { s with ResetRange = Some(2, 10) } ignore |> ignore) "lo below one window"

            testCase "a killed run with random resets resumes bit-identical" <| fun () ->
                let s = { hyperAdamSettings 5 None with ResetRange = Some(4, 16) }
                let whole = MetaTrain.train s ignore
                let dir = tempDir "meta"
                let killed = { s with CheckpointDir = Some dir }
                Expect.throws (fun () -> MetaTrain.train killed (fun p -> if p.Episode = 2 then failwith "killed") |> ignore) "the run dies after episode 2"
                let resumed = MetaTrain.train killed ignore
                Expect.equal (floats resumed.Last.Theta) (floats whole.Last.Theta) "last theta"
                Expect.equal resumed.MetaLosses whole.MetaLosses "meta-loss history"
                Directory.Delete(dir, true)
        ]
    ]
