namespace Optimizers

open TorchSharp

/// The state of a transformation: the same record for every optimizer, so that chaining,
/// saving, loading, detaching (truncated backprop) and moving between devices are generic.
///   Kind:     the transformation that made it (checked when wiring and loading)
///   Count:    the number of updates made so far
///   Slots:    per-parameter tensors, each a tree shaped like the parameters (moments, buffers)
///   Scalars:  scalar tensors (a learned learning rate, an accumulator)
///   Children: the states of inner transformations (the parts of a chain, a wrapped optimizer)
type State =
    { Kind: string
      Count: int
      Slots: Map<string, Tree>
      Scalars: Map<string, Tensor>
      Children: State list }

    /// A per-parameter slot by name.
    member s.Slot(name: string) : Tree =
        match s.Slots.TryFind name with
        | Some t -> t
        | None -> Tensors.invalidArg "state" $"state of '{s.Kind}' has no slot '{name}'; was it made by this optimizer's init?"

    /// A scalar by name.
    member s.Scalar(name: string) : Tensor =
        match s.Scalars.TryFind name with
        | Some t -> t
        | None -> Tensors.invalidArg "state" $"state of '{s.Kind}' has no scalar '{name}'; was it made by this optimizer's init?"

module State =

    /// A state with no tensors.
    let empty (kind: string) : State =
        { Kind = kind; Count = 0; Slots = Map.empty; Scalars = Map.empty; Children = [] }

    /// A state with per-parameter slots.
    let withSlots (kind: string) (slots: (string * Tree) list) : State =
        { empty kind with Slots = Map.ofList slots }

    /// Every tensor of the state, children included, in a fixed order.
    let rec tensors (s: State) : Tensor list =
        [ for KeyValue(_, t) in s.Slots do yield! t.Values
          for KeyValue(_, t) in s.Scalars do yield t
          for c in s.Children do yield! tensors c ]

    /// The same state with every tensor replaced by f of it (children included).
    let rec mapTensors (f: Tensor -> Tensor) (s: State) : State =
        { s with
            Slots = s.Slots |> Map.map (fun _ t -> Tree.map f t)
            Scalars = s.Scalars |> Map.map (fun _ t -> f t)
            Children = s.Children |> List.map (mapTensors f) }

    /// Cut the autograd graph behind the state (the boundary of truncated backprop).
    let detach (s: State) : State = mapTensors (fun t -> t.detach()) s

    /// Move to a device (e.g. "cpu", "cuda:0").
    let toDevice (device: torch.Device) (s: State) : State = mapTensors (fun t -> t.``to``(device)) s

    /// Keep the state's tensors alive past the current DisposeScope.
    let moveToOuterScope (s: State) : State =
        for t in tensors s do t.MoveToOuterDisposeScope() |> ignore
        s

    /// Take the state's tensors out of every DisposeScope: for a state that an object owns across
    /// its caller's scopes (the C# facade's optimizer), freed only by `dispose`.
    let detachFromScopes (s: State) : State =
        for t in tensors s do t.DetachFromDisposeScope() |> ignore
        s

    /// Free the state's native memory now.
    let dispose (s: State) = for t in tensors s do t.Dispose()

    /// Values to watch in a state, found anywhere in it by name: a per-parameter slot tree
    /// ("lr" of a per-parameter rate gives lr[name] for each tensor, a one-entry tree just the
    /// name) or a scalar. Used to print learning rates and hypergradients next to a trajectory.
    let rec watch (name: string) (s: State) : (string * Tensor) list =
        let own =
            match s.Slots.TryFind name, s.Scalars.TryFind name with
            | Some t, _ when t.Count = 1 -> [ name, t.Values[0] ]
            | Some t, _ -> [ for n, v in Seq.zip t.Names t.Values -> $"{name}[{n}]", v ]
            | None, Some v -> [ name, v ]
            | None, None -> []
        if own.IsEmpty then s.Children |> List.tryPick (fun c -> match watch name c with [] -> None | w -> Some w) |> Option.defaultValue []
        else own
