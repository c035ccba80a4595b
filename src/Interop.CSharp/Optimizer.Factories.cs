using Parameter = TorchSharp.Modules.Parameter;
using Core = Optimizers;

namespace Optimizers.Interop;

// Named factories of the catalog, with TorchSharp's argument names and PyTorch's defaults where
// PyTorch has the optimizer (the registry's option names, so an ArgumentException's ParamName is
// the C# argument's name). The defaults here equal the registry's (a test checks every one).
// For parameter groups: Optimizer.Create(name, groups, options) or add_param_group.
public sealed partial class Optimizer
{
    private static Optimizer Make(string name, IEnumerable<Parameter> parameters, params (string name, object? value)[] options) =>
        Create(name, parameters, options.Where(o => o.value is not null).ToDictionary(o => o.name, o => o.value!));

    private static IEnumerable<(string, object?)> With(IReadOnlyDictionary<string, object>? options) =>
        (options ?? new Dictionary<string, object>()).Select(kv => (kv.Key, (object?)kv.Value));

    // ---- SGD family ---------------------------------------------------------------------------

    /// <summary>
    /// Stochastic gradient descent as <c>torch.optim.SGD</c>: g = grad + weight_decay * p;
    /// with momentum b = momentum * b + (1 - dampening) * g (b = g at the first step) and
    /// d = g + momentum * b (nesterov) or b; p -= lr * d. Registered as "sgd" (also "momentum",
    /// "nesterov" with mu = 0.9). Has a fused in-place fast path.
    /// </summary>
    /// <param name="parameters">The parameters to optimize, e.g. <c>model.parameters()</c>.</param>
    /// <param name="lr">Learning rate (default 1e-3).</param>
    /// <param name="momentum">Momentum factor mu (default 0: plain SGD).</param>
    /// <param name="dampening">Dampening of the momentum buffer (default 0).</param>
    /// <param name="weight_decay">L2 penalty added to the gradient (default 0).</param>
    /// <param name="nesterov">Nesterov momentum (default false).</param>
    public static Optimizer SGD(IEnumerable<Parameter> parameters, double lr = 1e-3, double momentum = 0.0,
        double dampening = 0.0, double weight_decay = 0.0, bool nesterov = false) =>
        Make("sgd", parameters, ("lr", lr), ("momentum", momentum), ("dampening", dampening), ("weight_decay", weight_decay), ("nesterov", nesterov));

    /// <summary>
    /// SGDW, SGD with decoupled weight decay (Loshchilov and Hutter 2019, Algorithm 1): the
    /// momentum step of <see cref="SGD"/> on the raw gradient, plus p -= lr * weight_decay * p.
    /// Registered as "sgdw" ("sgdwm": mu = 0.9).
    /// </summary>
    /// <param name="parameters">The parameters to optimize.</param>
    /// <param name="lr">Learning rate (default 1e-3).</param>
    /// <param name="momentum">Momentum factor (default 0).</param>
    /// <param name="dampening">Dampening of the momentum buffer (default 0).</param>
    /// <param name="weight_decay">Decoupled weight decay, scaled by lr (default 0.01).</param>
    /// <param name="nesterov">Nesterov momentum (default false).</param>
    public static Optimizer SGDW(IEnumerable<Parameter> parameters, double lr = 1e-3, double momentum = 0.0,
        double dampening = 0.0, double weight_decay = 0.01, bool nesterov = false) =>
        Make("sgdw", parameters, ("lr", lr), ("momentum", momentum), ("dampening", dampening), ("weight_decay", weight_decay), ("nesterov", nesterov));

    /// <summary>
    /// SGD with annealed Gaussian gradient noise (Neelakantan et al. 2015): the gradient plus
    /// N(0, eta / (1 + t)^gamma) noise, then the <see cref="SGD"/> step. Registered as "gradient-noise".
    /// </summary>
    /// <param name="parameters">The parameters to optimize.</param>
    /// <param name="lr">Learning rate (default 1e-3).</param>
    /// <param name="momentum">Momentum factor (default 0).</param>
    /// <param name="dampening">Dampening of the momentum buffer (default 0).</param>
    /// <param name="weight_decay">L2 penalty added to the gradient (default 0).</param>
    /// <param name="nesterov">Nesterov momentum (default false).</param>
    /// <param name="eta">Variance of the noise at the first step (default 0.01).</param>
    /// <param name="gamma">Decay exponent of the variance (default 0.55).</param>
    /// <param name="seed">Seed of the noise (default 0).</param>
    public static Optimizer GradientNoise(IEnumerable<Parameter> parameters, double lr = 1e-3, double momentum = 0.0,
        double dampening = 0.0, double weight_decay = 0.0, bool nesterov = false, double eta = 0.01, double gamma = 0.55, int seed = 0) =>
        Make("gradient-noise", parameters, ("lr", lr), ("momentum", momentum), ("dampening", dampening), ("weight_decay", weight_decay),
            ("nesterov", nesterov), ("eta", eta), ("gamma", gamma), ("seed", seed));

    // ---- Adam family --------------------------------------------------------------------------

    /// <summary>
    /// Adam (Kingma and Ba 2015) as <c>torch.optim.Adam</c>: g = grad + weight_decay * p;
    /// m = beta1 m + (1 - beta1) g; v = beta2 v + (1 - beta2) g²;
    /// p -= lr * (m / (1 - beta1^t)) / (sqrt(v / (1 - beta2^t) + eps_root) + eps).
    /// With <paramref name="amsgrad"/> the running maximum of v is used (AMSGrad, Reddi et al. 2018,
    /// registered as "amsgrad"); otherwise registered as "adam", with a fused in-place fast path.
    /// </summary>
    /// <param name="parameters">The parameters to optimize, e.g. <c>model.parameters()</c>.</param>
    /// <param name="lr">Learning rate (default 1e-3).</param>
    /// <param name="beta1">Decay of the first moment, in [0, 1) (default 0.9).</param>
    /// <param name="beta2">Decay of the second moment, in [0, 1) (default 0.999).</param>
    /// <param name="eps">Added to the denominator, outside the square root (default 1e-8).</param>
    /// <param name="weight_decay">L2 penalty added to the gradient (default 0).</param>
    /// <param name="amsgrad">Use the running maximum of v (default false).</param>
    /// <param name="eps_root">Added inside the square root, for meta-gradients (default 0).</param>
    public static Optimizer Adam(IEnumerable<Parameter> parameters, double lr = 1e-3, double beta1 = 0.9, double beta2 = 0.999,
        double eps = 1e-8, double weight_decay = 0.0, bool amsgrad = false, double eps_root = 0.0) =>
        Make(amsgrad ? "amsgrad" : "adam", parameters, ("lr", lr), ("beta1", beta1), ("beta2", beta2), ("eps", eps),
            ("weight_decay", weight_decay), ("eps_root", eps_root));

    /// <summary>
    /// AMSGrad (Reddi et al. 2018): Adam with v̂ = max(v̂, v) in the denominator; with
    /// <paramref name="debias"/> = false the paper's form without bias correction. Registered as "amsgrad".
    /// </summary>
    /// <param name="parameters">The parameters to optimize.</param>
    /// <param name="lr">Learning rate (default 1e-3).</param>
    /// <param name="beta1">Decay of the first moment (default 0.9).</param>
    /// <param name="beta2">Decay of the second moment (default 0.999).</param>
    /// <param name="eps">Added to the denominator (default 1e-8).</param>
    /// <param name="weight_decay">L2 penalty added to the gradient (default 0).</param>
    /// <param name="eps_root">Added inside the square root (default 0).</param>
    /// <param name="debias">Bias correction as PyTorch (default true).</param>
    public static Optimizer AMSGrad(IEnumerable<Parameter> parameters, double lr = 1e-3, double beta1 = 0.9, double beta2 = 0.999,
        double eps = 1e-8, double weight_decay = 0.0, double eps_root = 0.0, bool debias = true) =>
        Make("amsgrad", parameters, ("lr", lr), ("beta1", beta1), ("beta2", beta2), ("eps", eps), ("weight_decay", weight_decay),
            ("eps_root", eps_root), ("debias", debias));

    /// <summary>
    /// AdamW (Loshchilov and Hutter 2019) as <c>torch.optim.AdamW</c>: the Adam step on the raw
    /// gradient plus the decoupled decay p -= lr * weight_decay * p. Registered as "adamw".
    /// </summary>
    /// <param name="parameters">The parameters to optimize.</param>
    /// <param name="lr">Learning rate (default 1e-3).</param>
    /// <param name="beta1">Decay of the first moment (default 0.9).</param>
    /// <param name="beta2">Decay of the second moment (default 0.999).</param>
    /// <param name="eps">Added to the denominator (default 1e-8).</param>
    /// <param name="weight_decay">Decoupled weight decay, scaled by lr (default 0.01).</param>
    /// <param name="amsgrad">Use the running maximum of v (default false).</param>
    /// <param name="eps_root">Added inside the square root (default 0).</param>
    public static Optimizer AdamW(IEnumerable<Parameter> parameters, double lr = 1e-3, double beta1 = 0.9, double beta2 = 0.999,
        double eps = 1e-8, double weight_decay = 0.01, bool amsgrad = false, double eps_root = 0.0) =>
        Make("adamw", parameters, ("lr", lr), ("beta1", beta1), ("beta2", beta2), ("eps", eps), ("weight_decay", weight_decay),
            ("amsgrad", amsgrad), ("eps_root", eps_root));

    /// <summary>
    /// Adamax (Kingma and Ba 2015, sec. 7.1) as <c>torch.optim.Adamax</c>: u = max(beta2 u, |g| + eps);
    /// p -= lr / (1 - beta1^t) * m / u. Registered as "adamax".
    /// </summary>
    /// <param name="parameters">The parameters to optimize.</param>
    /// <param name="lr">Learning rate (default 2e-3).</param>
    /// <param name="beta1">Decay of the first moment (default 0.9).</param>
    /// <param name="beta2">Decay of the infinity norm (default 0.999).</param>
    /// <param name="eps">Added to |g| inside the maximum (default 1e-8).</param>
    /// <param name="weight_decay">L2 penalty added to the gradient (default 0).</param>
    public static Optimizer Adamax(IEnumerable<Parameter> parameters, double lr = 2e-3, double beta1 = 0.9, double beta2 = 0.999,
        double eps = 1e-8, double weight_decay = 0.0) =>
        Make("adamax", parameters, ("lr", lr), ("beta1", beta1), ("beta2", beta2), ("eps", eps), ("weight_decay", weight_decay));

    /// <summary>
    /// NAdam (Dozat 2016) as <c>torch.optim.NAdam</c>: Adam with Nesterov momentum and the momentum
    /// schedule mu_t = beta1 (1 - 0.5 * 0.96^(t * momentum_decay)). Registered as "nadam".
    /// </summary>
    /// <param name="parameters">The parameters to optimize.</param>
    /// <param name="lr">Learning rate (default 2e-3).</param>
    /// <param name="beta1">Decay of the first moment (default 0.9).</param>
    /// <param name="beta2">Decay of the second moment (default 0.999).</param>
    /// <param name="eps">Added to the bias-corrected root of v (default 1e-8).</param>
    /// <param name="weight_decay">L2 penalty added to the gradient (default 0).</param>
    /// <param name="momentum_decay">psi of the momentum schedule (default 0.004).</param>
    public static Optimizer NAdam(IEnumerable<Parameter> parameters, double lr = 2e-3, double beta1 = 0.9, double beta2 = 0.999,
        double eps = 1e-8, double weight_decay = 0.0, double momentum_decay = 0.004) =>
        Make("nadam", parameters, ("lr", lr), ("beta1", beta1), ("beta2", beta2), ("eps", eps), ("weight_decay", weight_decay),
            ("momentum_decay", momentum_decay));

    /// <summary>
    /// RAdam (Liu et al. 2020) as <c>torch.optim.RAdam</c>: Adam whose adaptive rate is used only
    /// when the variance of its estimate is tractable (rho_t > threshold), rectified by r_t; an SGD
    /// step with momentum otherwise. Registered as "radam".
    /// </summary>
    /// <param name="parameters">The parameters to optimize.</param>
    /// <param name="lr">Learning rate (default 1e-3).</param>
    /// <param name="beta1">Decay of the first moment (default 0.9).</param>
    /// <param name="beta2">Decay of the second moment (default 0.999).</param>
    /// <param name="eps">Added to sqrt(v) (default 1e-8).</param>
    /// <param name="weight_decay">L2 penalty added to the gradient (default 0).</param>
    /// <param name="threshold">Rectify when rho_t > threshold (default 5, PyTorch; the paper: 4).</param>
    public static Optimizer RAdam(IEnumerable<Parameter> parameters, double lr = 1e-3, double beta1 = 0.9, double beta2 = 0.999,
        double eps = 1e-8, double weight_decay = 0.0, double threshold = 5.0) =>
        Make("radam", parameters, ("lr", lr), ("beta1", beta1), ("beta2", beta2), ("eps", eps), ("weight_decay", weight_decay),
            ("threshold", threshold));

    /// <summary>
    /// AdaBound (Luo et al. 2019): Adam's per-coordinate rate lr / sqrt(v̂) clipped into
    /// [final_lr (1 - 1/(gamma t + 1)), final_lr (1 + 1/(gamma t))], bounds that close in on
    /// final_lr (SGD). With <paramref name="amsbound"/> the running maximum of v is used (AMSBound).
    /// Registered as "adabound" and "amsbound".
    /// </summary>
    /// <param name="parameters">The parameters to optimize.</param>
    /// <param name="lr">Adam's learning rate (default 1e-3).</param>
    /// <param name="beta1">Decay of the first moment (default 0.9).</param>
    /// <param name="beta2">Decay of the second moment (default 0.999).</param>
    /// <param name="final_lr">The SGD rate the bounds converge to (default 0.1).</param>
    /// <param name="gamma">Convergence speed of the bounds (default 1e-3).</param>
    /// <param name="eps">Added to sqrt(v) (default 1e-8).</param>
    /// <param name="weight_decay">L2 penalty added to the gradient (default 0).</param>
    /// <param name="amsbound">Use the running maximum of v (default false).</param>
    public static Optimizer AdaBound(IEnumerable<Parameter> parameters, double lr = 1e-3, double beta1 = 0.9, double beta2 = 0.999,
        double final_lr = 0.1, double gamma = 1e-3, double eps = 1e-8, double weight_decay = 0.0, bool amsbound = false) =>
        Make(amsbound ? "amsbound" : "adabound", parameters, ("lr", lr), ("beta1", beta1), ("beta2", beta2), ("final_lr", final_lr),
            ("gamma", gamma), ("eps", eps), ("weight_decay", weight_decay));

    /// <summary>
    /// SWATS (Keskar and Socher 2017, Algorithm 1): Adam until its implied SGD learning rate
    /// settles (moves less than switch_eps), then SGD with momentum at that rate. Registered as "swats".
    /// </summary>
    /// <param name="parameters">The parameters to optimize.</param>
    /// <param name="lr">Adam's learning rate (default 1e-3).</param>
    /// <param name="beta1">Decay of the first moment (default 0.9).</param>
    /// <param name="beta2">Decay of the second moment (default 0.999).</param>
    /// <param name="eps">Added to sqrt(v) in Adam's step (default 1e-9).</param>
    /// <param name="switch_eps">Switch when the estimate moves less than this (default 1e-9).</param>
    /// <param name="weight_decay">L2 penalty added to the gradient (default 0).</param>
    public static Optimizer SWATS(IEnumerable<Parameter> parameters, double lr = 1e-3, double beta1 = 0.9, double beta2 = 0.999,
        double eps = 1e-9, double switch_eps = 1e-9, double weight_decay = 0.0) =>
        Make("swats", parameters, ("lr", lr), ("beta1", beta1), ("beta2", beta2), ("eps", eps), ("switch_eps", switch_eps),
            ("weight_decay", weight_decay));

    // ---- other adaptive methods ---------------------------------------------------------------

    /// <summary>
    /// Adagrad (Duchi et al. 2011) as <c>torch.optim.Adagrad</c>: s += g²;
    /// p -= lr / (1 + (t - 1) lr_decay) * g / (sqrt(s) + eps). Registered as "adagrad".
    /// </summary>
    /// <param name="parameters">The parameters to optimize.</param>
    /// <param name="lr">Learning rate (default 0.01).</param>
    /// <param name="lr_decay">Learning-rate decay (default 0).</param>
    /// <param name="weight_decay">L2 penalty added to the gradient (default 0).</param>
    /// <param name="initial_accumulator_value">Start of the sum of squares (default 0).</param>
    /// <param name="eps">Added to the root of the sum (default 1e-10).</param>
    public static Optimizer Adagrad(IEnumerable<Parameter> parameters, double lr = 0.01, double lr_decay = 0.0, double weight_decay = 0.0,
        double initial_accumulator_value = 0.0, double eps = 1e-10) =>
        Make("adagrad", parameters, ("lr", lr), ("lr_decay", lr_decay), ("weight_decay", weight_decay),
            ("initial_accumulator_value", initial_accumulator_value), ("eps", eps));

    /// <summary>
    /// RMSProp (Hinton et al. 2012) as <c>torch.optim.RMSprop</c>: v = alpha v + (1 - alpha) g²;
    /// p -= lr * g / (sqrt(v) + eps) (centered: sqrt(v - mean(g)²)), optionally with momentum on
    /// the scaled gradient. Registered as "rmsprop".
    /// </summary>
    /// <param name="parameters">The parameters to optimize.</param>
    /// <param name="lr">Learning rate (default 0.01).</param>
    /// <param name="alpha">Decay of the mean square (default 0.99).</param>
    /// <param name="eps">Added to the root mean square (default 1e-8).</param>
    /// <param name="weight_decay">L2 penalty added to the gradient (default 0).</param>
    /// <param name="momentum">Momentum on the scaled gradient (default 0).</param>
    /// <param name="centered">Divide by the estimated standard deviation (default false).</param>
    public static Optimizer RMSProp(IEnumerable<Parameter> parameters, double lr = 0.01, double alpha = 0.99, double eps = 1e-8,
        double weight_decay = 0.0, double momentum = 0.0, bool centered = false) =>
        Make("rmsprop", parameters, ("lr", lr), ("alpha", alpha), ("eps", eps), ("weight_decay", weight_decay),
            ("momentum", momentum), ("centered", centered));

    /// <summary>
    /// MNG (Shahid 2017, thesis sec. 3.4.1, Algorithm 1): the mean of the last k
    /// infinity-normalised gradients, shot from the middle of the last k iterates by their range
    /// plus eta_min. Registered as "mng".
    /// </summary>
    /// <param name="parameters">The parameters to optimize.</param>
    /// <param name="k">Number of remembered steps (default 5).</param>
    /// <param name="eta_min">Minimum learning rate added to the range (default 1e-3).</param>
    /// <param name="sign_only">Use only the gradients' signs (default false).</param>
    public static Optimizer MNG(IEnumerable<Parameter> parameters, int k = 5, double eta_min = 1e-3, bool sign_only = false) =>
        Make("mng", parameters, ("k", k), ("eta_min", eta_min), ("sign_only", sign_only));

    // ---- hypergradient descent ----------------------------------------------------------------

    /// <summary>
    /// SGD-HD (Baydin et al. 2018, hypergradient descent): SGD whose learning rate learns by
    /// gradient descent on its hypergradient, h_t = -g_t · g_{t-1}; alpha_t = alpha_{t-1} - hypergrad_lr * h_t;
    /// p -= alpha_t g_t. Registered as "sgd-hd". The learned rate: <c>Watch("lr")</c>.
    /// </summary>
    /// <param name="parameters">The parameters to optimize.</param>
    /// <param name="lr">Initial learning rate alpha_0 (default 1e-3).</param>
    /// <param name="hypergrad_lr">Hypergradient learning rate beta (default 1e-3).</param>
    /// <param name="weight_decay">L2 penalty added to the gradient (default 0).</param>
    /// <param name="per_parameter">One learning rate per parameter tensor (default false).</param>
    /// <param name="lr_guard">"none" (default), "clip" (at 0) or "multiplicative".</param>
    public static Optimizer SGDHD(IEnumerable<Parameter> parameters, double lr = 1e-3, double hypergrad_lr = 1e-3,
        double weight_decay = 0.0, bool per_parameter = false, string lr_guard = "none") =>
        Make("sgd-hd", parameters, ("lr", lr), ("hypergrad_lr", hypergrad_lr), ("weight_decay", weight_decay),
            ("per_parameter", per_parameter), ("lr_guard", lr_guard));

    /// <summary>
    /// SGDN-HD (Baydin et al. 2018): SGD with Nesterov momentum whose learning rate learns by
    /// hypergradient descent. Registered as "sgdn-hd".
    /// </summary>
    /// <param name="parameters">The parameters to optimize.</param>
    /// <param name="lr">Initial learning rate alpha_0 (default 1e-3).</param>
    /// <param name="hypergrad_lr">Hypergradient learning rate beta (default 1e-3).</param>
    /// <param name="momentum">Nesterov momentum (default 0.9).</param>
    /// <param name="weight_decay">L2 penalty added to the gradient (default 0).</param>
    /// <param name="per_parameter">One learning rate per parameter tensor (default false).</param>
    /// <param name="lr_guard">"none" (default), "clip" (at 0) or "multiplicative".</param>
    public static Optimizer SGDNHD(IEnumerable<Parameter> parameters, double lr = 1e-3, double hypergrad_lr = 1e-3, double momentum = 0.9,
        double weight_decay = 0.0, bool per_parameter = false, string lr_guard = "none") =>
        Make("sgdn-hd", parameters, ("lr", lr), ("hypergrad_lr", hypergrad_lr), ("momentum", momentum), ("weight_decay", weight_decay),
            ("per_parameter", per_parameter), ("lr_guard", lr_guard));

    /// <summary>
    /// Adam-HD (Baydin et al. 2018, Algorithm with Adam): Adam whose learning rate learns by
    /// gradient descent on its hypergradient h_t = -g_t · u_{t-1} (u the previous Adam direction):
    /// alpha_t = alpha_{t-1} - hypergrad_lr * h_t. Registered as "adam-hd". The learned rate: <c>Watch("lr")</c>.
    /// </summary>
    /// <param name="parameters">The parameters to optimize.</param>
    /// <param name="lr">Initial learning rate alpha_0 (default 1e-3).</param>
    /// <param name="hypergrad_lr">Hypergradient learning rate beta (default 1e-7, the paper's).</param>
    /// <param name="beta1">Adam's first-moment decay (default 0.9).</param>
    /// <param name="beta2">Adam's second-moment decay (default 0.999).</param>
    /// <param name="eps">Adam's eps (default 1e-8).</param>
    /// <param name="weight_decay">L2 penalty added to the gradient (default 0).</param>
    /// <param name="per_parameter">One learning rate per parameter tensor (default false).</param>
    /// <param name="lr_guard">"none" (default), "clip" (at 0) or "multiplicative".</param>
    public static Optimizer AdamHD(IEnumerable<Parameter> parameters, double lr = 1e-3, double hypergrad_lr = 1e-7, double beta1 = 0.9,
        double beta2 = 0.999, double eps = 1e-8, double weight_decay = 0.0, bool per_parameter = false, string lr_guard = "none") =>
        Make("adam-hd", parameters, ("lr", lr), ("hypergrad_lr", hypergrad_lr), ("beta1", beta1), ("beta2", beta2), ("eps", eps),
            ("weight_decay", weight_decay), ("per_parameter", per_parameter), ("lr_guard", lr_guard));

    /// <summary>
    /// Hypergradient descent with any of the nine combinations of Mittal 2019 (seed 001): the
    /// model optimizer <paramref name="op"/> ("sgd", "sgdn", "adam") whose learning rate is learned
    /// by <paramref name="lop"/> ("sgd", "sgdn", "adam") on the hypergradient. Registered as
    /// "{op}_op-{lop}_lop"; <c>Optimizer.Describe</c> lists each one's options and defaults.
    /// </summary>
    /// <param name="parameters">The parameters to optimize.</param>
    /// <param name="op">The model optimizer: "sgd", "sgdn" or "adam".</param>
    /// <param name="lop">The learning-rate optimizer: "sgd", "sgdn" or "adam".</param>
    /// <param name="options">Options by name (lr, hypergrad_lr, lop_beta1, ...).</param>
    public static Optimizer Hypergradient(IEnumerable<Parameter> parameters, string op = "adam", string lop = "sgd",
        IReadOnlyDictionary<string, object>? options = null) =>
        Create($"{op}_op-{lop}_lop", parameters, options);

    /// <summary>
    /// Any base optimizer whose chosen hyperparameters (<paramref name="adapt"/>: lr, beta1, beta2,
    /// momentum, weight_decay) learn by autodiff hypergradients (Baydin et al. 2018 generalised;
    /// Chandra et al. 2022 stack levels). Registered as "hd".
    /// </summary>
    /// <param name="parameters">The parameters to optimize.</param>
    /// <param name="inner">The optimizer whose hyperparameters adapt (default "adam").</param>
    /// <param name="adapt">Comma-separated hyperparameters to adapt (default "lr").</param>
    /// <param name="lr">The inner optimizer's initial learning rate (default: its own).</param>
    /// <param name="hypergrad_lr">Step size of each hyperparameter's gradient descent (default 1e-3).</param>
    /// <param name="levels">1, or 2 to adapt the hypergradient learning rates too (default 1).</param>
    /// <param name="level2_hypergrad_lr">Step size of level 2 (default 1e-6).</param>
    public static Optimizer AutoHD(IEnumerable<Parameter> parameters, string inner = "adam", string adapt = "lr", double? lr = null,
        double hypergrad_lr = 1e-3, int levels = 1, double level2_hypergrad_lr = 1e-6) =>
        Make("hd", parameters, ("inner", inner), ("adapt", adapt), ("lr", lr), ("hypergrad_lr", hypergrad_lr), ("levels", levels),
            ("level2_hypergrad_lr", level2_hypergrad_lr));

    // ---- wrappers -----------------------------------------------------------------------------

    /// <summary>
    /// Lookahead (Zhang et al. 2019, Algorithm 1) around any registered optimizer: k fast steps of
    /// <paramref name="inner"/>, then the slow weights step phi += alpha (theta - phi) and the
    /// fast weights restart from them. Registered as "lookahead".
    /// </summary>
    /// <param name="parameters">The parameters to optimize.</param>
    /// <param name="inner">The registered optimizer to wrap (default "adam").</param>
    /// <param name="k">Fast steps between synchronisations (default 5).</param>
    /// <param name="alpha">Slow-weights step size, in [0, 1] (default 0.5).</param>
    /// <param name="inner_options">Options of the inner optimizer (lr, momentum, beta1, ...).</param>
    public static Optimizer Lookahead(IEnumerable<Parameter> parameters, string inner = "adam", int k = 5, double alpha = 0.5,
        IReadOnlyDictionary<string, object>? inner_options = null) =>
        Make("lookahead", parameters, new[] { ("inner", (object?)inner), ("k", k), ("alpha", alpha) }.Concat(With(inner_options)).ToArray());

    /// <summary>
    /// Ranger (Wright 2019): Lookahead (k = 6, alpha = 0.5) around RAdam. Registered as "ranger".
    /// </summary>
    /// <param name="parameters">The parameters to optimize.</param>
    /// <param name="lr">RAdam's learning rate (default 1e-3).</param>
    /// <param name="k">Fast steps between synchronisations (default 6).</param>
    /// <param name="alpha">Slow-weights step size (default 0.5).</param>
    /// <param name="inner_options">Other options of RAdam (beta1, beta2, eps, weight_decay, threshold).</param>
    public static Optimizer Ranger(IEnumerable<Parameter> parameters, double lr = 1e-3, int k = 6, double alpha = 0.5,
        IReadOnlyDictionary<string, object>? inner_options = null) =>
        Make("ranger", parameters, new[] { ("lr", (object?)lr), ("k", k), ("alpha", alpha) }.Concat(With(inner_options)).ToArray());

    // ---- learned optimizers -------------------------------------------------------------------

    /// <summary>
    /// A learned optimizer of kind <paramref name="kind"/> (hyperadam, dmoptimizer, rnnprop,
    /// ktimesteps, kmomentums, msadam-la, msadam-mlp, msadam-rnn) with the meta-parameters of a
    /// trained-optimizer file (OPTLEARN, made by <c>optimizers meta-train --kind KIND --out FILE</c>);
    /// without a file, the one shipped as models/KIND.bin (hyperadam, dmoptimizer, rnnprop), which
    /// the build copies next to every program that references the library; with
    /// <paramref name="initSeed"/>, fresh untrained meta-parameters. Options given here override the file's.
    /// </summary>
    /// <param name="parameters">The parameters to optimize.</param>
    /// <param name="kind">The learned optimizer's kind.</param>
    /// <param name="file">A trained-optimizer file (default: the shipped one).</param>
    /// <param name="options">Options of the kind, overriding the file's (e.g. lr).</param>
    /// <param name="initSeed">Untrained meta-parameters drawn from this seed instead of a file.</param>
    /// <exception cref="ArgumentException">An unknown kind (ParamName "kind"); no file and none
    /// shipped, or a file of another kind (ParamName "file").</exception>
    /// <exception cref="FileNotFoundException">No such file.</exception>
    /// <exception cref="InvalidDataException">The file is not a trained-optimizer file, or is truncated or corrupt.</exception>
    public static Optimizer Learned(IEnumerable<Parameter> parameters, string kind, string? file = null,
        IReadOnlyDictionary<string, object>? options = null, int? initSeed = null)
    {
        ArgumentNullException.ThrowIfNull(kind);
        var k = Errors.Guard(() => Core.Registry.findLearnedKind(kind));
        return MakeLearned(k.Kind, parameters, file, initSeed, With(options).ToArray());
    }

    /// A learned optimizer: checks first that there is a file to load (with the facade's argument
    /// names in the message), and reports a file of another kind under "file".
    private static Optimizer MakeLearned(string kind, IEnumerable<Parameter> parameters, string? file, int? initSeed,
        params (string name, object? value)[] options)
    {
        ArgumentNullException.ThrowIfNull(parameters);
        if (initSeed is < 0)
            throw new ArgumentOutOfRangeException(nameof(initSeed), $"initSeed = {initSeed} is invalid; it must be >= 0");
        if (file is null && initSeed is null && Core.Learned.LearnedOptimizer.shipped(kind) is null)
            throw new ArgumentException(
                $"no trained {kind} was found: models/{kind}.bin is not next to the program ({AppContext.BaseDirectory}) nor in a clone of the repository above the current directory; " +
                $"pass file: \"PATH\" (a file made by optimizers meta-train --kind {kind} --out PATH) or initSeed: N for untrained meta-parameters", nameof(file));
        var all = new[] { ("file", (object?)file), ("init_seed", initSeed) }.Concat(options).ToArray();
        return Errors.Guard(() => Make(kind, parameters, all), p => p == "kind" ? "file" : p);
    }

    /// <summary>
    /// HyperAdam (Wang, Sun and Xu, AAAI 2019): J Adams with decay rates that a learned StateCell
    /// and LSTM choose per step, combined by learned weights; p -= lr * combined direction.
    /// Registered as "hyperadam"; the shipped models/hyperadam.bin was meta-trained on MNIST MLPs.
    /// </summary>
    /// <param name="parameters">The parameters to optimize.</param>
    /// <param name="file">A trained HyperAdam file (default: the shipped models/hyperadam.bin).</param>
    /// <param name="lr">Step size alpha (default: the file's, 0.005 for the shipped one).</param>
    /// <param name="initSeed">Untrained meta-parameters drawn from this seed instead of a file.</param>
    /// <exception cref="ArgumentException">No file given and none shipped, or a file of another kind (ParamName "file").</exception>
    /// <exception cref="FileNotFoundException">No such file.</exception>
    /// <exception cref="InvalidDataException">The file is not a trained-optimizer file, or is truncated or corrupt.</exception>
    public static Optimizer HyperAdam(IEnumerable<Parameter> parameters, string? file = null, double? lr = null, int? initSeed = null) =>
        MakeLearned("hyperadam", parameters, file, initSeed, ("lr", lr));

    /// <summary>
    /// DMoptimizer (Andrychowicz et al. 2016, "Learning to learn by gradient descent by gradient
    /// descent"): a coordinate-wise two-layer LSTM on the log-and-sign preprocessed gradient;
    /// p += scale * output. Registered as "dmoptimizer".
    /// </summary>
    /// <param name="parameters">The parameters to optimize.</param>
    /// <param name="file">A trained DMoptimizer file (default: the shipped one).</param>
    /// <param name="initSeed">Untrained meta-parameters drawn from this seed instead of a file.</param>
    /// <inheritdoc cref="HyperAdam" path="/exception"/>
    public static Optimizer DMOptimizer(IEnumerable<Parameter> parameters, string? file = null, int? initSeed = null) =>
        MakeLearned("dmoptimizer", parameters, file, initSeed);

    /// <summary>
    /// RNNprop (Lv, Jiang and Li, ICML 2017): a coordinate-wise two-layer LSTM on Adam-normalised
    /// gradients; p -= lr * tanh(output). Registered as "rnnprop".
    /// </summary>
    /// <param name="parameters">The parameters to optimize.</param>
    /// <param name="file">A trained RNNprop file (default: the shipped one).</param>
    /// <param name="lr">Step size (default: the file's).</param>
    /// <param name="initSeed">Untrained meta-parameters drawn from this seed instead of a file.</param>
    /// <inheritdoc cref="HyperAdam" path="/exception"/>
    public static Optimizer RNNProp(IEnumerable<Parameter> parameters, string? file = null, double? lr = null, int? initSeed = null) =>
        MakeLearned("rnnprop", parameters, file, initSeed, ("lr", lr));
}
