/// The learning-rate range test (LrRangeTest.fs; Smith 2017, fastai's lr_find): numpy.gradient's
/// steepest descent, a sweep on sum of squares whose divergence past lr = 1 is known by hand, the
/// NaN stop and the settings' validation. The `lr-range-test` verb is in CliTests.fs.
module Optimizers.Tests.LrRangeTests

open System
open Expecto
open Optimizers
open Optimizers.Handcrafted
open Optimizers.Tasks
open Optimizers.Tests.Check

[<Tests>]
let tests =
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
            closeTo Tol.tight p0.Lr 1e-4 "first lr"
            closeTo Tol.tight p0.Smoothed p0.Loss "bias correction: the first smoothed loss is the loss"
            let q = r.Points[1]
            closeTo Tol.tight q.Smoothed ((0.98 * 0.02 * p0.Loss + 0.02 * q.Loss) / (1.0 - 0.98 ** 2.0)) "second smoothed loss"
            closeTo Tol.tight (r.Points[5].Lr) (1e-4 * 10.0 ** (5.0 * 5.0 / 99.0)) "lr grows exponentially"
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
            throwsNaming [ "steps" ] (fun () -> LrRangeTest.validate { LrRangeTest.defaults with Steps = 1 })
            throwsNaming [ "max_lr" ] (fun () -> LrRangeTest.validate { LrRangeTest.defaults with MinLr = 1.0; MaxLr = 0.5 })
            throwsNaming [ "beta" ] (fun () -> LrRangeTest.validate { LrRangeTest.defaults with Beta = 1.0 })
    ]
