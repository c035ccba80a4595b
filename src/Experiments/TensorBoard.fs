namespace Optimizers.Experiments

open System
open System.IO
open System.Text
open TorchSharp
open Optimizers

/// TensorBoard event files for the verbs that train (`run`, `compare`, `sweep`, `evaluate`,
/// `meta-train` with `--tensorboard DIR`), written by TorchSharp's own
/// `torch.utils.tensorboard.SummaryWriter`: one folder per run under DIR, scalars per step
/// (`loss`; `lr`, the rate in force from the schedule or the options; `learned_lr`, the rate a
/// hypergradient optimizer has learned; `meta_loss` and `validation_loss` per meta-training
/// episode) and the run's hyperparameters as a Markdown table (text tag `hparams`, stored as `hparams/text_summary` as PyTorch does, step 0). `tensorboard --logdir DIR`
/// shows them.
module TensorBoard =

    type Writer = Modules.SummaryWriter

    /// A folder name from any label.
    let safeName (s: string) =
        String(s |> Seq.map (fun c -> if Char.IsLetterOrDigit c || c = '-' || c = '_' || c = '.' || c = '=' then c else '_') |> Array.ofSeq)

    /// A writer for the run folder DIR/part/part/...
    let create (dir: string) (parts: string list) : Writer =
        let path = Path.Combine(Array.ofList (dir :: List.map safeName parts))
        Directory.CreateDirectory path |> ignore
        torch.utils.tensorboard.SummaryWriter(path)

    /// The hyperparameters as a Markdown table (TensorBoard's text plugin renders it).
    let hparams (w: Writer) (pairs: (string * string) list) =
        let b = StringBuilder("| hyperparameter | value |\n| --- | --- |\n")
        for k, v in pairs do
            b.Append($"| {k} | {v.Replace('|', '/')} |\n") |> ignore
        w.add_text("hparams", b.ToString(), 0)

    let scalar (w: Writer) (tag: string) (step: int) (value: float) =
        if not (Double.IsNaN value) then w.add_scalar(tag, float32 value, step)

    /// The learning rate a state keeps (hypergradient optimizers), averaged over its entries.
    let learnedLr (st: State) : float option =
        match State.watch "lr" st with
        | [] -> None
        | xs -> Some(xs |> List.averageBy (fun (_, t) -> use m = t.detach().mean() in m.ToDouble()))

    /// The fixed learning rate of an optimizer's options, if it has one.
    let optionLr (optimizer: string) (options: (string * string) list) : float option =
        try Some(Registry.learningRateOf optimizer options) with :? ArgumentException -> None

    /// One training step: loss, lr (when known) and learned_lr (when the state keeps one).
    let step (w: Writer) (k: int) (loss: float) (lr: float option) (st: State) =
        scalar w "loss" k loss
        lr |> Option.iter (scalar w "lr" k)
        learnedLr st |> Option.iter (scalar w "learned_lr" k)

    let options (xs: (string * string) list) = String.Join(", ", xs |> List.map (fun (k, v) -> $"{k}={v}"))
