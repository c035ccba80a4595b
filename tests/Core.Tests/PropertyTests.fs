/// Laws every optimizer of the foundation obeys, checked by FsCheck on random inputs.
module Optimizers.Tests.PropertyTests

open Expecto
open FsCheck
open FsCheck.FSharp
open Optimizers
open Optimizers.Handcrafted
open Optimizers.Transforms
open Optimizers.Tests.Check

/// A short sequence of gradients (steps x dim) and a start point of the same dim.
type Problem = { Grads: float[][]; Start: float[] }

/// A positive gradient scale.
type Scale = Scale of float

let small = Gen.choose (-1000, 1000) |> Gen.map (fun i -> float i / 100.0)

type Arbs =
    static member Problem() : Arbitrary<Problem> =
        gen {
            let! dim = Gen.choose (1, 4)
            let! steps = Gen.choose (1, 6)
            let! grads = Gen.arrayOfLength steps (Gen.arrayOfLength dim small)
            let! start = Gen.arrayOfLength dim small
            return { Grads = grads; Start = start }
        }
        |> Arb.fromGen

    static member Scale() : Arbitrary<Scale> = Gen.elements [ 1e-3; 0.1; 0.5; 3.0; 1e3 ] |> Gen.map Scale |> Arb.fromGen

let config = { FsCheckConfig.defaultConfig with maxTest = 60; arbitrary = [ typeof<Arbs> ] }

let treeOf (xs: float[]) = tree1 (List.ofArray xs)

/// The updates an optimizer makes for a fixed sequence of gradients (params stay at the start).
let updates (opt: Transformation) (pr: Problem) (scale: float) : float[] list =
    let p = treeOf pr.Start
    let mutable s = opt.Init p
    [ for g in pr.Grads do
        let u, s' = opt.Update (treeOf (g |> Array.map (fun x -> scale * x))) s p
        s <- s'
        yield floats u ]

/// The optimizers of the foundation with non-default settings, for laws that hold for all.
let all : (string * Transformation) list =
    [ "sgd", Sgd.create { Sgd.defaults with Lr = Hyper.Fixed 0.1; WeightDecay = Hyper.Fixed 0.01 }
      "momentum", Sgd.create { Sgd.momentumDefaults with Lr = Hyper.Fixed 0.1; Dampening = Hyper.Fixed 0.3 }
      "nesterov", Sgd.create { Sgd.nesterovDefaults with Lr = Hyper.Fixed 0.1 }
      "adam", Adam.create { Adam.defaults with Lr = Hyper.Fixed 0.1; WeightDecay = Hyper.Fixed 0.01 } ]

[<Tests>]
let tests =
    testList "properties" [
        testPropertyWithConfig config "adam's updates are invariant to scaling the gradient (eps -> 0)" <| fun (pr: Problem) (Scale c) ->
            let adam = Adam.create { Adam.defaults with Lr = Hyper.Fixed 0.1; Eps = 1e-300 }
            List.iter2 (fun a b -> closeRel 1e-12 a b $"scaled by {c}") (updates adam pr c) (updates adam pr 1.0)

        testPropertyWithConfig config "sgd's updates scale with the gradient" <| fun (pr: Problem) (Scale c) ->
            let sgd = Sgd.create { Sgd.momentumDefaults with Lr = Hyper.Fixed 0.1 }
            let unit = updates sgd pr 1.0 |> List.map (Array.map (fun x -> c * x))
            List.iter2 (fun a b -> closeRel 1e-12 a b $"scaled by {c}") (updates sgd pr c) unit

        testPropertyWithConfig config "chain is associative: (a, b), c = a, (b, c) = a, b, c" <| fun (pr: Problem) ->
            // three parts with state and with different effects, so an order or nesting mistake shows
            let a = Clip.byValue (Hyper.Fixed 5.0)
            let b = Moments.adam (Hyper.Fixed 0.9) (Hyper.Fixed 0.999) 1e-8 0.0
            let c = ScaleBy.momentum (Hyper.Fixed 0.5) (Hyper.Fixed 0.0) false
            let flat = updates (Combine.chain [ a; b; c ]) pr 3.0
            Expect.equal (updates (Combine.chain [ Combine.chain [ a; b ]; c ]) pr 3.0) flat "left-nested"
            Expect.equal (updates (Combine.chain [ a; Combine.chain [ b; c ] ]) pr 3.0) flat "right-nested"

        for name, opt in all do
            testPropertyWithConfig config $"{name}: update never changes its inputs" <| fun (pr: Problem) ->
                let p = treeOf pr.Start
                let g = treeOf pr.Grads[0]
                let _, s1 = opt.Update g (opt.Init p) p
                let before = floats g, floats p, State.tensors s1 |> List.map (fun t -> floats (Tree.single "t" t))
                for grad in pr.Grads do opt.Update (treeOf grad) s1 p |> ignore
                let after = floats g, floats p, State.tensors s1 |> List.map (fun t -> floats (Tree.single "t" t))
                Expect.equal after before "gradients, params and state after updates"

            testPropertyWithConfig config $"{name}: chained with the identity on either side it is unchanged" <| fun (pr: Problem) ->
                let expected = updates opt pr 1.0
                Expect.equal (updates (Combine.chain [ Transform.identity; opt ]) pr 1.0) expected "identity first"
                Expect.equal (updates (Combine.chain [ opt; Transform.identity ]) pr 1.0) expected "identity last"

            testPropertyWithConfig config $"{name}: the same inputs give the same outputs" <| fun (pr: Problem) ->
                Expect.equal (updates opt pr 1.0) (updates opt pr 1.0) "two runs"
    ]
