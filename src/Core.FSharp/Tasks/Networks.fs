namespace Optimizers.Tasks

open Optimizers

/// The networks of the seeds' image tasks, as functional definitions over a parameter tree.
/// Inputs are batches of images [B, C, H, W]; outputs are logits [B, 10].
module Networks =

    /// An MLP on flattened 28 x 28 images: 784 -> hidden... -> 10, `activation` after each hidden
    /// layer (HyperAdam's learner, its deeper variants and the hypergradient paper's MLP).
    /// No hidden layer is logistic regression (784 -> 10). Layers are "fc1", "fc2", ... and "out".
    let mlp (activation: string) (hidden: int list) : Network =
        let act = Layers.activation activation
        if hidden |> List.exists (fun w -> w < 1) then
            Tensors.invalidArg "width" $"an MLP's hidden widths must be >= 1; got {hidden}"
        let widths = 784 :: hidden
        let names = [ for i in 1 .. hidden.Length -> $"fc{i}" ]
        let specs =
            [ for i, name in List.indexed names do yield! Layers.linearSpec name widths[i] widths[i + 1]
              yield! Layers.linearSpec "out" (List.last widths) 10 ]
        let forward (p: Tree) (x: Tensor) =
            let mutable h = x.reshape(x.shape[0], -1L)
            for name in names do h <- act (Layers.linear p name h)
            Layers.linear p "out" h
        let shape = System.String.Join("-", 784 :: hidden @ [ 10 ])
        { Name = (if hidden.IsEmpty then "logistic-regression 784-10" else $"mlp {shape} {activation}")
          Params = specs
          Forward = forward }

    /// HyperAdam's CNNs (its reference code's VGG-like model): 3 x 3 'SAME' convolutions with ReLU,
    /// 2 x 2 max pooling (stride 2); block j has 16 * 2^j channels; `blocks` blocks of
    /// `convsPerBlock` convolutions, then fully connected layers, hidden ones 2^(blocks + 4) wide
    /// with ReLU. `channels` is 1 for MNIST, 3 for CIFAR-10; `size` the image side.
    let vggLike (name: string) (channels: int) (size: int) (blocks: int) (convsPerBlock: int) (fcLayers: int) : Network =
        let convs =
            [ for j in 0 .. blocks - 1 do
                  for k in 0 .. convsPerBlock - 1 ->
                      let cin = if k > 0 then 16 <<< j elif j = 0 then channels else 16 <<< (j - 1)
                      j, $"conv{j + 1}_{k + 1}", cin, 16 <<< j ]
        let side = size >>> blocks
        let flat = side * side * (16 <<< (blocks - 1))
        let fcWidth = 1 <<< (blocks + 4)
        let fcs = [ for i in 1 .. fcLayers -> (if i = fcLayers then "out" else $"fc{i}"), (if i = 1 then flat else fcWidth), (if i = fcLayers then 10 else fcWidth) ]
        let specs =
            [ for _, n, cin, cout in convs do yield! Layers.convSpec n cin cout 3
              for n, i, o in fcs do yield! Layers.linearSpec n i o ]
        let forward (p: Tree) (x: Tensor) =
            let mutable h = x
            for j in 0 .. blocks - 1 do
                for _, n, _, _ in convs |> List.filter (fun (b, _, _, _) -> b = j) do
                    h <- (Layers.convSame p n h).relu()
                h <- Layers.maxPoolSame 2 2 h
            h <- h.reshape(h.shape[0], -1L)
            for n, _, _ in fcs do
                h <- Layers.linear p n h
                if n <> "out" then h <- h.relu()
            h
        { Name = name; Params = specs; Forward = forward }

    /// HyperAdam's CNN-1 on MNIST: conv-conv-pool-fc (16 channels; 33,850 parameters).
    let cnn1 : Network = vggLike "cnn-1 (conv-conv-pool-fc)" 1 28 1 2 1

    /// HyperAdam's CNN-2 on MNIST: conv-conv-pool-conv-conv-pool-fc-fc (16 and 32 channels, a
    /// 64-unit hidden layer; 117,434 parameters).
    let cnn2 : Network = vggLike "cnn-2 (conv-conv-pool-conv-conv-pool-fc-fc)" 1 28 2 2 2

    /// The thesis's ConvMnist nets (seed 004, 2.3.3): two 5 x 5 'SAME' convolutions with ReLU, each
    /// followed by 2 x 2 max pooling, a ReLU hidden layer, the output layer. `l` (TensorFlow's
    /// MNIST tutorial net): 32 and 64 channels, 3136 -> 1024; `s`: 16 and 32 channels,
    /// 1568 -> 512 (the thesis prints the second kernel as [5, 5, 1, 32]; its input must have the
    /// first layer's 16 channels, as the 1568 = 7 x 7 x 32 of the next layer confirms).
    let convMnist (name: string) (c1: int) (c2: int) (hidden: int) : Network =
        let specs =
            Layers.convSpec "conv1" 1 c1 5 @ Layers.convSpec "conv2" c1 c2 5
            @ Layers.linearSpec "fc1" (7 * 7 * c2) hidden @ Layers.linearSpec "out" hidden 10
        let forward (p: Tree) (x: Tensor) =
            let h = Layers.maxPoolSame 2 2 ((Layers.convSame p "conv1" x).relu())
            let h = Layers.maxPoolSame 2 2 ((Layers.convSame p "conv2" h).relu())
            let h = (Layers.linear p "fc1" (h.reshape(h.shape[0], -1L))).relu()
            Layers.linear p "out" h
        { Name = name; Params = specs; Forward = forward }

    /// ConvMnist_l: 3,274,634 parameters.
    let convMnistL : Network = convMnist "conv-mnist-l" 32 64 1024

    /// ConvMnist_s: 821,706 parameters.
    let convMnistS : Network = convMnist "conv-mnist-s" 16 32 512

    /// The thesis's ConvCifar nets (seed 004, 2.3.4), TensorFlow's CIFAR-10 tutorial network on
    /// 24 x 24 crops: conv 5 x 5 'SAME' + ReLU, max pool 3 x 3 stride 2 'SAME', LRN; conv 5 x 5 +
    /// ReLU, LRN, max pool; two ReLU hidden layers ("fc1", "fc2", the layers with weight decay in
    /// the tutorial) and the output layer. The flattened size is 6 x 6 x c2.
    let convCifar (name: string) (c1: int) (c2: int) (h1: int) (h2: int) : Network =
        let specs =
            Layers.convSpec "conv1" 3 c1 5 @ Layers.convSpec "conv2" c1 c2 5
            @ Layers.linearSpec "fc1" (6 * 6 * c2) h1 @ Layers.linearSpec "fc2" h1 h2 @ Layers.linearSpec "out" h2 10
        let forward (p: Tree) (x: Tensor) =
            let h = Layers.lrn (Layers.maxPoolSame 3 2 ((Layers.convSame p "conv1" x).relu()))
            let h = Layers.maxPoolSame 3 2 (Layers.lrn ((Layers.convSame p "conv2" h).relu()))
            let h = (Layers.linear p "fc1" (h.reshape(h.shape[0], -1L))).relu()
            let h = (Layers.linear p "fc2" h).relu()
            Layers.linear p "out" h
        { Name = name; Params = specs; Forward = forward }

    /// ConvCifar_0: 64 and 64 channels, 2304 -> 384 -> 192 -> 10; 1,068,298 parameters, the count
    /// the thesis gives (it prints the second hidden layer as 384 x 191; the count needs 192).
    let convCifar0 : Network = convCifar "conv-cifar0" 64 64 384 192

    /// ConvCifar_1: 32 and 32 channels, then 96 and 48 hidden units (143,898 parameters). The
    /// thesis prints the hidden layers as [576 x 96] and [96 x 46]; two 32-channel convolutions
    /// give 6 x 6 x 32 = 1152 inputs, not 576, and 46 reads like the typo that turned ConvCifar_0's
    /// 192 into 191 (every width is ConvCifar_0's divided by 4 otherwise), so this follows the
    /// convolutions as printed and takes 1152 -> 96 -> 48.
    let convCifar1 : Network = convCifar "conv-cifar1" 32 32 96 48
