namespace Optimizers.Handcrafted

open System
open TorchSharp
open Optimizers
open Optimizers.Transforms

/// Options of annealed gradient noise.
type GradientNoiseOptions =
    { /// eta: the variance of the noise at the first step.
      Eta: Hyper
      /// The decay exponent of the variance.
      Gamma: Hyper
      /// The seed of the noise: the same seed gives the same noise.
      Seed: int }

/// Annealed Gaussian gradient noise (Neelakantan et al. 2015, "Adding Gradient Noise Improves
/// Learning for Very Deep Networks"; lecture seed 003):
///   g_t <- g_t + N(0, sigma_t^2),   sigma_t^2 = eta / (1 + t)^gamma
/// with t the number of updates made before (0 at the first step). The paper anneals the
/// *variance* (eta in {0.01, 0.3, 1.0}, gamma = 0.55); the lecture writes the standard deviation,
/// sigma_t = c / (1 + t)^gamma', which is this with eta = c^2 and gamma = 2 gamma'.
/// The noise is deterministic and pure: the noise of parameter i at step t is drawn in float64
/// on the CPU from a generator seeded by (seed, t, i), then converted to the parameter's dtype
/// and device, so a run is reproducible from its seed on any device.
module GradientNoise =

    let defaults : GradientNoiseOptions = { Eta = Hyper.Fixed 0.01; Gamma = Hyper.Fixed 0.55; Seed = 0 }

    /// SplitMix64's finaliser: a well-mixed 64-bit value.
    let private mix (x: uint64) : uint64 =
        let z = x + 0x9E3779B97F4A7C15UL
        let z = (z ^^^ (z >>> 30)) * 0xBF58476D1CE4E5B9UL
        let z = (z ^^^ (z >>> 27)) * 0x94D049BB133111EBUL
        z ^^^ (z >>> 31)

    /// Standard normal noise shaped like `like`, a function of (seed, step, index) only.
    let standardNoise (seed: int) (step: int) (index: int) (like: Tensor) : Tensor =
        let s = mix (mix (mix (uint64 (uint32 seed)) ^^^ uint64 step) ^^^ uint64 index)
        use gen = new torch.Generator(s, torch.CPU)
        let z = torch.randn(like.shape, dtype = torch.ScalarType.Float64, device = torch.CPU, generator = gen)
        z.``to``(like.dtype, like.device)

    /// The variance eta / (1 + t)^gamma at step t (0-based).
    let variance (eta: HValue) (gamma: HValue) (t: int) : HValue =
        eta / ScaleBy.powBase (1.0 + float t) gamma

    /// The transformation that adds the noise to the incoming gradients.
    let addNoise (o: GradientNoiseOptions) : Transformation =
        ScaleBy.counted "add_noise" (fun t u _ ->
            let sigma = HValue.sqrt (variance (Hyper.at t o.Eta) (Hyper.at t o.Gamma) t)
            { Names = u.Names
              Values = u.Values |> Array.mapi (fun i g -> g + sigma * standardNoise o.Seed t i g) })

    let validate (owner: string) (o: GradientNoiseOptions) =
        Hyper.checkNonNegative owner "eta" o.Eta
        Hyper.checkNonNegative owner "gamma" o.Gamma

    /// Any optimizer with noise added to its gradients, named "gradient-noise".
    let wrap (o: GradientNoiseOptions) (inner: Transformation) : Transformation =
        validate "gradient-noise" o
        Combine.named "gradient-noise" 1 [ addNoise o; inner ]

    /// SGD (torch.optim.SGD's options) with annealed gradient noise.
    let create (o: GradientNoiseOptions) (sgd: SgdOptions) : Transformation = wrap o (Sgd.create sgd)

    /// Gradient noise's options and SGD's, as the registry takes them.
    let spec : Registration<GradientNoiseOptions * SgdOptions> =
        { Summary = "SGD with annealed Gaussian gradient noise, variance eta / (1 + t)^gamma"
          Source = "Neelakantan et al. 2015; lecture seed 003"
          Defaults = defaults, Sgd.defaults
          Fields =
            (Sgd.fields |> List.map (Field.lift snd (fun (n, _) s -> n, s)))
            @ ([ Field.hyper "eta" (fun o -> o.Eta) (fun o v -> { o with Eta = v }) "variance of the noise at the first step"
                 Field.hyper "gamma" (fun o -> o.Gamma) (fun o v -> { o with Gamma = v }) "decay exponent of the variance"
                 Field.integer "seed" (fun o -> o.Seed) (fun o v -> { o with Seed = v }) "seed of the noise" ]
               |> List.map (Field.lift fst (fun (_, s) n -> n, s)))
          Create = fun (noise, sgd) -> create noise sgd }
