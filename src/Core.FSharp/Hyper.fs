namespace Optimizers

open System
open TorchSharp

/// The value of a hyperparameter at a 0-based step index (the number of updates made before).
type Schedule = int -> float

/// A hyperparameter: a plain number, a schedule over steps, or a tensor (0-d) that may require
/// grad. The update code of every optimizer serves all three, so any hyperparameter can be
/// scheduled or differentiated (hypergradients, meta-learning) without another implementation.
[<RequireQualifiedAccess>]
type Hyper =
    | Fixed of float
    | Scheduled of Schedule
    | Learnable of Tensor

    override h.ToString() =
        match h with
        | Fixed v -> string v
        | Scheduled _ -> "<schedule>"
        | Learnable t -> $"<tensor {t.ToDouble()}>"

/// A hyperparameter's value at one step: a number, or a 0-d tensor that carries gradients.
/// Numbers stay numbers (no tensor is made for them); any arithmetic with a tensor gives a tensor.
/// Tensor-with-number arithmetic goes through Tensors.withScalar (no finalizer race on Scalars).
[<RequireQualifiedAccess>]
type HValue =
    | Num of float
    | Ten of Tensor

    static member (+)(a: HValue, b: HValue) =
        match a, b with
        | Num x, Num y -> Num(x + y)
        | Num x, Ten y | Ten y, Num x -> Ten(Tensors.withScalar (fun t s -> t.add s) y x)
        | Ten x, Ten y -> Ten(Tensors.add x y)

    static member (-)(a: HValue, b: HValue) =
        match a, b with
        | Num x, Num y -> Num(x - y)
        | Num x, Ten y -> Ten(x - y)
        | Ten x, Num y -> Ten(Tensors.withScalar (fun t s -> t.sub s) x y)
        | Ten x, Ten y -> Ten(Tensors.sub x y)

    static member (*)(a: HValue, b: HValue) =
        match a, b with
        | Num x, Num y -> Num(x * y)
        | Num x, Ten y | Ten y, Num x -> Ten(Tensors.mulNum y x)
        | Ten x, Ten y -> Ten(x * y)

    static member (/)(a: HValue, b: HValue) =
        match a, b with
        | Num x, Num y -> Num(x / y)
        | Num x, Ten y -> Ten(x / y)
        | Ten x, Num y -> Ten(Tensors.divNum x y)
        | Ten x, Ten y -> Ten(x / y)

    /// Scale a tensor by the value.
    static member (*)(a: HValue, x: Tensor) : Tensor =
        match a with
        | Num v -> Tensors.mulNum x v
        | Ten v -> x * v

    static member (*)(x: Tensor, a: HValue) : Tensor = a * x

    /// Divide a tensor by the value.
    static member (/)(x: Tensor, a: HValue) : Tensor =
        match a with
        | Num v -> Tensors.divNum x v
        | Ten v -> x / v

    static member (-)(a: float, b: HValue) = HValue.Num a - b

module HValue =

    /// value ** n for an integer power (bias corrections: beta ** t).
    let pow (n: int) (h: HValue) : HValue =
        match h with
        | HValue.Num v -> HValue.Num(Math.Pow(v, float n))
        | HValue.Ten t -> HValue.Ten(Tensors.withScalar (fun x s -> x.pow s) t (float n))

    let sqrt (h: HValue) : HValue =
        match h with
        | HValue.Num v -> HValue.Num(Math.Sqrt v)
        | HValue.Ten t -> HValue.Ten(t.sqrt())

    /// The value as a float (a tensor's current value, detached).
    let toFloat (h: HValue) : float =
        match h with
        | HValue.Num v -> v
        | HValue.Ten t -> t.ToDouble()

    /// True when the value is exactly zero and not a tensor (a branch can be skipped safely).
    let isZero (h: HValue) = match h with HValue.Num 0.0 -> true | _ -> false

module Hyper =

    /// The value at a 0-based step.
    let at (step: int) (h: Hyper) : HValue =
        match h with
        | Hyper.Fixed v -> HValue.Num v
        | Hyper.Scheduled f -> HValue.Num(f step)
        | Hyper.Learnable t -> HValue.Ten t

    /// True for a plain zero (a term with this factor can be left out exactly).
    let isZero (h: Hyper) = match h with Hyper.Fixed 0.0 -> true | _ -> false

    /// The value a check sees: the number, a schedule's first value, a tensor's current value.
    let private probe (h: Hyper) =
        match h with
        | Hyper.Fixed v -> v
        | Hyper.Scheduled f -> f 0
        | Hyper.Learnable t ->
            if t.numel() <> 1L then
                Tensors.invalidArg "hyperparameter" $"a tensor hyperparameter must have one element, got shape {t.shape}"
            t.ToDouble()

    /// Construction-time validation: fail with a message naming the optimizer, the argument,
    /// the bad value and the valid range.
    let check (owner: string) (name: string) (isValid: float -> bool) (range: string) (h: Hyper) =
        let v = probe h
        if Double.IsNaN v || not (isValid v) then
            Tensors.invalidArg name $"{owner}: {name} = {v} is invalid; it must be {range}"

    let checkNonNegative owner name h = check owner name (fun v -> v >= 0.0 && not (Double.IsInfinity v)) "a finite number >= 0" h
    let checkPositive owner name h = check owner name (fun v -> v > 0.0 && not (Double.IsInfinity v)) "a finite number > 0" h
    /// A decay rate: 0 <= v < 1.
    let checkDecay owner name h = check owner name (fun v -> v >= 0.0 && v < 1.0) "in [0, 1)" h
    let checkUnitClosed owner name h = check owner name (fun v -> v >= 0.0 && v <= 1.0) "in [0, 1]" h

    /// Validate a plain float option the same way.
    let checkFloat owner name isValid range (v: float) = check owner name isValid range (Hyper.Fixed v)
