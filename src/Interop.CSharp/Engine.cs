using Core = Optimizers;

namespace Optimizers.Interop;

/// <summary>
/// Settings of the engine under the library (LibTorch), for users who want control. Nothing here
/// has to be called: a program built against the library's package (or inside the repository)
/// limits the OpenMP spinning before Main through a startup hook, and the facade does it again at
/// its first use (which matters only where LibTorch has not been loaded yet, e.g. in a script).
/// </summary>
/// <remarks>
/// LibTorch's OpenMP worker threads spin between parallel regions before they sleep. With
/// libgomp's long default spin, a second process on the machine makes the workers take the core
/// that the thread with the work needs: measured on 2 cores with a busy neighbour, HyperAdam ran
/// several times slower. The library sets <c>GOMP_SPINCOUNT=1000</c> unless you set
/// <c>GOMP_SPINCOUNT</c> or <c>OMP_WAIT_POLICY</c> yourself (your choice always wins). LibTorch reads
/// the setting once, when it loads, so to choose another value set the variable before the
/// program starts (or call <see cref="LimitSpinning"/>-like code of your own before the first
/// tensor). To drop the startup hook, build with <c>-p:OptimizersLimitSpinning=false</c>.
/// </remarks>
public static class Engine
{
    static Engine() => Core.LibTorch.prepare();

    /// <summary>Called by every facade entry point before it touches a tensor: runs the static
    /// constructor (the spin limit) once.</summary>
    internal static void Start() { }

    /// <summary>
    /// Apply the spin limit now (GOMP_SPINCOUNT = 1000 unless GOMP_SPINCOUNT or OMP_WAIT_POLICY is
    /// set) and return the setting in force as "NAME=VALUE". It affects LibTorch only if LibTorch
    /// has not loaded yet (<see cref="LibTorchLoaded"/>).
    /// </summary>
    public static string LimitSpinning()
    {
        var (name, value) = Core.OpenMp.limitSpinning().ToValueTuple();
        return $"{name}={value}";
    }

    /// <summary>The OpenMP wait setting in this process's environment as "NAME=VALUE"
    /// (GOMP_SPINCOUNT first, then OMP_WAIT_POLICY), or "" when neither is set.</summary>
    public static string SpinSetting
    {
        get
        {
            foreach (var name in new[] { "GOMP_SPINCOUNT", "OMP_WAIT_POLICY" })
                if (Environment.GetEnvironmentVariable(name) is { Length: > 0 } v) return $"{name}={v}";
            return "";
        }
    }

    /// <summary>True when LibTorch's OpenMP runtime is already loaded in this process (Linux: read
    /// from /proc/self/maps), i.e. when a change of the spin setting can no longer take effect.
    /// False where this cannot be told.</summary>
    public static bool LibTorchLoaded
    {
        get
        {
            try
            {
                return File.Exists("/proc/self/maps")
                    && File.ReadLines("/proc/self/maps").Any(l => l.Contains("libgomp") || l.Contains("libtorch_cpu"));
            }
            catch (IOException) { return false; }
            catch (UnauthorizedAccessException) { return false; }
        }
    }

    /// <summary>LibTorch's intra-op threads (torch.get_num_threads / set_num_threads).</summary>
    /// <exception cref="ArgumentOutOfRangeException">A value below 1.</exception>
    public static int Threads
    {
        get => TorchSharp.torch.get_num_threads();
        set
        {
            if (value < 1) throw new ArgumentOutOfRangeException(nameof(Threads), $"Threads = {value} is invalid; it must be >= 1");
            TorchSharp.torch.set_num_threads(value);
        }
    }
}
