namespace Optimizers.Experiments

open System

/// One side of a claim as measured: the optimizer label, the learning rate used (None: its
/// default, or every rate for a sensitivity claim) and its per-seed values.
type ClaimSide =
    { Label: string
      Lr: float option
      /// (seed, value); seeds without a value are absent.
      Values: (int * float) list
      Summary: Summary }

/// A claim of a config with what our runs say about it.
type ClaimResult =
    { Claim: ClaimSpec
      Better: ClaimSide
      Worse: ClaimSide
      /// Seeds of the grid.
      Seeds: int
      Paired: Paired
      /// Seeds on which the claimed-better side diverged and the other has a value (they count
      /// against the claim), and the other way round (for it).
      BetterDiverged: int
      WorseDiverged: int
      Verdict: Verdict }

/// Where a claim's numbers come from (the report reads them from the results database).
type ClaimSource =
    { Seeds: int list
      /// The learning rates of an optimizer label.
      Lrs: string -> float option list
      /// A run's value of a measure: task label, optimizer label, learning rate, seed. None when
      /// the run is not finished or has no value.
      Value: string -> string -> float option -> int -> Measure -> float option
      /// Whether the run diverged: task label, optimizer label, learning rate, seed.
      Diverged: string -> string -> float option -> int -> bool
      /// Whether any run of (task label, optimizer label) is finished.
      AnyFinished: string -> string -> bool
      /// The best learning rate of (task, optimizer) for a measure.
      BestLr: string -> string -> Measure -> float option
      HigherIsBetter: Measure -> bool }

/// Verdicts for a config's claims from paired differences over seeds (Measures.verdict).
module Claims =

    let private side (src: ClaimSource) (c: ClaimSpec) (label: string) (lr: float option) : ClaimSide =
        let values =
            if c.Sensitivity then
                // Per seed, the range of the measure over every learning rate (all must have a value).
                [ for seed in src.Seeds do
                    let vs = src.Lrs label |> List.map (fun l -> src.Value c.Task label l seed c.Measure)
                    if not vs.IsEmpty && vs |> List.forall Option.isSome then
                        let xs = vs |> List.choose id
                        yield seed, List.max xs - List.min xs ]
            else
                [ for seed in src.Seeds do
                    match src.Value c.Task label lr seed c.Measure with
                    | Some v when not (Double.IsNaN v) -> yield seed, v
                    | _ -> () ]
        { Label = label; Lr = (if c.Sensitivity then None else lr); Values = values; Summary = Measures.summary (values |> List.map snd) }

    /// The learning rate of one side: the claim's, else the entry's only one, else its best.
    let private lrOf (src: ClaimSource) (c: ClaimSpec) (label: string) (given: float option) =
        match given, src.Lrs label with
        | Some v, _ -> Some v
        | None, [ only ] -> only
        | None, _ -> src.BestLr c.Task label c.Measure

    /// Evaluate one claim.
    let evaluate (src: ClaimSource) (c: ClaimSpec) : ClaimResult =
        let better = side src c c.Better (lrOf src c c.Better c.BetterLr)
        let worse = side src c c.Worse (lrOf src c c.Worse c.WorseLr)
        let w = Map.ofList worse.Values
        let pairs = better.Values |> List.choose (fun (s, b) -> w.TryFind s |> Option.map (fun x -> b, x))
        // Sensitivity: a smaller range is better, whatever the measure.
        let higher = not c.Sensitivity && src.HigherIsBetter c.Measure
        let p = Measures.paired higher pairs
        // A run that diverged loses to one that finished with a value (not for a sensitivity
        // claim, whose per-seed range needs every rate's value).
        let lostBy (side: ClaimSide) (other: ClaimSide) =
            if c.Sensitivity then 0
            else
                let valued = other.Values |> List.map fst |> Set.ofList
                src.Seeds |> List.filter (fun s -> valued.Contains s && src.Diverged c.Task side.Label side.Lr s) |> List.length
        let betterDiverged, worseDiverged = lostBy better worse, lostBy worse better
        let verdict =
            if not (src.AnyFinished c.Task c.Better && src.AnyFinished c.Task c.Worse) then Verdict.NotRun
            else Measures.verdictWithDivergence p betterDiverged worseDiverged
        { Claim = c; Better = better; Worse = worse; Seeds = src.Seeds.Length; Paired = p
          BetterDiverged = betterDiverged; WorseDiverged = worseDiverged; Verdict = verdict }
