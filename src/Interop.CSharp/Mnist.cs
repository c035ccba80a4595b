using Microsoft.FSharp.Core;
using TorchSharp;
using static TorchSharp.torch;
using Core = Optimizers;

namespace Optimizers.Interop;

/// <summary>Images as an N x C x H x W float32 tensor (pixels / 255, in [0, 1]; MNIST: N x 1 x 28 x 28)
/// and their labels as an N int64 tensor (0-9).</summary>
public sealed record LabelledImages(Tensor Images, Tensor Labels)
{
    /// <summary>The number of images.</summary>
    public long Count => Labels.shape[0];
}

/// <summary>
/// MNIST as tensors, through the library's loader: by default the 20,000-digit set shipped
/// with the library (20,000 training, 5,000 validation, 10,000 test images of the original MNIST
/// files; data/mnist-20k, copied next to every program that references the library), the name
/// of a shipped set ("mnist-subset": the earlier 10,000 digits), or a folder with the IDX files.
/// The tensors are the caller's (created outside any DisposeScope).
/// </summary>
public sealed class Mnist
{
    private Mnist(LabelledImages train, LabelledImages validation, LabelledImages test) =>
        (Train, Validation, Test) = (train, validation, test);

    /// <summary>The training images.</summary>
    public LabelledImages Train { get; }
    /// <summary>The validation images.</summary>
    public LabelledImages Validation { get; }
    /// <summary>The test images.</summary>
    public LabelledImages Test { get; }

    /// <summary>Load MNIST.</summary>
    /// <param name="directory">A folder with train-images-idx3-ubyte(.gz), train-labels-idx1-ubyte(.gz),
    /// t10k-... and optionally validation-... files, or the name of a shipped set (mnist-20k, mnist-subset);
    /// null for the shipped 20,000-digit set.</param>
    /// <exception cref="DirectoryNotFoundException">No such folder, or the shipped set is not found.</exception>
    /// <exception cref="FileNotFoundException">A file is missing.</exception>
    /// <exception cref="InvalidDataException">A file is not an MNIST IDX file.</exception>
    public static Mnist Load(string? directory = null)
    {
        Engine.Start();
        var splits = Core.Data.Datasets.mnist(directory is null ? FSharpOption<string>.None : FSharpOption<string>.Some(directory));
        return new Mnist(Tensors(splits.Train), Tensors(splits.Validation), Tensors(splits.Test));
    }

    private static LabelledImages Tensors(Core.Data.ImageSet set)
    {
        using var scope = torch.NewDisposeScope();
        var pixels = torch.tensor(set.Pixels, dtype: ScalarType.Byte).reshape(set.Count, set.Channels, set.Height, set.Width);
        var images = pixels.to_type(ScalarType.Float32).div_(255.0f);
        var labels = torch.tensor(set.Labels, dtype: ScalarType.Byte).to_type(ScalarType.Int64);
        return new LabelledImages(images.DetachFromDisposeScope(), labels.DetachFromDisposeScope());
    }
}
