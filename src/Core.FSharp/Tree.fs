namespace Optimizers

open System
open TorchSharp

/// An ordered tree of named tensors: the parameters of a model, their gradients, the updates,
/// and the per-parameter slots of an optimizer state (moments, buffers) all have this shape.
/// The order is the order of the names; two trees combine only when their names agree.
type Tree =
    { Names: string[]
      Values: Tensor[] }

    member t.Count = t.Names.Length

    member t.Item(name: string) : Tensor =
        match Array.IndexOf(t.Names, name) with
        | -1 -> Tensors.invalidArg "name" $"no tensor named '{name}' in the tree; it has: {Tensors.commas (t.Names)}"
        | i -> t.Values[i]

module Tree =

    /// A tree from (name, tensor) pairs, in that order. Names must be distinct.
    let ofSeq (pairs: seq<string * Tensor>) : Tree =
        let pairs = Array.ofSeq pairs
        let names = pairs |> Array.map fst
        match names |> Array.countBy id |> Array.tryFind (fun (_, c) -> c > 1) with
        | Some(dup, _) -> Tensors.invalidArg "names" $"duplicate name '{dup}' in a parameter tree; names must be distinct"
        | None -> { Names = names; Values = pairs |> Array.map snd }

    /// A tree of one tensor.
    let single (name: string) (t: Tensor) : Tree = { Names = [| name |]; Values = [| t |] }

    /// The named parameters of a TorchSharp module, in registration order.
    let ofModule (m: torch.nn.Module) : Tree =
        m.named_parameters() |> Seq.map (fun struct (n, p) -> n, (p :> Tensor)) |> ofSeq

    let toSeq (t: Tree) : seq<string * Tensor> = Seq.zip t.Names t.Values

    let private check (op: string) (a: Tree) (b: Tree) =
        if not (obj.ReferenceEquals(a.Names, b.Names) || a.Names = b.Names) then
            Tensors.invalidArg "tree"
                $"{op}: the trees differ: [{Tensors.commas (a.Names)}] vs [{Tensors.commas (b.Names)}]; \
                  gradients, updates and state must have the names of the parameters"

    let map (f: Tensor -> Tensor) (t: Tree) : Tree = { Names = t.Names; Values = Array.map f t.Values }

    let mapi (f: string -> Tensor -> Tensor) (t: Tree) : Tree =
        { Names = t.Names; Values = Array.map2 f t.Names t.Values }

    let map2 (f: Tensor -> Tensor -> Tensor) (a: Tree) (b: Tree) : Tree =
        check "map2" a b
        { Names = a.Names; Values = Array.map2 f a.Values b.Values }

    let map3 (f: Tensor -> Tensor -> Tensor -> Tensor) (a: Tree) (b: Tree) (c: Tree) : Tree =
        check "map3" a b
        check "map3" a c
        { Names = a.Names; Values = Array.init a.Count (fun i -> f a.Values[i] b.Values[i] c.Values[i]) }

    /// Map three trees to two at once (e.g. new updates and a new moment from one formula).
    let map3to2 (f: Tensor -> Tensor -> Tensor -> Tensor * Tensor) (a: Tree) (b: Tree) (c: Tree) : Tree * Tree =
        check "map3to2" a b
        check "map3to2" a c
        let pairs = Array.init a.Count (fun i -> f a.Values[i] b.Values[i] c.Values[i])
        { Names = a.Names; Values = Array.map fst pairs }, { Names = a.Names; Values = Array.map snd pairs }

    let zerosLike (t: Tree) : Tree = map torch.zeros_like t

    let clone (t: Tree) : Tree = map (fun x -> x.clone()) t

    let detach (t: Tree) : Tree = map (fun x -> x.detach()) t

    /// Detached copies that require grad: leaves to differentiate a loss with respect to.
    let asLeaves (t: Tree) : Tree = map (fun x -> x.detach().requires_grad_(true)) t

    /// Total number of elements over all tensors.
    let numel (t: Tree) : int64 = t.Values |> Array.sumBy (fun x -> x.numel())

    /// All elements, flattened in tree order, as float64 values (for printing and tests).
    let toFloats (t: Tree) : float[] =
        t.Values |> Array.collect (fun x ->
            use d = x.detach().to_type(torch.ScalarType.Float64).cpu().contiguous()
            d.data<float>().ToArray())

    let dispose (t: Tree) = for x in t.Values do x.Dispose()

    let moveToOuterScope (t: Tree) : Tree =
        for x in t.Values do x.MoveToOuterDisposeScope() |> ignore
        t
