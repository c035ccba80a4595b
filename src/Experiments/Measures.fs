namespace Optimizers.Experiments

open System

/// A measure over seeds: mean, sample standard deviation and standard error of the mean.
type Summary =
    { N: int
      Mean: float
      Std: float
      /// Standard error of the mean, Std / sqrt N (0 for fewer than 2 values).
      Se: float }

/// The paired difference of two optimizers over the seeds both have a value on, oriented so that
/// a positive difference supports the claim (the claimed-better one is lower on a loss, higher on
/// an accuracy).
type Paired =
    { /// Seeds with a value for both.
      N: int
      Mean: float
      /// Standard error of the mean difference.
      Se: float
      /// Seeds on which the difference supports the claim (> 0).
      Holds: int }

/// A claim's verdict from the paired difference (docs/configs.md, "Claims").
[<RequireQualifiedAccess>]
type Verdict =
    | Holds
    | Reversed
    | NotSignificant
    /// No finished run of one of the two optimizers.
    | NotRun

    member v.Text =
        match v with
        | Holds -> "holds"
        | Reversed -> "reversed"
        | NotSignificant -> "not significant"
        | NotRun -> "not run yet"

/// Summaries over seeds and the rule that turns a paired difference into a verdict.
module Measures =

    /// Mean, sample standard deviation and standard error of some values (NaN mean when empty).
    let summary (values: float list) : Summary =
        let n = values.Length
        let mean = if n = 0 then nan else List.average values
        let std = if n < 2 then 0.0 else sqrt ((values |> List.sumBy (fun v -> (v - mean) ** 2.0)) / float (n - 1))
        { N = n; Mean = mean; Std = std; Se = (if n < 2 then 0.0 else std / sqrt (float n)) }

    /// The paired difference of per-seed values (better, worse); `higherIsBetter` for accuracies.
    let paired (higherIsBetter: bool) (pairs: (float * float) list) : Paired =
        let d = pairs |> List.map (fun (b, w) -> if higherIsBetter then b - w else w - b)
        let s = summary d
        { N = s.N; Mean = s.Mean; Se = s.Se; Holds = d |> List.filter (fun x -> x > 0.0) |> List.length }

    /// How many standard errors the mean difference must exceed to count.
    let threshold = 2.0

    /// The rule: with at least 2 paired seeds, a mean difference larger than 2 standard errors
    /// (and not 0) is "holds" when it supports the claim and "reversed" when it goes the other
    /// way; anything else is "not significant".
    let verdict (p: Paired) : Verdict =
        if p.N < 2 || Double.IsNaN p.Mean || Double.IsInfinity p.Mean || p.Mean = 0.0 then Verdict.NotSignificant
        elif abs p.Mean > threshold * p.Se then (if p.Mean > 0.0 then Verdict.Holds else Verdict.Reversed)
        else Verdict.NotSignificant

    /// The rule when on some seeds exactly one side diverged (`betterDiverged` seeds against the
    /// claim, `worseDiverged` for it): a diverged run loses to a finished one, so such a seed
    /// counts like a paired seed that goes its way, without a difference to average. The claim
    /// holds when every such seed is for it and the paired seeds agree (their own verdict holds,
    /// or every one supports the claim); it is reversed likewise the other way; with at least 2
    /// seeds in all. Divergence on both sides, or paired seeds that disagree: not significant.
    /// Without divergence, `verdict`.
    let verdictWithDivergence (p: Paired) (betterDiverged: int) (worseDiverged: int) : Verdict =
        let n = p.N + betterDiverged + worseDiverged
        if betterDiverged = 0 && worseDiverged = 0 then verdict p
        elif n < 2 || (betterDiverged > 0 && worseDiverged > 0) then Verdict.NotSignificant
        elif worseDiverged > 0 then (if verdict p = Verdict.Holds || p.Holds = p.N then Verdict.Holds else Verdict.NotSignificant)
        else (if verdict p = Verdict.Reversed || p.Holds = 0 then Verdict.Reversed else Verdict.NotSignificant)
