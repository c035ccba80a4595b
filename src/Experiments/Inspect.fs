namespace Optimizers.Experiments

open System
open System.IO
open Optimizers
open Optimizers.Learned

/// `inspect`: what trained optimizers learned, printed in the thesis's layouts (seed 004):
///   msadam-la files: the weight of each Adam timescale, one column per file (Tables 4.2, 4.3);
///   ktimesteps files with k = 5: the step for each gradient history of Table 3.1, next to the
///     thesis's value, one column per file;
///   any other file: its kind, options, meta-parameter shapes and recorded facts.
module Inspect =

    type Settings =
        { Files: string list
          Format: string }

    let formats = [ "table"; "csv" ]

    /// Rows of cells: CSV, or columns padded to their widest cell.
    let private write (format: string) (out: TextWriter) (header: string list) (rows: string list list) =
        if format = "csv" then
            let quote (c: string) = if c.Contains ',' || c.Contains '"' then "\"" + c.Replace("\"", "\"\"") + "\"" else c
            for r in header :: rows do out.WriteLine(String.Join(",", r |> List.map quote))
        else
            let all = header :: rows
            let widths = header |> List.mapi (fun i _ -> all |> List.map (fun r -> (List.item i r).Length) |> List.max)
            for r in all do out.WriteLine(String.Join("  ", List.mapi (fun i (c: string) -> c.PadRight(widths[i])) r).TrimEnd())

    let private label (files: (string * TrainedOptimizer) list) (file: string, t: TrainedOptimizer) =
        let byVariant = "LA_" + (t.Options |> List.tryFind (fun (n, _) -> n = "variant") |> Option.map snd |> Option.defaultValue "b")
        let labels = files |> List.map (fun (_, t) -> "LA_" + (t.Options |> List.tryFind (fun (n, _) -> n = "variant") |> Option.map snd |> Option.defaultValue "b"))
        if t.Kind = "msadam-la" && (labels |> List.filter ((=) byVariant)).Length = 1 then byVariant else Path.GetFileName file

    let run (s: Settings) (out: TextWriter) =
        let format = s.Format.Trim().ToLowerInvariant()
        if not (List.contains format formats) then Tensors.invalidArg "format" $"unknown format '{s.Format}'; valid: {Tensors.commas formats}"
        if s.Files.IsEmpty then Tensors.invalidArg "file" "no file: pass --file PATH (repeatable)"
        let files = s.Files |> List.map (fun f -> f, LearnedOptimizer.load f)
        let kinds = files |> List.map (fun (_, t) -> t.Kind) |> List.distinct
        let values (t: TrainedOptimizer) = LearnedOptimizer.values (Registry.findLearnedKind t.Kind) t.Options
        match kinds with
        | [ "msadam-la" ] ->
            let tables = files |> List.map (fun (_, t) -> MultiscaleAdam.weights (LearnedRegistration.read MultiscaleAdam.laRegistration (values t)) t.Theta)
            let adams = tables.Head |> List.map (fun r -> r.Adam, r.Beta1, r.Beta2)
            if tables |> List.exists (fun ws -> (ws |> List.map (fun r -> r.Adam, r.Beta1, r.Beta2)) <> adams) then
                Tensors.invalidArg "file" "the files use different timescales; inspect them one at a time"
            let header = [ "adam"; "beta1"; "beta2" ] @ (files |> List.map (label files))
            let rows =
                adams |> List.mapi (fun i (n, b1, b2) ->
                    [ n; Output.num b1; Output.num b2 ] @ (tables |> List.map (fun ws -> ws[i].Weight.ToString("F5", Globalization.CultureInfo.InvariantCulture))))
            write format out header rows
        | [ "ktimesteps" ] when files |> List.forall (fun (_, t) -> (LearnedRegistration.read NormalizedInputs.kTimestepsRegistration (values t)).K = 5) ->
            let rows = NormalizedInputs.table31 |> List.map fst
            let steps = files |> List.map (fun (_, t) -> NormalizedInputs.kTimestepsSteps (LearnedRegistration.read NormalizedInputs.kTimestepsRegistration (values t)) t.Theta rows)
            let header = [ "g(t-4)"; "g(t-3)"; "g(t-2)"; "g(t-1)"; "g(t)"; "thesis" ] @ (files |> List.map (fst >> Path.GetFileName))
            let body =
                NormalizedInputs.table31 |> List.mapi (fun i (h, thesis) ->
                    (h |> Array.map Output.num |> List.ofArray) @ [ Output.num thesis ] @ (steps |> List.map (fun st -> st[i].ToString("F8", Globalization.CultureInfo.InvariantCulture))))
            write format out header body
        | _ ->
            let header = [ "file"; "kind"; "options"; "meta-parameters"; "facts" ]
            let rows =
                [ for f, t in files ->
                    [ Path.GetFileName f
                      t.Kind
                      String.Join(" ", t.Options |> List.map (fun (n, v) -> $"{n}={v}"))
                      String.Join(" ", Array.map2 (fun (n: string) (x: Tensor) -> n + "[" + String.Join("x", x.shape) + "]") t.Theta.Names t.Theta.Values)
                      String.Join(" ", t.Info |> Map.toList |> List.filter (fun (n, _) -> n <> "meta_losses") |> List.map (fun (n, v) -> $"{n}={v}")) ] ]
            write format out header rows
