namespace Optimizers.Tasks

open Optimizers.Data

/// The named image tasks of the seeds, with each paper's defaults. MNIST tasks read the shipped
/// 20,000-digit set (data/mnist-20k) unless given a directory with the full MNIST IDX files or the
/// name of another shipped set; CIFAR-10 tasks need a directory with the binary files (see Datasets).
module Vision =

    /// HyperAdam's learners: batch 128, every parameter N(0, 0.1^2), pixels in [0, 1].
    let hyperAdamOptions = ClassificationOptions.Default

    /// The thesis (seed 004): batch 128, N(0, 0.01) read as std 0.01, pixels in [0, 1].
    let thesisOptions = { ClassificationOptions.Default with Init = Normal 0.01 }

    /// The hypergradient paper's reference code: batch 128, PyTorch's default initialisation,
    /// MNIST standardised with mean 0.1307 and std 0.3081.
    let hypergradientOptions = { ClassificationOptions.Default with Init = TorchDefault; Preprocess = Standardize(0.1307, 0.3081) }

    /// TensorFlow's CIFAR-10 tutorial as the thesis's ConvCifar nets use it: random 24 x 24 crops
    /// and flips, per-image standardisation, weight decay 0.004 on the two hidden layers; thesis
    /// initialisation N(0, 0.01).
    let cifarOptions =
        { thesisOptions with Preprocess = CifarCrop(24, true); WeightDecay = 0.004; DecayedParams = [ "fc1.weight"; "fc2.weight" ] }

    let private onMnist (name: string) (net: Network) (dataDir: string option) (o: ClassificationOptions) =
        Classification.task name net (Datasets.mnist dataDir) o

    /// Logistic regression 784 -> 10 (7,850 parameters; the hypergradient paper's first model).
    let logisticRegression dataDir o = onMnist "logreg-mnist" (Networks.mlp "sigmoid" []) dataDir o

    /// An MLP 784 -> hidden... -> 10 with an activation in sigmoid, relu, elu, tanh.
    let mlp (activation: string) (hidden: int list) dataDir o =
        onMnist "mlp-mnist" (Networks.mlp activation hidden) dataDir o

    /// MlpMnist: 784-20-10 with sigmoid, 15,910 parameters (HyperAdam's learner; the thesis's
    /// default problem).
    let mlpMnist dataDir o = mlp "sigmoid" [ 20 ] dataDir o

    /// The hypergradient paper's MLP: 784-1000-1000-10 with ReLU (1,796,010 parameters).
    let mlpHypergradient dataDir o = onMnist "mlp-mnist-hd" (Networks.mlp "relu" [ 1000; 1000 ]) dataDir o

    /// HyperAdam's CNN-1 and CNN-2 on MNIST.
    let cnn1 dataDir o = onMnist "cnn1-mnist" Networks.cnn1 dataDir o
    let cnn2 dataDir o = onMnist "cnn2-mnist" Networks.cnn2 dataDir o

    /// The thesis's ConvMnist_l and ConvMnist_s.
    let convMnistL dataDir o = onMnist "conv-mnist-l" Networks.convMnistL dataDir o
    let convMnistS dataDir o = onMnist "conv-mnist-s" Networks.convMnistS dataDir o

    /// The thesis's ConvCifar_0 and ConvCifar_1 on CIFAR-10 from `dataDir`.
    let convCifar0 (dataDir: string) o = Classification.task "conv-cifar0" Networks.convCifar0 (Datasets.cifar10 dataDir) o
    let convCifar1 (dataDir: string) o = Classification.task "conv-cifar1" Networks.convCifar1 (Datasets.cifar10 dataDir) o
