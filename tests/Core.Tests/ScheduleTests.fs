/// Schedules, wrappers (Lookahead, clipping, masking), the LR range test and their CLI.
/// Schedule references come from PyTorch 1.13 (tests/reference/schedules.py writes
/// tests/reference/schedules.csv); the other references are computed by hand in the comments.
module Optimizers.Tests.ScheduleTests

open System
open System.IO
open System.Text.Json
open Expecto
open TorchSharp
open Optimizers
open Optimizers.Handcrafted
open Optimizers.Transforms
open Optimizers.Tasks
open Optimizers.Tests.Check

/// |actual - expected| <= 1e-9 |expected| + 1e-15 (PyTorch computes some schedules recursively).
let private closeTo (what: string) (expected: float) (actual: float) =
    if not (abs (actual - expected) <= 1e-9 * abs expected + 1e-15) then
        failtestf "%s: got %.17g, expected %.17g" what actual expected

let private throwsOption (what: string) (mustMention: string) (f: unit -> 'a) =
    try
        f () |> ignore
        failtestf "%s: expected an InvalidOptionException" what
    with :? InvalidOptionException as e ->
        Expect.stringContains e.Message mustMention $"{what}: the message names {mustMention}"

/// The PyTorch reference: case name -> values at steps 0, 1, ...
let private reference : Map<string, float[]> =
    let path = Path.Combine(AppContext.BaseDirectory, "reference", "schedules.csv")
    File.ReadAllLines path
    |> Array.filter (fun l -> l <> "" && not (l.StartsWith "#") && not (l.StartsWith "case,"))
    |> Array.map (fun l ->
        let f = l.Split ','
        f[0], int f[1], Double.Parse(f[2], Globalization.CultureInfo.InvariantCulture))
    |> Array.groupBy (fun (c, _, _) -> c)
    |> Array.map (fun (c, rows) -> c, rows |> Array.sortBy (fun (_, t, _) -> t) |> Array.map (fun (_, _, v) -> v))
    |> Map.ofArray

/// Our schedule for each PyTorch case (same arguments; lr 0.1 is the torch optimizer's lr).
let private ours : (string * Schedule) list =
    [ "step_0.1_3_0.5", Schedule.step 0.1 3 0.5
      "multistep_0.1_2-5-9_0.1", Schedule.multistep 0.1 [ 2; 5; 9 ] 0.1
      "exponential_0.1_0.9", Schedule.exponential 0.1 0.9
      "polynomial_0.1_8_2", Schedule.polynomial 0.1 0.0 2.0 8
      "polynomial_0.1_8_1", Schedule.polynomial 0.1 0.0 1.0 8
      "cosine_0.1_10_0.001", Schedule.cosine 0.1 10 0.001
      "cosine_0.1_7_0", Schedule.cosine 0.1 7 0.0
      "sgdr_0.1_5_1_0.01", Schedule.sgdr 0.1 5 1 0.01
      "sgdr_0.1_3_2_0", Schedule.sgdr 0.1 3 2 0.0
      "triangular_0.01_0.1_4_4", Schedule.cyclic CyclicMode.Triangular 0.01 0.1 4 4
      "triangular_0.01_0.1_4_2", Schedule.cyclic CyclicMode.Triangular 0.01 0.1 4 2
      "triangular2_0.01_0.1_3_3", Schedule.cyclic CyclicMode.Triangular2 0.01 0.1 3 3
      "exp_range_0.01_0.1_3_3_0.9", Schedule.cyclic (CyclicMode.ExpRange 0.9) 0.01 0.1 3 3
      "onecycle_0.1_20_0.3_25_1e4_cos_2phase", Schedule.oneCycle 0.1 20 0.3 25.0 1e4 false false
      "onecycle_0.1_17_0.25_10_100_cos_2phase", Schedule.oneCycle 0.1 17 0.25 10.0 100.0 false false
      "onecycle_0.1_20_0.3_25_1e4_linear_2phase", Schedule.oneCycle 0.1 20 0.3 25.0 1e4 false true
      "onecycle_0.1_30_0.3_25_1e4_cos_3phase", Schedule.oneCycle 0.1 30 0.3 25.0 1e4 true false
      "warmup_0.1_5_0.1", Schedule.warmup 0.1 0.1 5 ]

/// The same cases built through the registry, as the CLI builds them (lr = 0.1).
let private viaRegistry : (string * string * (string * string) list) list =
    [ "step_0.1_3_0.5", "step", [ "step_size", "3"; "gamma", "0.5" ]
      "multistep_0.1_2-5-9_0.1", "multistep", [ "milestones", "2,5,9" ]
      "exponential_0.1_0.9", "exponential", [ "gamma", "0.9" ]
      "polynomial_0.1_8_2", "polynomial", [ "total_iters", "8"; "power", "2" ]
      "cosine_0.1_10_0.001", "cosine", [ "t_max", "10"; "eta_min", "0.001" ]
      "sgdr_0.1_3_2_0", "sgdr", [ "t_0", "3"; "t_mult", "2" ]
      "triangular_0.01_0.1_4_2", "triangular", [ "base_lr", "0.01"; "step_size_up", "4"; "step_size_down", "2" ]
      "triangular2_0.01_0.1_3_3", "triangular2", [ "base_lr", "0.01"; "step_size_up", "3" ]
      "exp_range_0.01_0.1_3_3_0.9", "exp-range", [ "base_lr", "0.01"; "step_size_up", "3"; "gamma", "0.9" ]
      "onecycle_0.1_17_0.25_10_100_cos_2phase", "one-cycle", [ "total_steps", "17"; "pct_start", "0.25"; "div_factor", "10"; "final_div_factor", "100" ]
      "onecycle_0.1_30_0.3_25_1e4_cos_3phase", "one-cycle", [ "total_steps", "30"; "three_phase", "true" ]
      "onecycle_0.1_20_0.3_25_1e4_linear_2phase", "one-cycle", [ "linear", "true" ]
      "warmup_0.1_5_0.1", "warmup", [ "warmup_steps", "5"; "start_factor", "0.1" ] ]

let private scheduleTests =
    testList "values" [
        yield testCase "every case of the PyTorch reference has a schedule here" <| fun () ->
            Expect.equal (reference.Keys |> Set.ofSeq) (ours |> List.map fst |> Set.ofList) "the same cases"

        for name, s in ours ->
            testCase $"matches PyTorch: {name}" <| fun () ->
                reference[name] |> Array.iteri (fun t v -> closeTo $"{name} at step {t}" v (s t))

        for case, name, options in viaRegistry ->
            testCase $"registry builds {name} as PyTorch: {case}" <| fun () ->
                // one-cycle's total_steps defaults to the run's length (20 here when not given).
                let s = Registry.createSchedule name 0.1 (Some 20) options
                reference[case] |> Array.iteri (fun t v -> closeTo $"{case} at step {t}" v (s t))

        yield testCase "constant, linear, sweep and scale by hand" <| fun () ->
            let c = Schedule.constant 0.3
            for t in [ 0; 1; 1000 ] do closeTo "constant" 0.3 (c t)
            let l = Schedule.linear 0.0 1.0 4
            List.iter2 (fun t v -> closeTo $"linear at {t}" v (l t)) [ 0; 1; 2; 4; 9 ] [ 0.0; 0.25; 0.5; 1.0; 1.0 ]
            // 1e-4 * (1 / 1e-4)^(t / 4): 1e-4, 1e-3, 1e-2, 1e-1, 1, then constant
            let e = Schedule.exponentialSweep 1e-4 1.0 5
            List.iter2 (fun t v -> closeTo $"sweep at {t}" v (e t)) [ 0; 1; 2; 3; 4; 10 ] [ 1e-4; 1e-3; 1e-2; 1e-1; 1.0; 1.0 ]
            closeTo "scale" 0.6 (Schedule.scale 2.0 c 5)

        yield testCase "polynomial with an end value (optax) by hand" <| fun () ->
            // (1 - 0.1) * (1 - t / 10) + 0.1: t = 5 -> 0.55; t >= 10 -> 0.1
            let p = Schedule.polynomial 1.0 0.1 1.0 10
            List.iter2 (fun t v -> closeTo $"polynomial at {t}" v (p t)) [ 0; 5; 10; 20 ] [ 1.0; 0.55; 0.1; 0.1 ]

        yield testCase "one-cycle stays at its minimum after total_steps - 1" <| fun () ->
            let s = Schedule.oneCycle 0.1 20 0.3 25.0 1e4 false false
            closeTo "step 19" 4e-7 (s 19)
            closeTo "step 50" 4e-7 (s 50)

        yield testCase "join: warm-up then cosine, each from its own step 0 (by hand)" <| fun () ->
            // t < 4: t / 4;  t >= 4: (1 + cos(pi (t - 4) / 10)) / 2
            let j = Schedule.join [ Schedule.warmup 1.0 0.0 4; Schedule.cosine 1.0 10 0.0 ] [ 4 ]
            List.iter2 (fun t v -> closeTo $"join at {t}" v (j t))
                [ 0; 2; 3; 4; 9; 14 ] [ 0.0; 0.5; 0.75; 1.0; 0.5; 0.0 ]
            // three parts: 1 on [0, 2), 0.5 on [2, 5), 0.25 from 5
            let k = Schedule.join [ Schedule.constant 1.0; Schedule.constant 0.5; Schedule.constant 0.25 ] [ 2; 5 ]
            List.iter2 (fun t v -> closeTo $"join3 at {t}" v (k t)) [ 0; 1; 2; 4; 5; 100 ] [ 1.0; 1.0; 0.5; 0.5; 0.25; 0.25 ]

        yield testCase "registry warmup-cosine is the join, with t_max defaulting to the rest of the run" <| fun () ->
            let s = Registry.createSchedule "warmup-cosine" 1.0 (Some 14) [ "warmup_steps", "4" ]
            List.iter2 (fun t v -> closeTo $"warmup-cosine at {t}" v (s t)) [ 0; 2; 4; 9; 14 ] [ 0.0; 0.5; 1.0; 0.5; 0.0 ]

        yield testCase "registry cyclic base_lr defaults to lr / 4" <| fun () ->
            let s = Registry.createSchedule "triangular" 0.4 None [ "step_size_up", "2" ]
            closeTo "base" 0.1 (s 0)
            closeTo "peak" 0.4 (s 2)
    ]

let private validationTests =
    testList "validation" [
        testCase "bad arguments name the schedule and the argument" <| fun () ->
            throwsOption "step_size 0" "step_size" (fun () -> Schedule.step 0.1 0 0.5)
            throwsOption "negative lr" "lr" (fun () -> Schedule.exponential -0.1 0.9)
            throwsOption "milestones" "strictly increasing" (fun () -> Schedule.multistep 0.1 [ 5; 3 ] 0.1)
            throwsOption "t_max" "t_max" (fun () -> Schedule.cosine 0.1 0 0.0)
            throwsOption "t_mult" "t_mult" (fun () -> Schedule.sgdr 0.1 5 0 0.0)
            throwsOption "gamma" "gamma" (fun () -> Schedule.cyclic (CyclicMode.ExpRange 1.5) 0.01 0.1 2 2)
            throwsOption "pct_start" "pct_start" (fun () -> Schedule.oneCycle 0.1 20 1.5 25.0 1e4 false false)
            throwsOption "empty phase" "without steps" (fun () -> Schedule.oneCycle 0.1 3 0.3 25.0 1e4 false false)
            throwsOption "start_factor" "start_factor" (fun () -> Schedule.warmup 0.1 2.0 5)
            throwsOption "sweep" "max_lr" (fun () -> Schedule.exponentialSweep 1.0 0.1 10)
            throwsOption "join" "boundaries" (fun () -> Schedule.join [ Schedule.constant 1.0; Schedule.constant 0.5 ] [])
            throwsOption "join order" "strictly increasing" (fun () -> Schedule.join [ Schedule.constant 1.0; Schedule.constant 0.5; Schedule.constant 0.1 ] [ 5; 5 ])
            throwsOption "negative step" "step" (fun () -> Schedule.cosine 0.1 10 0.0 -1)

        testCase "the registry says what is missing or unknown" <| fun () ->
            throwsOption "unknown schedule" "valid: constant" (fun () -> Registry.createSchedule "nope" 0.1 None [])
            throwsOption "unknown option" "unknown option 'gama'" (fun () -> Registry.createSchedule "step" 0.1 None [ "step_size", "3"; "gama", "0.5" ])
            throwsOption "required" "step_size is required" (fun () -> Registry.createSchedule "step" 0.1 None [])
            throwsOption "length" "t_max is required" (fun () -> Registry.createSchedule "cosine" 0.1 None [])

        testCase "a hyperparameter that is read as a plain number cannot be a schedule" <| fun () ->
            throwsOption "eps" "eps" (fun () -> Registry.createOptimizerWith "adam" [] (Map.ofList [ "eps", Hyper.Scheduled(fun _ -> 1e-3) ]))
            throwsOption "unknown" "unknown option 'beta9'" (fun () -> Registry.createOptimizerWith "sgd" [] (Map.ofList [ "beta9", Hyper.Fixed 1.0 ]))

        testCase "a plain number given typed is read as that number, never through text" <| fun () ->
            // eps = 1: a step of lr * g / (|g| + 1) instead of lr * sign(g)
            let typed = Registry.createOptimizerWith "adam" [ "lr", "0.1" ] (Map.ofList [ "eps", Hyper.Fixed 1.0 ])
            let texted = Registry.createOptimizer "adam" [ "lr", "0.1"; "eps", "1" ]
            let p = tree1 [ 2.0 ]
            let step (o: Transformation) = floats (fst (Transform.stepOps o (tree1 [ 1.0 ]) (o.Init p) p))
            Expect.equal (step typed) (step texted) "the same step as eps=1 given as text"
            Expect.floatClose Accuracy.veryHigh (step typed).[0] (2.0 - 0.1 * 1.0 / (1.0 + 1.0)) "2 - lr g / (|g| + eps)"
            throwsOption "twice" "given twice" (fun () -> Registry.createScheduled "adam" [ "lr", "0.1" ] (Some 0.2) None None |> ignore)
    ]

/// Gradient of 0.5 ||x||^2: the parameters themselves.
let private identityGrad (p: Tree) = Tree.map (fun x -> x.clone()) p

let private wrapperTests =
    testList "wrappers" [
        testCase "a scheduled lr reaches the optimizer (SGD by hand)" <| fun () ->
            // x1 = 1 - 0.5 * 1 = 0.5; x2 = 0.5 - 0.25 * 0.5 = 0.375; x3 = 0.375 - 0.125 * 0.375
            let sgd = Registry.createOptimizerWith "sgd" [] (Map.ofList [ "lr", Hyper.Scheduled(Schedule.exponential 0.5 0.5) ])
            let traj = trajectory sgd identityGrad (tree1 [ 1.0 ]) 3
            closeRel 1e-15 (Array.concat traj) [| 0.5; 0.375; 0.328125 |] "scheduled sgd"

        testCase "lookahead by hand: SGD lr 0.5 on x^2/2, k = 2, alpha = 0.5" <| fun () ->
            // fast 1 -> 0.5 -> 0.25; slow 1 + 0.5 (0.25 - 1) = 0.625; fast 0.625 -> 0.3125 -> 0.15625;
            // slow 0.625 + 0.5 (0.15625 - 0.625) = 0.390625
            let la = Wrappers.lookahead 2 (Hyper.Fixed 0.5) (Sgd.create { Sgd.defaults with Lr = Hyper.Fixed 0.5 })
            let traj = trajectory la identityGrad (tree1 [ 1.0 ]) 4
            closeRel 1e-15 (Array.concat traj) [| 0.5; 0.625; 0.3125; 0.390625 |] "lookahead(sgd)"

        testCase "lookahead by hand: the inner momentum survives a synchronisation" <| fun () ->
            // b1 = 1, x = 0.5; b2 = 0.9 + 0.5 = 1.4, fast = 0.5 - 0.7 = -0.2, slow = 1 + 0.5 (-1.2) = 0.4;
            // b3 = 0.9 * 1.4 + 0.4 = 1.66, x = 0.4 - 0.83 = -0.43
            let inner = Sgd.create { Sgd.defaults with Lr = Hyper.Fixed 0.5; Momentum = Hyper.Fixed 0.9 }
            let la = Wrappers.lookahead 2 (Hyper.Fixed 0.5) inner
            let traj = trajectory la identityGrad (tree1 [ 1.0 ]) 3
            closeRel 1e-14 (Array.concat traj) [| 0.5; 0.4; -0.43 |] "lookahead(momentum)"

        testCase "lookahead keeps its slow weights and count in the state" <| fun () ->
            let la = Wrappers.lookahead 2 (Hyper.Fixed 0.5) (Sgd.create { Sgd.defaults with Lr = Hyper.Fixed 0.5 })
            let p0 = tree1 [ 1.0 ]
            let s0 = la.Init p0
            Expect.equal la.Name "lookahead(sgd)" "name records the inner optimizer"
            let p1, s1 = Transform.step la (identityGrad p0) s0 p0
            closeRel 0.0 (floats (s1.Slot "slow")) [| 1.0 |] "slow weights before the first synchronisation"
            let _, s2 = Transform.step la (identityGrad p1) s1 p1
            closeRel 0.0 (floats (s2.Slot "slow")) [| 0.625 |] "slow weights after it"
            Expect.equal s2.Count 2 "count"
            closeRel 0.0 (floats p0) [| 1.0 |] "the input parameters are untouched"

        testCase "lookahead is measured at its slow weights, a chain passes that on, others at their parameters" <| fun () ->
            let sgd = Sgd.create { Sgd.defaults with Lr = Hyper.Fixed 0.5 }
            let la = Wrappers.lookahead 2 (Hyper.Fixed 0.5) sgd
            let p0 = tree1 [ 1.0 ]
            let p1, s1 = Transform.step la (identityGrad p0) (la.Init p0) p0
            // fast 0.5 after one step; the slow weights are still the start
            closeRel 0.0 (floats (Transform.evaluationParams la s1 p1)) [| 1.0 |] "between synchronisations: phi"
            let p2, s2 = Transform.step la (identityGrad p1) s1 p1
            closeRel 0.0 (floats (Transform.evaluationParams la s2 p2)) [| 0.625 |] "after one: phi = theta"
            closeRel 0.0 (floats p2) [| 0.625 |] "theta"
            let chained = Combine.chain [ Clip.byGlobalNorm (Hyper.Fixed 10.0) 2.0; la ]
            let q1, c1 = Transform.step chained (identityGrad p0) (chained.Init p0) p0
            closeRel 0.0 (floats q1) [| 0.5 |] "the chain steps like lookahead"
            closeRel 0.0 (floats (Transform.evaluationParams chained c1 q1)) [| 1.0 |] "a chain with a lookahead part: phi"
            let q, s = Transform.step sgd (identityGrad p0) (sgd.Init p0) p0
            Expect.isTrue (obj.ReferenceEquals(Transform.evaluationParams sgd s q, q)) "sgd: its parameters"
            Expect.isNone (Combine.chain [ sgd ]).Evaluate "a chain without lookahead: its parameters"

        testPropertyWithConfig { FsCheckConfig.defaultConfig with maxTest = 30 } "lookahead with k = 1 and alpha = 1 is its inner optimizer" <| fun (seed: int) (useAdam: bool) ->
            let rng = Random(seed)
            let n = 1 + rng.Next 4
            let start = tree1 [ for _ in 1..n -> rng.NextDouble() * 4.0 - 2.0 ]
            let scale = vec [ for _ in 1..n -> 0.1 + rng.NextDouble() * 3.0 ]
            let grad (p: Tree) = Tree.map (fun x -> x * scale + 0.1) p
            let inner =
                if useAdam then Adam.create { Adam.defaults with Lr = Hyper.Fixed 0.05 }
                else Sgd.create { Sgd.momentumDefaults with Lr = Hyper.Fixed 0.05 }
            let a = trajectory inner grad start 8
            let b = trajectory (Wrappers.lookahead 1 (Hyper.Fixed 1.0) inner) grad start 8
            List.iteri2 (fun i x y -> closeRel 1e-12 y x $"step {i + 1}") a b

        testCase "lookahead validates k, alpha and its state" <| fun () ->
            let sgd = Sgd.create Sgd.defaults
            throwsOption "k" "k = 0" (fun () -> Wrappers.lookahead 0 (Hyper.Fixed 0.5) sgd)
            throwsOption "alpha" "alpha" (fun () -> Wrappers.lookahead 5 (Hyper.Fixed 1.5) sgd)
            let la = Wrappers.lookahead 5 (Hyper.Fixed 0.5) sgd
            let p = tree1 [ 1.0 ]
            throwsOption "state" "state of 'sgd'" (fun () -> la.Update p (sgd.Init p) p)

        testCase "registry lookahead wraps any optimizer and forwards its options" <| fun () ->
            let la = Registry.createOptimizer "lookahead" [ "inner", "sgd"; "k", "2"; "lr", "0.5" ]
            Expect.equal la.Name "lookahead(sgd)" "inner chosen by name"
            let traj = trajectory la identityGrad (tree1 [ 1.0 ]) 4
            closeRel 1e-15 (Array.concat traj) [| 0.5; 0.625; 0.3125; 0.390625 |] "registry lookahead(sgd)"
            Expect.equal (Registry.createOptimizer "lookahead" []).Name "lookahead(adam)" "adam by default"
            throwsOption "inner option" "adam: unknown option 'momentum'" (fun () -> Registry.createOptimizer "lookahead" [ "momentum", "0.9" ])
            throwsOption "itself" "wrappers do not nest" (fun () -> Registry.createOptimizer "lookahead" [ "inner", "lookahead" ])
            throwsOption "another wrapper" "wrappers do not nest" (fun () -> Registry.createOptimizer "lookahead" [ "inner", "ranger" ])
            // schedules reach the inner optimizer (lr) and lookahead itself (alpha): alpha = 0 keeps
            // the slow weights at the start, so every second step returns there
            let hypers = Map.ofList [ "lr", Hyper.Scheduled(Schedule.constant 0.5); "alpha", Hyper.Scheduled(Schedule.constant 0.0) ]
            let la0 = Registry.createOptimizerWith "lookahead" [ "inner", "sgd"; "k", "2" ] hypers
            let traj = trajectory la0 identityGrad (tree1 [ 1.0 ]) 4
            closeRel 1e-15 (Array.concat traj) [| 0.5; 1.0; 0.5; 1.0 |] "scheduled lr and alpha"
            closeTo "learning rate of a wrapper" 1e-3 (Registry.learningRateOf "lookahead" [])
            closeTo "learning rate given" 0.5 (Registry.learningRateOf "lookahead" [ "lr", "0.5" ])

        testCase "lookahead state saves and loads" <| fun () ->
            let la = Registry.createOptimizer "lookahead" [ "inner", "momentum"; "k", "3" ]
            let p = tree1 [ 1.0; -2.0 ]
            let _, s = Transform.step la (identityGrad p) (la.Init p) p
            let path = Path.Combine(Path.GetTempPath(), $"lookahead-{Guid.NewGuid()}.state")
            try
                Serialization.saveState path la s
                let s' = Serialization.loadState path la
                Expect.equal s'.Count s.Count "count"
                closeRel 0.0 (floats (s'.Slot "slow")) (floats (s.Slot "slow")) "slow weights"
                closeRel 0.0 (floats (s'.Children.Head.Children[1].Slot "momentum_buffer")) (floats (s.Children.Head.Children[1].Slot "momentum_buffer")) "inner momentum"
            finally File.Delete path

        testCase "clip by value (by hand)" <| fun () ->
            let u, _ = (Clip.byValue (Hyper.Fixed 1.0)).Update (tree1 [ -3.0; 0.5; 2.0 ]) (State.empty "clip_by_value") (tree1 [ 0.0; 0.0; 0.0 ])
            closeRel 0.0 (floats u) [| -1.0; 0.5; 1.0 |] "clamped to [-1, 1]"
            throwsOption "clip_value" "clip_value" (fun () -> Clip.byValue (Hyper.Fixed 0.0))

        testCase "clip by global norm: torch.nn.utils.clip_grad_norm_ (by hand)" <| fun () ->
            // a = [3, 4], b = [12]: 2-norm sqrt(9 + 16 + 144) = 13; 1-norm 19; inf-norm 12
            let g = Tree.ofSeq [ "a", vec [ 3.0; 4.0 ]; "b", vec [ 12.0 ] ]
            let clip maxNorm normType =
                let t = Clip.byGlobalNorm (Hyper.Fixed maxNorm) normType
                fst (t.Update g (t.Init g) g) |> floats
            closeTo "global norm" 13.0 (Clip.globalNorm 2.0 g)
            let c = 6.5 / (13.0 + 1e-6)
            closeRel 1e-15 (clip 6.5 2.0) [| 3.0 * c; 4.0 * c; 12.0 * c |] "2-norm clipped to 6.5"
            closeRel 0.0 (clip 20.0 2.0) [| 3.0; 4.0; 12.0 |] "below the threshold: unchanged"
            let c1 = 9.5 / (19.0 + 1e-6)
            closeRel 1e-15 (clip 9.5 1.0) [| 3.0 * c1; 4.0 * c1; 12.0 * c1 |] "1-norm"
            let ci = 6.0 / (12.0 + 1e-6)
            closeRel 1e-15 (clip 6.0 Double.PositiveInfinity) [| 3.0 * ci; 4.0 * ci; 12.0 * ci |] "inf-norm"
            closeRel 0.0 (floats g) [| 3.0; 4.0; 12.0 |] "the input is untouched"
            throwsOption "max_norm" "max_norm" (fun () -> Clip.byGlobalNorm (Hyper.Fixed -1.0) 2.0)

        testCase "masked: only the selected parameters are transformed" <| fun () ->
            let p = Tree.ofSeq [ "w", vec [ 1.0; 2.0 ]; "b", vec [ 3.0 ] ]
            let u = Tree.ofSeq [ "w", vec [ 0.5; 0.5 ]; "b", vec [ 0.5 ] ]
            let notBias (n: string) = not (n.EndsWith "b")
            // weight decay 0.1 on w only: w: 0.5 + 0.1 * [1, 2]; b passes through
            let decay = ScaleBy.l2WeightDecay (Hyper.Fixed 0.1)
            let m = Combine.masked notBias decay
            let out, _ = m.Update u (m.Init p) p
            Expect.equal out.Names [| "w"; "b" |] "names and order kept"
            closeRel 1e-15 (floats out) [| 0.6; 0.7; 0.5 |] "b passes through"
            let z = Combine.maskedWith Combine.MaskedOut.Zero notBias decay
            let out, _ = z.Update u (z.Init p) p
            closeRel 1e-15 (floats out) [| 0.6; 0.7; 0.0 |] "b gets a zero update"
            // a stateful inner transformation keeps state for the selected parameters only
            let adam = Combine.masked notBias (Adam.create Adam.defaults)
            let s = adam.Init p
            Expect.equal (s.Children.Head.Children[1].Slot "exp_avg").Names [| "w" |] "moments only for w"
            let out, s' = adam.Update u s p
            Expect.equal s'.Count 1 "count"
            let a = -1e-3 * 0.5 / (0.5 + 1e-8) // m^ = 0.5, sqrt(v^) = 0.5
            closeRel 1e-15 (floats out) [| a; a; 0.5 |] "adam's first step on w, b unchanged"
    ]

let private rangeTests =
    testList "lr range test" [
        testCase "steepest descent by numpy.gradient's differences" <| fun () ->
            // slopes: -1, (2 - 5) / 2 = -1.5, (1.5 - 4) / 2 = -1.25, -0.3, -0.1
            Expect.equal (LrRangeTest.steepest [| 5.0; 4.0; 2.0; 1.5; 1.4 |] 0 4) 1 "index 1"
            Expect.equal (LrRangeTest.steepest [| 5.0; 4.0; 2.0; 1.5; 1.4 |] 2 4) 2 "index 2 inside [2, 4]"

        testCase "on sum of squares with SGD: explodes past lr = 1 and suggests a plausible lr" <| fun () ->
            // x <- (1 - 2 lr) x converges for lr < 1 and diverges beyond
            let task = Synthetic.sumOfSquares 10 None
            let start = task.Init { TaskInit.Default with Dtype = f64 }
            let make lr = Sgd.create { Sgd.defaults with Lr = lr }
            let s = { LrRangeTest.defaults with MinLr = 1e-4; MaxLr = 10.0; Steps = 100 }
            let r = LrRangeTest.run s task make start
            match r.Stop with
            | LrRangeStop.Exploded k -> Expect.isGreaterThan r.Points[k].Lr 1.0 "explodes only where SGD diverges"
            | other -> failtestf "expected the loss to explode, got %A" other
            let p0 = r.Points[0]
            closeTo "first lr" 1e-4 p0.Lr
            closeTo "bias correction: the first smoothed loss is the loss" p0.Loss p0.Smoothed
            let q = r.Points[1]
            closeTo "second smoothed loss" ((0.98 * 0.02 * p0.Loss + 0.02 * q.Loss) / (1.0 - 0.98 ** 2.0)) q.Smoothed
            closeTo "lr grows exponentially" (1e-4 * 10.0 ** (5.0 * 5.0 / 99.0)) r.Points[5].Lr
            match r.SuggestedLr with
            | Some lr -> Expect.isTrue (lr > 1e-3 && lr < 1.0) $"suggested lr {lr} in (1e-3, 1)"
            | None -> failtest "no suggestion"
            closeRel 0.0 (floats start) (floats (task.Init { TaskInit.Default with Dtype = f64 })) "the start is untouched"

        testCase "a NaN loss stops the sweep" <| fun () ->
            let task = Synthetic.rosenbrock 1.0 100.0 (Some [| -1.5; 2.0 |])
            let start = task.Init { TaskInit.Default with Dtype = f64 }
            let r = LrRangeTest.run { LrRangeTest.defaults with MinLr = 1e-3; MaxLr = 1e6; Steps = 50; ExplodeFactor = Double.PositiveInfinity } task (fun lr -> Sgd.create { Sgd.defaults with Lr = lr }) start
            match r.Stop with
            | LrRangeStop.NonFinite k -> Expect.equal r.Points.Length k "points before the non-finite loss"
            | other -> failtestf "expected a non-finite stop, got %A" other

        testCase "settings are validated" <| fun () ->
            throwsOption "steps" "steps" (fun () -> LrRangeTest.validate { LrRangeTest.defaults with Steps = 1 })
            throwsOption "max_lr" "max_lr" (fun () -> LrRangeTest.validate { LrRangeTest.defaults with MinLr = 1.0; MaxLr = 0.5 })
            throwsOption "beta" "beta" (fun () -> LrRangeTest.validate { LrRangeTest.defaults with Beta = 1.0 })
    ]

let private cli (args: string) =
    use out = new StringWriter()
    use err = new StringWriter()
    let code = Optimizers.Experiments.Cli.run (args.Split(' ', StringSplitOptions.RemoveEmptyEntries)) out err
    code, out.ToString(), err.ToString()

let private cliTests =
    testList "cli" [
        testCase "trace --schedule applies the schedule to lr and prints it" <| fun () ->
            let code, out, err = cli "trace --task sum-of-squares --dim 1 --start 1 --optimizer sgd --lr 0.25 --steps 4 --dtype float64 --schedule step --sched-opt step_size=2 --sched-opt gamma=0.5"
            Expect.equal code 0 err
            let rows = out.Trim().Split('\n') |> Array.map (fun l -> l.Trim().Split ',')
            Expect.equal rows[0] [| "step"; "loss"; "p0"; "lr" |] "header"
            // lr 0.25, 0.25, 0.125, 0.125: x <- (1 - 2 lr) x: 1, 0.5, 0.25, 0.1875, 0.140625
            let xs = rows[1..] |> Array.map (fun r -> float r[2])
            let lrs = rows[1..] |> Array.map (fun r -> float r[3])
            closeRel 1e-15 xs [| 1.0; 0.5; 0.25; 0.1875; 0.140625 |] "trajectory"
            closeRel 0.0 lrs [| 0.25; 0.25; 0.125; 0.125; 0.0625 |] "lr column"

        testCase "trace --schedule in JSON, on a wrapper, with the run's length as default" <| fun () ->
            let code, out, err = cli "trace --task rosenbrock --start=-1.5,2 --optimizer lookahead --opt inner=sgd --opt momentum=0.9 --lr 1e-3 --steps 10 --schedule cosine --format json"
            Expect.equal code 0 err
            use doc = JsonDocument.Parse out
            let root = doc.RootElement
            Expect.equal (root.GetProperty("schedule").GetString()) "cosine" "schedule recorded"
            let rows = root.GetProperty("trajectory").EnumerateArray() |> Seq.toArray
            Expect.equal rows.Length 11 "start and 10 steps"
            closeTo "lr at 0" 1e-3 (rows[0].GetProperty("lr").GetDouble())
            closeTo "lr at t_max = steps" 0.0 (rows[10].GetProperty("lr").GetDouble())

        testCase "bad schedule input exits with 2 and says why" <| fun () ->
            let cases =
                [ "trace --task rosenbrock --optimizer sgd --schedule nope", "unknown schedule 'nope'"
                  "trace --task rosenbrock --optimizer sgd --schedule step", "step_size is required"
                  "trace --task rosenbrock --optimizer sgd --schedule step --sched-opt step_size=0", "step_size = 0"
                  "trace --task rosenbrock --optimizer sgd --sched-opt gamma=0.5", "without a schedule"
                  "trace --task rosenbrock --optimizer sgd --schedule cosine --sched-opt tmax=3", "unknown option 'tmax'"
                  "trace --task rosenbrock --optimizer lookahead --opt inner=adam --opt momentum=0.9", "unknown option 'momentum'" ]
            for args, message in cases do
                let code, _, err = cli args
                Expect.equal code 2 $"exit code of: {args}"
                Expect.stringContains err message $"error of: {args}"

        testCase "lr-range-test prints the sweep and the suggestion (CSV and JSON)" <| fun () ->
            let code, out, err = cli "lr-range-test --task sum-of-squares --dim 10 --optimizer sgd --min-lr 1e-4 --max-lr 10 --steps 60"
            Expect.equal code 0 err
            let lines = out.Trim().Split('\n') |> Array.map (fun l -> l.Trim())
            Expect.equal lines[0] "step,lr,loss,smoothed_loss" "header"
            Expect.isTrue (lines |> Array.exists (fun l -> l.StartsWith "# suggested_lr: ")) "a suggestion line"
            Expect.isTrue (lines |> Array.exists (fun l -> l.StartsWith "# stop: ")) "a stop line"
            let code, out, err = cli "lr-range-test --task sum-of-squares --dim 10 --optimizer momentum --min-lr 1e-4 --max-lr 10 --steps 60 --format json"
            Expect.equal code 0 err
            use doc = JsonDocument.Parse out
            let root = doc.RootElement
            Expect.isGreaterThan (root.GetProperty("points").GetArrayLength()) 10 "points"
            let lr = root.GetProperty("suggested_lr").GetDouble()
            Expect.isTrue (lr > 1e-4 && lr < 10.0) $"suggested lr {lr} inside the sweep"

        testCase "lr-range-test --plot writes a PNG" <| fun () ->
            let path = Path.Combine(Path.GetTempPath(), $"lr-range-{Guid.NewGuid()}.png")
            try
                let code, _, err = cli $"lr-range-test --task sum-of-squares --dim 5 --optimizer sgd --min-lr 1e-3 --max-lr 10 --steps 40 --plot {path}"
                Expect.equal code 0 err
                let bytes = File.ReadAllBytes path
                Expect.equal bytes[0..3] [| 0x89uy; byte 'P'; byte 'N'; byte 'G' |] "PNG signature"
            finally File.Delete path

        testCase "bad lr-range-test input exits with 2" <| fun () ->
            let cases =
                [ "lr-range-test --task sum-of-squares --optimizer sgd --opt lr=0.1", "sweeps the learning rate"
                  "lr-range-test --task sum-of-squares --optimizer sgd --min-lr 1 --max-lr 0.1", "max_lr"
                  "lr-range-test --task sum-of-squares --optimizer sgd --format xml", "unknown format"
                  "lr-range-test --task sum-of-squares --optimizer nope", "unknown optimizer"
                  "lr-range-test --optimizer sgd", "task" ]
            for args, message in cases do
                let code, _, err = cli args
                Expect.equal code 2 $"exit code of: {args}"
                Expect.stringContains err message $"error of: {args}"

        testCase "list shows the schedules and lookahead" <| fun () ->
            let code, out, _ = cli "list"
            Expect.equal code 0 "exit code"
            for s in [ "Learning-rate schedules"; "one-cycle"; "sgdr"; "warmup-cosine"; "lookahead" ] do
                Expect.stringContains out s $"lists {s}"
    ]

[<Tests>]
let tests =
    testList "schedules" [ scheduleTests; validationTests; wrapperTests; rangeTests; cliTests ]
