namespace Optimizers.Learned

open System
open System.IO
open System.Text.Json.Nodes
open TorchSharp
open Optimizers

/// A family of learned optimizers (HyperAdam, DMoptimizer, RNNprop, ...): its options, how to
/// make fresh meta-parameters Theta, and how to turn Theta into an ordinary Transformation. The
/// Transformation's update is differentiable in Theta, which is what meta-training needs.
type LearnedKind =
    { Kind: string
      Summary: string
      Source: string
      Options: OptionSpec list
      /// Fresh meta-parameters from a seed (float32, requires_grad off: the trainer turns it on).
      InitTheta: OptionValues -> int -> Tree
      /// The optimizer that Theta defines.
      Create: OptionValues -> Tree -> Transformation }

/// A learned kind's registration in its own file, as `Registration` is a hand-designed
/// optimizer's: its typed options record (defaults, fields, validation) and Theta and the
/// optimizer from a record. `LearnedRegistration.kind` turns it into the kind the registry, the
/// files and meta-training use, whose options arrive as text (a file keeps them so) and are read
/// into the record once.
type LearnedRegistration<'O> =
    { Kind: string
      Summary: string
      Source: string
      Defaults: 'O
      Fields: Field<'O> list
      /// Construction-time checks of the options, each failing with a message naming the option.
      Validate: 'O -> unit
      InitTheta: 'O -> int -> Tree
      Create: 'O -> Tree -> Transformation }

module LearnedRegistration =

    /// The options record of given values: the defaults with every given option read in, validated.
    let read (r: LearnedRegistration<'O>) (values: OptionValues) : 'O =
        let o = Field.read r.Fields r.Defaults values
        r.Validate o
        o

    /// The learned kind of a registration.
    let kind (r: LearnedRegistration<'O>) : LearnedKind =
        { Kind = r.Kind
          Summary = r.Summary
          Source = r.Source
          Options = Field.specs r.Defaults r.Fields
          InitTheta = fun v seed -> r.InitTheta (read r v) seed
          Create = fun v theta -> r.Create (read r v) theta }

/// A trained optimizer: its kind, the options it was built with, its meta-parameters, and
/// free-form facts about how it was made (the command line, meta-iterations, losses).
type TrainedOptimizer =
    { Kind: string
      Options: (string * string) list
      Theta: Tree
      Info: Map<string, string> }

/// Trained-optimizer files ("OPTLEARN" TensorFiles) and helpers shared by every learned kind.
module LearnedOptimizer =

    let private fileKind = "OPTLEARN"
    let private what = "trained optimizer file"

    /// The option values of a kind.
    let values (k: LearnedKind) (options: (string * string) list) = OptionValues(k.Kind, k.Options, options)

    /// Build the optimizer of a trained one, checking that the kind matches.
    let create (k: LearnedKind) (t: TrainedOptimizer) : Transformation =
        // Learned optimizers are the ones hurt most by long OpenMP spinning (OpenMp's doc); this
        // takes effect only if LibTorch has not loaded yet (the startup hook normally did it).
        LibTorch.prepare ()
        if t.Kind <> k.Kind then
            Tensors.invalidArg "kind" $"a trained '{t.Kind}' cannot be used as a '{k.Kind}'"
        k.Create (values k t.Options) t.Theta

    let save (path: string) (t: TrainedOptimizer) =
        let w = TensorFile.Writer()
        let header = JsonObject()
        header["kind"] <- JsonValue.Create t.Kind
        let opts = JsonObject()
        for n, v in t.Options do opts[n] <- JsonValue.Create v
        header["options"] <- opts
        header["names"] <- JsonArray(t.Theta.Names |> Array.map (fun n -> JsonValue.Create n :> JsonNode))
        header["tensors"] <- JsonArray(t.Theta.Values |> Array.map w.Add)
        let info = JsonObject()
        for KeyValue(n, v) in t.Info do info[n] <- JsonValue.Create v
        header["info"] <- info
        match Path.GetDirectoryName(Path.GetFullPath path) with
        | null -> ()
        | dir -> Directory.CreateDirectory dir |> ignore
        TensorFile.write path fileKind header w

    /// Load a trained optimizer; a wrong or corrupt file fails with a message naming the file.
    let load (path: string) : TrainedOptimizer =
        let header, r = TensorFile.read path fileKind what
        TensorFile.guard path (fun () ->
            let names = header["names"].AsArray() |> Seq.map (fun n -> n.GetValue<string>()) |> Array.ofSeq
            let values = header["tensors"].AsArray() |> Seq.map r.Tensor |> Array.ofSeq
            if names.Length <> values.Length then TensorFile.fail path "corrupt (names and tensors differ in number)"
            { Kind = r.Str header "kind"
              Options = [ for KeyValue(n, v) in header["options"].AsObject() -> n, v.GetValue<string>() ]
              Theta = { Names = names; Values = values }
              Info = Map.ofList [ for KeyValue(n, v) in header["info"].AsObject() -> n, v.GetValue<string>() ] })

    /// The trained optimizer shipped with the library for a kind (models/<kind>.bin next to the
    /// executable, copied there by the build, in the package the library came from, or in the
    /// repository's models/ folder), if any.
    let shipped (kind: string) : string option =
        let file = kind + ".bin"
        let beside = Path.Combine(AppContext.BaseDirectory, "models", file)
        let inPackage = Shipped.packageFolder () |> Option.map (fun d -> Path.Combine(d, "models", file)) |> Option.filter File.Exists
        if File.Exists beside then Some beside
        elif inPackage.IsSome then inPackage
        else
            let rec up (dir: DirectoryInfo) =
                if isNull dir then None
                elif File.Exists(Path.Combine(dir.FullName, "Optimizers.sln")) then
                    let f = Path.Combine(dir.FullName, "models", file)
                    if File.Exists f then Some f else None
                else up dir.Parent
            up (DirectoryInfo(Directory.GetCurrentDirectory()))

    /// A seeded generator for initialising meta-parameters.
    let generator (seed: int) = new torch.Generator(uint64 seed)

    /// The update direction as a flat vector turned back into the parameters' tree.
    let toUpdates (like: Tree) (flat: Tensor) : Tree = Cells.unflatten like flat
