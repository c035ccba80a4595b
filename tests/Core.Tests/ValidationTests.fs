/// Construction-time validation: every optimizer and schedule refuses a bad option when it is built,
/// with an InvalidOptionException naming the optimizer (or schedule) and the argument, and the
/// registry refuses unknown names and options, listing the valid ones. Checks that belong to one
/// module's behaviour (Lookahead's state, the range test's settings, data files) stay with that
/// module's tests; the CLI's exit codes for bad input are in CliTests.fs and BadInputTests.fs.
module Optimizers.Tests.ValidationTests

open Expecto
open Optimizers
open Optimizers.Handcrafted
open Optimizers.Hypergradient
open Optimizers.Tests.Check

/// A bad hyperparameter must raise InvalidOptionException naming the optimizer and the argument.
let private rejectsIn (context: string) (owner: string) (arg: string) (make: unit -> Transformation) =
    testCase $"{owner} rejects a bad {arg}{context}" <| fun () ->
        try
            make () |> ignore
            failtestf "%s accepted a bad %s" owner arg
        with :? InvalidOptionException as e ->
            Expect.stringContains e.Message owner "the message names the optimizer"
            Expect.stringContains e.Message arg "the message names the argument"
            Expect.equal e.ParamName arg "ParamName"

let private rejects owner arg make = rejectsIn "" owner arg make

[<Tests>]
let tests =
    testList "validation" [
        testList "foundation" [
            let sgdBad: (string * SgdOptions) list =
                [ "lr", { Sgd.defaults with Lr = Hyper.Fixed -0.1 }
                  "momentum", { Sgd.defaults with Momentum = Hyper.Fixed -0.5 }
                  "dampening", { Sgd.defaults with Dampening = Hyper.Fixed 1.5 }
                  "weight_decay", { Sgd.defaults with WeightDecay = Hyper.Fixed -1.0 }
                  "momentum", { Sgd.defaults with Nesterov = true }
                  "dampening", { Sgd.nesterovDefaults with Dampening = Hyper.Fixed 0.1 }
                  "lr", { Sgd.defaults with Lr = Hyper.Fixed nan } ]
            for i, (arg, o) in List.indexed sgdBad do
                testCase $"sgd rejects a bad {arg} (case {i})" <| fun () -> throwsNaming [ "sgd"; arg ] (fun () -> Sgd.create o |> ignore)
            let adamBad: (string * AdamOptions) list =
                [ "lr", { Adam.defaults with Lr = Hyper.Fixed -1e-3 }
                  "beta1", { Adam.defaults with Beta1 = Hyper.Fixed 1.0 }
                  "beta2", { Adam.defaults with Beta2 = Hyper.Fixed -0.1 }
                  "eps", { Adam.defaults with Eps = 0.0 }
                  "eps_root", { Adam.defaults with EpsRoot = -1e-8 }
                  "weight_decay", { Adam.defaults with WeightDecay = Hyper.Fixed -0.1 }
                  "beta1", { Adam.defaults with Beta1 = Hyper.Scheduled(fun _ -> 2.0) } ]
            for i, (arg, o) in List.indexed adamBad do
                testCase $"adam rejects a bad {arg} (case {i})" <| fun () -> throwsNaming [ "adam"; arg ] (fun () -> Adam.create o |> ignore)
        ]

        testList "catalog" [
            rejects "adagrad" "lr" (fun () -> Adagrad.create { Adagrad.defaults with Lr = F -1.0 })
            rejects "adagrad" "lr_decay" (fun () -> Adagrad.create { Adagrad.defaults with LrDecay = F -0.1 })
            rejects "adagrad" "weight_decay" (fun () -> Adagrad.create { Adagrad.defaults with WeightDecay = F nan })
            rejects "adagrad" "initial_accumulator_value" (fun () -> Adagrad.create { Adagrad.defaults with InitialAccumulatorValue = -1.0 })
            rejects "adagrad" "eps" (fun () -> Adagrad.create { Adagrad.defaults with Eps = 0.0 })
            rejects "rmsprop" "lr" (fun () -> RmsProp.create { RmsProp.defaults with Lr = F -1e-3 })
            rejects "rmsprop" "alpha" (fun () -> RmsProp.create { RmsProp.defaults with Alpha = F 1.0 })
            rejects "rmsprop" "eps" (fun () -> RmsProp.create { RmsProp.defaults with Eps = -1e-8 })
            rejects "rmsprop" "weight_decay" (fun () -> RmsProp.create { RmsProp.defaults with WeightDecay = F -1.0 })
            rejects "rmsprop" "momentum" (fun () -> RmsProp.create { RmsProp.defaults with Momentum = F -0.9 })
            rejects "adamax" "lr" (fun () -> Adamax.create { Adamax.defaults with Lr = F infinity })
            rejects "adamax" "beta1" (fun () -> Adamax.create { Adamax.defaults with Beta1 = F 1.0 })
            rejects "adamax" "beta2" (fun () -> Adamax.create { Adamax.defaults with Beta2 = F -0.1 })
            rejects "adamax" "eps" (fun () -> Adamax.create { Adamax.defaults with Eps = 0.0 })
            rejects "adamax" "weight_decay" (fun () -> Adamax.create { Adamax.defaults with WeightDecay = F -1.0 })
            rejects "amsgrad" "lr" (fun () -> AmsGrad.create { AmsGrad.defaults with Lr = F -1.0 })
            rejects "amsgrad" "beta1" (fun () -> AmsGrad.create { AmsGrad.defaults with Beta1 = F 1.5 })
            rejects "amsgrad" "beta2" (fun () -> AmsGrad.create { AmsGrad.defaults with Beta2 = F 1.0 })
            rejects "amsgrad" "eps" (fun () -> AmsGrad.create { AmsGrad.defaults with Eps = 0.0 })
            rejects "amsgrad" "eps_root" (fun () -> AmsGrad.create { AmsGrad.defaults with EpsRoot = -1.0 })
            rejects "amsgrad" "weight_decay" (fun () -> AmsGrad.create { AmsGrad.defaults with WeightDecay = F -1.0 })
            rejects "adabound" "lr" (fun () -> AdaBound.create { AdaBound.defaults with Lr = F 0.0 })
            rejects "adabound" "beta1" (fun () -> AdaBound.create { AdaBound.defaults with Beta1 = F 1.0 })
            rejects "adabound" "beta2" (fun () -> AdaBound.create { AdaBound.defaults with Beta2 = F 1.0 })
            rejects "adabound" "final_lr" (fun () -> AdaBound.create { AdaBound.defaults with FinalLr = F -0.1 })
            rejects "adabound" "gamma" (fun () -> AdaBound.create { AdaBound.defaults with Gamma = F 1.0 })
            rejects "adabound" "eps" (fun () -> AdaBound.create { AdaBound.defaults with Eps = 0.0 })
            rejects "adabound" "weight_decay" (fun () -> AdaBound.create { AdaBound.defaults with WeightDecay = F -1.0 })
            rejects "amsbound" "gamma" (fun () -> AdaBound.create { AdaBound.amsboundDefaults with Gamma = F -1e-3 })
            rejects "radam" "lr" (fun () -> RAdam.create { RAdam.defaults with Lr = F -1.0 })
            rejects "radam" "beta1" (fun () -> RAdam.create { RAdam.defaults with Beta1 = F 1.0 })
            rejects "radam" "beta2" (fun () -> RAdam.create { RAdam.defaults with Beta2 = F 1.0 })
            rejects "radam" "eps" (fun () -> RAdam.create { RAdam.defaults with Eps = 0.0 })
            rejects "radam" "weight_decay" (fun () -> RAdam.create { RAdam.defaults with WeightDecay = F -1.0 })
            rejects "radam" "threshold" (fun () -> RAdam.create { RAdam.defaults with Threshold = 3.0 })
            rejects "nadam" "lr" (fun () -> NAdam.create { NAdam.defaults with Lr = F -1.0 })
            rejects "nadam" "beta1" (fun () -> NAdam.create { NAdam.defaults with Beta1 = F 1.0 })
            rejects "nadam" "beta2" (fun () -> NAdam.create { NAdam.defaults with Beta2 = F 1.0 })
            rejects "nadam" "eps" (fun () -> NAdam.create { NAdam.defaults with Eps = 0.0 })
            rejects "nadam" "weight_decay" (fun () -> NAdam.create { NAdam.defaults with WeightDecay = F -1.0 })
            rejects "nadam" "momentum_decay" (fun () -> NAdam.create { NAdam.defaults with MomentumDecay = -4e-3 })
            rejects "adamw" "lr" (fun () -> AdamW.create { AdamW.defaults with Lr = F -1.0 })
            rejects "adamw" "beta1" (fun () -> AdamW.create { AdamW.defaults with Beta1 = F 1.0 })
            rejects "adamw" "beta2" (fun () -> AdamW.create { AdamW.defaults with Beta2 = F 1.0 })
            rejects "adamw" "eps" (fun () -> AdamW.create { AdamW.defaults with Eps = 0.0 })
            rejects "adamw" "eps_root" (fun () -> AdamW.create { AdamW.defaults with EpsRoot = -1.0 })
            rejects "adamw" "weight_decay" (fun () -> AdamW.create { AdamW.defaults with WeightDecay = F -1e-2 })
            rejects "sgdw" "lr" (fun () -> Sgdw.create { Sgdw.defaults with Lr = F -1.0 })
            rejects "sgdw" "weight_decay" (fun () -> Sgdw.create { Sgdw.defaults with WeightDecay = F -1.0 })
            rejects "sgdwm" "momentum" (fun () -> Sgdw.create { Sgdw.momentumDefaults with Momentum = F -0.9 })
            rejects "sgdwm" "dampening" (fun () -> Sgdw.create { Sgdw.momentumDefaults with Dampening = F 2.0 })
            rejectsIn " with nesterov" "sgdwm" "dampening" (fun () -> Sgdw.create { Sgdw.momentumDefaults with Dampening = F 0.5; Nesterov = true })
            rejects "swats" "lr" (fun () -> Swats.create { Swats.defaults with Lr = F -1.0 })
            rejects "swats" "beta1" (fun () -> Swats.create { Swats.defaults with Beta1 = F 1.0 })
            rejects "swats" "beta2" (fun () -> Swats.create { Swats.defaults with Beta2 = F 1.0 })
            rejects "swats" "eps" (fun () -> Swats.create { Swats.defaults with Eps = 0.0 })
            rejects "swats" "switch_eps" (fun () -> Swats.create { Swats.defaults with SwitchEps = -1.0 })
            rejects "swats" "weight_decay" (fun () -> Swats.create { Swats.defaults with WeightDecay = F -1.0 })
            rejects "gradient-noise" "eta" (fun () -> GradientNoise.create { GradientNoise.defaults with Eta = F -0.01 } Sgd.defaults)
            rejects "gradient-noise" "gamma" (fun () -> GradientNoise.create { GradientNoise.defaults with Gamma = F -0.55 } Sgd.defaults)
            rejects "sgd" "lr" (fun () -> GradientNoise.create GradientNoise.defaults { Sgd.defaults with Lr = F -1.0 })
            // Through the registry, as the CLI and configs give them.
            rejectsIn " (registry)" "rmsprop" "alpha" (fun () -> Registry.createOptimizer "rmsprop" [ "alpha", "1.5" ])
            rejectsIn " (registry)" "radam" "threshold" (fun () -> Registry.createOptimizer "radam" [ "threshold", "2" ])
            rejectsIn " (registry)" "amsbound" "final_lr" (fun () -> Registry.createOptimizer "amsbound" [ "final_lr", "-1" ])
            rejectsIn " (registry)" "gradient-noise" "seed" (fun () -> Registry.createOptimizer "gradient-noise" [ "seed", "x" ])
        ]

        testList "hypergradient" [
            testCase "validation names the optimizer and the argument" <| fun () ->
                for o, arg in
                    [ { Hd.defaults with Lr = -1.0 }, "lr"
                      { Hd.defaults with HypergradLr = Hyper.Fixed -1.0 }, "hypergrad_lr"
                      { Hd.defaults with LopBeta2 = 1.0 }, "lop_beta2"
                      { Hd.defaults with LrOptimizer = AdamLop; Guard = Multiplicative }, "lr_guard" ] do
                    let e = Expect.throwsC (fun () -> Hd.create o |> ignore) id
                    Expect.stringContains e.Message arg "names the argument"
                    Expect.stringContains e.Message "_op-" "names the optimizer"
                let e = Expect.throwsC (fun () -> Registry.createOptimizer "hd" [ "adapt", "betta1" ] |> ignore) id
                Expect.stringContains e.Message "no numeric hyperparameter 'betta1'; valid: lr, beta1" "hd lists what can adapt"
        ]

        testList "schedules" [
            testCase "bad arguments name the schedule and the argument" <| fun () ->
                throwsNaming [ "step_size" ] (fun () -> Schedule.step 0.1 0 0.5)
                throwsNaming [ "lr" ] (fun () -> Schedule.exponential -0.1 0.9)
                throwsNaming [ "strictly increasing" ] (fun () -> Schedule.multistep 0.1 [ 5; 3 ] 0.1)
                throwsNaming [ "t_max" ] (fun () -> Schedule.cosine 0.1 0 0.0)
                throwsNaming [ "t_mult" ] (fun () -> Schedule.sgdr 0.1 5 0 0.0)
                throwsNaming [ "gamma" ] (fun () -> Schedule.cyclic (CyclicMode.ExpRange 1.5) 0.01 0.1 2 2)
                throwsNaming [ "pct_start" ] (fun () -> Schedule.oneCycle 0.1 20 1.5 25.0 1e4 false false)
                throwsNaming [ "without steps" ] (fun () -> Schedule.oneCycle 0.1 3 0.3 25.0 1e4 false false)
                throwsNaming [ "start_factor" ] (fun () -> Schedule.warmup 0.1 2.0 5)
                throwsNaming [ "max_lr" ] (fun () -> Schedule.exponentialSweep 1.0 0.1 10)
                throwsNaming [ "boundaries" ] (fun () -> Schedule.join [ Schedule.constant 1.0; Schedule.constant 0.5 ] [])
                throwsNaming [ "strictly increasing" ] (fun () -> Schedule.join [ Schedule.constant 1.0; Schedule.constant 0.5; Schedule.constant 0.1 ] [ 5; 5 ])
                throwsNaming [ "step" ] (fun () -> Schedule.cosine 0.1 10 0.0 -1)

            testCase "the registry says what is missing or unknown" <| fun () ->
                throwsNaming [ "valid: constant" ] (fun () -> Registry.createSchedule "nope" 0.1 None [])
                throwsNaming [ "unknown option 'gama'" ] (fun () -> Registry.createSchedule "step" 0.1 None [ "step_size", "3"; "gama", "0.5" ])
                throwsNaming [ "step_size is required" ] (fun () -> Registry.createSchedule "step" 0.1 None [])
                throwsNaming [ "t_max is required" ] (fun () -> Registry.createSchedule "cosine" 0.1 None [])

            testCase "a hyperparameter that is read as a plain number cannot be a schedule" <| fun () ->
                throwsNaming [ "eps" ] (fun () -> Registry.createOptimizerWith "adam" [] (Map.ofList [ "eps", Hyper.Scheduled(fun _ -> 1e-3) ]))
                throwsNaming [ "unknown option 'beta9'" ] (fun () -> Registry.createOptimizerWith "sgd" [] (Map.ofList [ "beta9", Hyper.Fixed 1.0 ]))
        ]

        testList "registry" [
            testCase "the registry rejects unknown names and options, listing the valid ones" <| fun () ->
                throwsNaming [ "unknown optimizer 'adamz'"; "sgd, momentum, nesterov, adam" ] (fun () -> Registry.createOptimizer "adamz" [] |> ignore)
                throwsNaming [ "unknown option 'betta1'"; "beta1" ] (fun () -> Registry.createOptimizer "adam" [ "betta1", "0.9" ] |> ignore)
                throwsNaming [ "beta1 = 'x' is not a number" ] (fun () -> Registry.createOptimizer "adam" [ "beta1", "x" ] |> ignore)
                throwsNaming [ "nesterov = 'maybe' is not true or false" ] (fun () -> Registry.createOptimizer "sgd" [ "nesterov", "maybe" ] |> ignore)
                throwsNaming [ "unknown task 'rosen'"; "rosenbrock" ] (fun () -> Registry.createTask "rosen" [] |> ignore)
        ]
    ]
