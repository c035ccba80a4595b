namespace Optimizers

open System.IO
open System.Text.Json.Nodes

/// Optimizer state files ("OPTSTATE" TensorFiles): a state (every tensor, every step count)
/// with the optimizer's name and state layout version, so that loading it into another
/// optimizer, or reading a file that is not one, fails with a message saying so.
module Serialization =

    let private kind = "OPTSTATE"
    let private what = "optimizer state file"

    /// A state as a JSON node whose tensors go into `w` (also used by the C# facade's files of
    /// several parameter groups).
    let rec writeState (w: TensorFile.Writer) (s: State) : JsonNode =
        let slots = JsonObject()
        for KeyValue(name, tree) in s.Slots do
            let t = JsonObject()
            t["names"] <- JsonArray(tree.Names |> Array.map (fun n -> JsonValue.Create n :> JsonNode))
            t["tensors"] <- JsonArray(tree.Values |> Array.map w.Add)
            slots[name] <- t
        let scalars = JsonObject()
        for KeyValue(name, x) in s.Scalars do scalars[name] <- w.Add x
        let node = JsonObject()
        node["kind"] <- JsonValue.Create s.Kind
        node["count"] <- JsonValue.Create s.Count
        node["slots"] <- slots
        node["scalars"] <- scalars
        node["children"] <- JsonArray(s.Children |> List.map (writeState w) |> Array.ofList)
        node

    /// The state a `writeState` node describes, its tensors read by `r`.
    let rec readState (r: TensorFile.Reader) (n: JsonNode) : State =
        let slots =
            [ for KeyValue(k, v) in n["slots"].AsObject() ->
                let names = v["names"].AsArray() |> Seq.map (fun x -> x.GetValue<string>()) |> Array.ofSeq
                let values = v["tensors"].AsArray() |> Seq.map r.Tensor |> Array.ofSeq
                k, { Names = names; Values = values } ]
        let scalars = [ for KeyValue(k, v) in n["scalars"].AsObject() -> k, r.Tensor v ]
        { Kind = r.Str n "kind"
          Count = n["count"].GetValue<int>()
          Slots = Map.ofList slots
          Scalars = Map.ofList scalars
          Children = n["children"].AsArray() |> Seq.map (readState r) |> List.ofSeq }

    /// Save a state to `path` as the state of `optimizer`.
    let saveState (path: string) (optimizer: Transformation) (state: State) =
        if state.Kind <> optimizer.Name then
            Tensors.invalidArg "state" $"cannot save a state of '{state.Kind}' as the state of '{optimizer.Name}'"
        let w = TensorFile.Writer()
        let header = JsonObject()
        header["optimizer"] <- JsonValue.Create optimizer.Name
        header["version"] <- JsonValue.Create optimizer.Version
        header["library"] <- JsonValue.Create(typeof<State>.Assembly.GetName().Version.ToString())
        header["state"] <- writeState w state
        TensorFile.write path kind header w

    /// Load the state of `optimizer` from `path`. A file that is not a state file, is truncated,
    /// or holds another optimizer's state gives an InvalidDataException naming the file.
    let loadState (path: string) (optimizer: Transformation) : State =
        let header, r = TensorFile.read path kind what
        TensorFile.guard path (fun () ->
            let name = r.Str header "optimizer"
            let ver = header["version"].GetValue<int>()
            if name <> optimizer.Name then
                TensorFile.fail path $"holds the state of '{name}', not of '{optimizer.Name}'; load it with a '{name}' optimizer"
            if ver <> optimizer.Version then
                TensorFile.fail path $"holds '{name}' state layout version {ver}; this library's '{name}' uses version {optimizer.Version}"
            readState r header["state"])
