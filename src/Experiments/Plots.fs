namespace Optimizers.Experiments

open System
open System.Globalization

/// One curve of a plot: the mean over seeds at each step and a band (min to max over seeds).
type Band =
    { Label: string
      Steps: float[]
      Mean: float[]
      Low: float[]
      High: float[] }

/// The report's plots, drawn with ScottPlot to PNG files.
module Plots =

    let private palette = ScottPlot.Palettes.Category10()

    let private power (v: float) = (10.0 ** v).ToString("G3", CultureInfo.InvariantCulture)

    /// Mean and min-max band over seeds, step by step. Each series is one seed's (step, value)
    /// points; a step counts the seeds that reached it (a diverged seed stops early). With
    /// `logScale` the mean is taken of log10 values (a geometric mean) and values are in log10.
    let band (label: string) (logScale: bool) (series: (int * float)[] list) : Band option =
        let finite = series |> List.map (Array.filter (fun (_, v) -> not (Double.IsNaN v || Double.IsInfinity v))) |> List.filter (fun s -> s.Length > 0)
        if finite.IsEmpty then None
        else
            let tiny =
                finite |> Seq.concat |> Seq.map snd |> Seq.filter (fun v -> v > 0.0) |> Seq.fold min Double.MaxValue
            let tr (v: float) = if logScale then Math.Log10(if v > 0.0 then v else tiny) else v
            let byStep =
                finite |> Seq.concat |> Seq.groupBy fst |> Seq.sortBy fst
                |> Seq.map (fun (k, vs) -> let ys = vs |> Seq.map (snd >> tr) |> Array.ofSeq in float k, Array.average ys, Array.min ys, Array.max ys)
                |> Array.ofSeq
            Some
                { Label = label
                  Steps = byStep |> Array.map (fun (k, _, _, _) -> k)
                  Mean = byStep |> Array.map (fun (_, m, _, _) -> m)
                  Low = byStep |> Array.map (fun (_, _, l, _) -> l)
                  High = byStep |> Array.map (fun (_, _, _, h) -> h) }

    /// True when every value is positive (a log scale is possible); zeros alone are tolerated.
    let canLog (series: (int * float)[] list) =
        let vs = series |> Seq.concat |> Seq.map snd |> Seq.filter (fun v -> not (Double.IsNaN v || Double.IsInfinity v)) |> Array.ofSeq
        vs.Length > 0 && vs |> Array.forall (fun v -> v >= 0.0) && vs |> Array.exists (fun v -> v > 0.0)

    /// Curves with seed bands against the step; `logScale` when the values are log10 (labels
    /// then show powers of ten).
    let curves (path: string) (title: string) (yLabel: string) (logScale: bool) (legend: ScottPlot.Alignment) (bands: Band list) =
        use plt = new ScottPlot.Plot()
        for i, b in List.indexed bands do
            let color = palette.GetColor i
            if b.Steps.Length > 1 then
                let fill = plt.Add.FillY(b.Steps, b.Low, b.High)
                fill.FillColor <- color.WithAlpha 0.2
                fill.LineWidth <- 0.0f
            let line = plt.Add.ScatterLine(b.Steps, b.Mean)
            line.Color <- color
            line.LineWidth <- 2.0f
            line.LegendText <- b.Label
            if b.Steps.Length = 1 then line.MarkerSize <- 6.0f
        if logScale then
            let ticks = ScottPlot.TickGenerators.NumericAutomatic()
            ticks.LabelFormatter <- Func<float, string>(power)
            plt.Axes.Left.TickGenerator <- ticks
        plt.XLabel "step"
        plt.YLabel(if logScale then yLabel + " (log scale)" else yLabel)
        plt.Title(title + (if logScale then " (line: geometric mean over seeds; band: min to max)" else " (line: mean over seeds; band: min to max)"))
        plt.ShowLegend(legend) |> ignore
        plt.SavePng(path, 900, 560) |> ignore

    /// A heat map of `values` (rows x columns; NaN where nothing finished), each column divided by
    /// its infinity norm (its largest absolute value) as in the thesis (seed 004, figures 4.5-4.8):
    /// the best (lowest) cell of a column is the darkest, worse ones lighter. Cells show the raw
    /// value and `notes` (e.g. diverged seeds).
    let heatmap (path: string) (title: string) (rows: string list) (columns: string list) (values: float[,]) (notes: string[,]) =
        let nr, nc = values.GetLength 0, values.GetLength 1
        let normalised = Array2D.init nr nc (fun i j ->
            let col = [| for r in 0 .. nr - 1 do let v = values[r, j] in if not (Double.IsNaN v) then yield abs v |]
            let norm = if col.Length = 0 then nan else Array.max col
            if Double.IsNaN values[i, j] || Double.IsNaN norm then nan
            elif norm = 0.0 then 0.0
            else values[i, j] / norm)
        use plt = new ScottPlot.Plot()
        let colormap = ScottPlot.Colormaps.Grayscale()
        // Cell (i, j) is the unit square centred at x = j, y = nr - 1 - i: the first row on top.
        for i in 0 .. nr - 1 do
            for j in 0 .. nc - 1 do
                let n = normalised[i, j]
                let y = float (nr - 1 - i)
                let cellRect = plt.Add.Rectangle(float j - 0.5, float j + 0.5, y - 0.5, y + 0.5)
                let v = values[i, j]
                // A cell without a value is "diverged" (red) unless its note says why else (grey).
                let explained = Double.IsNaN v && notes[i, j] <> ""
                cellRect.FillColor <-
                    (if explained then ScottPlot.Colors.LightGray elif Double.IsNaN n then ScottPlot.Colors.IndianRed else colormap.GetColor n)
                cellRect.LineColor <- ScottPlot.Colors.White
                cellRect.LineWidth <- 1.0f
                let text =
                    if explained then notes[i, j].Trim()
                    else (if Double.IsNaN v then "diverged" else v.ToString("G3", CultureInfo.InvariantCulture)) + notes[i, j]
                let t = plt.Add.Text(text, float j, y)
                t.Alignment <- ScottPlot.Alignment.MiddleCenter
                t.LabelFontSize <- 13.0f
                t.LabelFontColor <- (if Double.IsNaN n || n > 0.55 then ScottPlot.Colors.Black else ScottPlot.Colors.White)
        // An invisible heat map of the same values carries the colour bar.
        let hm = plt.Add.Heatmap(normalised)
        hm.Colormap <- colormap
        hm.ManualRange <- Nullable(ScottPlot.Range(0.0, 1.0))
        hm.IsVisible <- false
        plt.Axes.Bottom.SetTicks([| for j in 0 .. nc - 1 -> float j |], Array.ofList columns)
        plt.Axes.Left.SetTicks([| for i in 0 .. nr - 1 -> float (nr - 1 - i) |], Array.ofList rows)
        plt.Axes.SetLimits(-0.5, float nc - 0.5, -0.5, float nr - 0.5)
        plt.Add.ColorBar(hm, ScottPlot.Edge.Right) |> ignore
        plt.XLabel "learning rate"
        plt.YLabel "optimizer"
        plt.Title title
        plt.SavePng(path, max 640 (160 + 110 * nc), max 360 (160 + 60 * nr)) |> ignore
