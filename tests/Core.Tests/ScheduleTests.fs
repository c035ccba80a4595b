/// Learning-rate schedules (Schedule.fs, and the registry's schedules): values against PyTorch
/// 1.13 (tests/reference/schedules.py writes tests/reference/schedules.csv) and worked out by hand,
/// and a scheduled hyperparameter reaching the optimizer. Bad schedule arguments are in
/// ValidationTests.fs, `trace --schedule` in CliTests.fs.
module Optimizers.Tests.ScheduleTests

open System
open System.IO
open Expecto
open Optimizers
open Optimizers.Tests.Check

/// The PyTorch reference: case name -> values at steps 0, 1, ...
let private reference : Map<string, float[]> =
    let path = Path.Combine(AppContext.BaseDirectory, "reference", "schedules.csv")
    File.ReadAllLines path
    |> Array.filter (fun l -> l <> "" && not (l.StartsWith "#") && not (l.StartsWith "case,"))
    |> Array.map (fun l ->
        let f = l.Split ','
        f[0], int f[1], parseFloat f[2])
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

let private valueTests =
    testList "values" [
        yield testCase "every case of the PyTorch reference has a schedule here" <| fun () ->
            Expect.equal (reference.Keys |> Set.ofSeq) (ours |> List.map fst |> Set.ofList) "the same cases"

        for name, s in ours ->
            testCase $"matches PyTorch: {name}" <| fun () ->
                reference[name] |> Array.iteri (fun t v -> closeTo Tol.tight (s t) v $"{name} at step {t}")

        for case, name, options in viaRegistry ->
            testCase $"registry builds {name} as PyTorch: {case}" <| fun () ->
                // one-cycle's total_steps defaults to the run's length (20 here when not given).
                let s = Registry.createSchedule name 0.1 (Some 20) options
                reference[case] |> Array.iteri (fun t v -> closeTo Tol.tight (s t) v $"{case} at step {t}")

        yield testCase "constant, linear, sweep and scale by hand" <| fun () ->
            let c = Schedule.constant 0.3
            for t in [ 0; 1; 1000 ] do closeTo Tol.tight (c t) 0.3 "constant"
            let l = Schedule.linear 0.0 1.0 4
            List.iter2 (fun t v -> closeTo Tol.tight (l t) v $"linear at {t}") [ 0; 1; 2; 4; 9 ] [ 0.0; 0.25; 0.5; 1.0; 1.0 ]
            // 1e-4 * (1 / 1e-4)^(t / 4): 1e-4, 1e-3, 1e-2, 1e-1, 1, then constant
            let e = Schedule.exponentialSweep 1e-4 1.0 5
            List.iter2 (fun t v -> closeTo Tol.tight (e t) v $"sweep at {t}") [ 0; 1; 2; 3; 4; 10 ] [ 1e-4; 1e-3; 1e-2; 1e-1; 1.0; 1.0 ]
            closeTo Tol.tight (Schedule.scale 2.0 c 5) 0.6 "scale"

        yield testCase "polynomial with an end value (optax) by hand" <| fun () ->
            // (1 - 0.1) * (1 - t / 10) + 0.1: t = 5 -> 0.55; t >= 10 -> 0.1
            let p = Schedule.polynomial 1.0 0.1 1.0 10
            List.iter2 (fun t v -> closeTo Tol.tight (p t) v $"polynomial at {t}") [ 0; 5; 10; 20 ] [ 1.0; 0.55; 0.1; 0.1 ]

        yield testCase "one-cycle stays at its minimum after total_steps - 1" <| fun () ->
            let s = Schedule.oneCycle 0.1 20 0.3 25.0 1e4 false false
            closeTo Tol.tight (s 19) 4e-7 "step 19"
            closeTo Tol.tight (s 50) 4e-7 "step 50"

        yield testCase "join: warm-up then cosine, each from its own step 0 (by hand)" <| fun () ->
            // t < 4: t / 4;  t >= 4: (1 + cos(pi (t - 4) / 10)) / 2
            let j = Schedule.join [ Schedule.warmup 1.0 0.0 4; Schedule.cosine 1.0 10 0.0 ] [ 4 ]
            List.iter2 (fun t v -> closeTo Tol.tight (j t) v $"join at {t}")
                [ 0; 2; 3; 4; 9; 14 ] [ 0.0; 0.5; 0.75; 1.0; 0.5; 0.0 ]
            // three parts: 1 on [0, 2), 0.5 on [2, 5), 0.25 from 5
            let k = Schedule.join [ Schedule.constant 1.0; Schedule.constant 0.5; Schedule.constant 0.25 ] [ 2; 5 ]
            List.iter2 (fun t v -> closeTo Tol.tight (k t) v $"join3 at {t}") [ 0; 1; 2; 4; 5; 100 ] [ 1.0; 1.0; 0.5; 0.5; 0.25; 0.25 ]

        yield testCase "registry warmup-cosine is the join, with t_max defaulting to the rest of the run" <| fun () ->
            let s = Registry.createSchedule "warmup-cosine" 1.0 (Some 14) [ "warmup_steps", "4" ]
            List.iter2 (fun t v -> closeTo Tol.tight (s t) v $"warmup-cosine at {t}") [ 0; 2; 4; 9; 14 ] [ 0.0; 0.5; 1.0; 0.5; 0.0 ]

        yield testCase "registry cyclic base_lr defaults to lr / 4" <| fun () ->
            let s = Registry.createSchedule "triangular" 0.4 None [ "step_size_up", "2" ]
            closeTo Tol.tight (s 0) 0.1 "base"
            closeTo Tol.tight (s 2) 0.4 "peak"
    ]

[<Tests>]
let tests =
    testList "schedules" [
        valueTests
        testCase "a scheduled lr reaches the optimizer (SGD by hand)" <| fun () ->
            // x1 = 1 - 0.5 * 1 = 0.5; x2 = 0.5 - 0.25 * 0.5 = 0.375; x3 = 0.375 - 0.125 * 0.375
            let sgd = Registry.createOptimizerWith "sgd" [] (Map.ofList [ "lr", Hyper.Scheduled(Schedule.exponential 0.5 0.5) ])
            let traj = trajectory sgd identityGrad (tree1 [ 1.0 ]) 3
            closeRel 1e-15 (Array.concat traj) [| 0.5; 0.375; 0.328125 |] "scheduled sgd"
    ]
