// Milliseconds per optimizer step: TorchSharp's torch.optim.Adam against the facade's
// Optimizer.Adam (fast path, the default) and the facade on the pure path, on the same
// parameters and the same fixed gradients, in one process. Blocks of steps alternate between
// the optimizers so that machine load affects all alike; each block's median is recorded and the
// median of those is printed (with the range of block medians).
//   facade-bench [shape: bench | mlp, default bench] [steps per block, default 30] [blocks, default 5]
//                [which: comma-separated torch,fast,pure, default torch,fast] [threads, default all]
// The pure path allocates new tensors every step; with glibc's allocator (shared/notes) that
// slows every allocating optimizer of the process, TorchSharp's Adam included, so it is not in
// the default set: measure it in a run of its own.
// bench: 10M float32 parameters in 50 tensors (200,000 each), as `optimizers bench`.
// mlp:   an MLP 784-2048-2048-10 (5,824,522 parameters in 6 tensors).
using System.Diagnostics;
using Optimizers.Interop;
using TorchSharp;
using static TorchSharp.torch;
using Parameter = TorchSharp.Modules.Parameter;

string shape = args.Length > 0 ? args[0] : "bench";
int steps = args.Length > 1 ? int.Parse(args[1]) : 30;
int blocks = args.Length > 2 ? int.Parse(args[2]) : 5;
var which = (args.Length > 3 ? args[3] : "torch,fast").Split(',');
if (args.Length > 4) torch.set_num_threads(int.Parse(args[4]));
if (shape != "bench" && shape != "mlp" || steps < 1 || blocks < 1 || which.Except(new[] { "torch", "fast", "pure" }).Any())
{
    Console.Error.WriteLine("usage: facade-bench [bench | mlp] [steps per block >= 1] [blocks >= 1] [torch,fast,pure] [threads]");
    return 2;
}

torch.manual_seed(0);
long[][] shapes = shape == "bench"
    ? Enumerable.Repeat(new long[] { 200_000 }, 50).ToArray()
    : new[] { new long[] { 2048, 784 }, new long[] { 2048 }, new long[] { 2048, 2048 }, new long[] { 2048 }, new long[] { 10, 2048 }, new long[] { 10 } };

// Three copies of the same parameters with the same gradients, one per optimizer.
Parameter[] Make()
{
    torch.manual_seed(0);
    return shapes.Select(s =>
    {
        var p = new Parameter(torch.randn(s) * 0.01f);
        p.grad = torch.randn(s) * 0.001f;
        return p;
    }).ToArray();
}
var forTorch = Make();
var forFast = Make();
var forPure = Make();
long count = forTorch.Sum(p => p.numel());
Console.WriteLine($"{shape}: {count:N0} float32 parameters in {shapes.Length} tensors, {torch.get_num_threads()} threads, " +
    $"{blocks} blocks of {steps} steps; load average {File.ReadAllText("/proc/loadavg").Split(' ')[0]}");

var torchAdam = torch.optim.Adam(forTorch, lr: 1e-3);
using var fast = Optimizer.Adam(forFast, lr: 1e-3);
using var pure = Optimizer.Adam(forPure, lr: 1e-3);
pure.UseFastPath = false;

double Block(Action step)
{
    var times = new double[steps];
    for (int i = 0; i < steps; i++)
    {
        var sw = Stopwatch.StartNew();
        using (var scope = torch.NewDisposeScope()) step();
        times[i] = sw.Elapsed.TotalMilliseconds;
    }
    return Median(times);
}
static double Median(IEnumerable<double> xs)
{
    var a = xs.OrderBy(x => x).ToArray();
    return a.Length % 2 == 1 ? a[a.Length / 2] : (a[a.Length / 2 - 1] + a[a.Length / 2]) / 2;
}

var runs = new (string key, string name, Action step, List<double> medians)[]
{
    ("torch", "torch.optim.Adam (TorchSharp)", () => torchAdam.step(), new()),
    ("fast", "Optimizer.Adam, fast path (default)", () => fast.step(), new()),
    ("pure", "Optimizer.Adam, pure path", () => pure.step(), new()),
}.Where(r => which.Contains(r.key)).ToArray();
foreach (var r in runs) Block(r.step); // warm-up
for (int b = 0; b < blocks; b++)
    foreach (var r in runs) r.medians.Add(Block(r.step));
foreach (var (_, name, _, medians) in runs)
    Console.WriteLine($"{name,-38} {Median(medians),7:F2} ms/step  (block medians {medians.Min():F2}-{medians.Max():F2})");

// Those measured made the same steps from the same start: they must agree.
var done = runs.Select(r => r.key switch { "torch" => forTorch, "fast" => forFast, _ => forPure }).ToArray();
for (int i = 1; i < done.Length; i++)
{
    double diff = done[0].Zip(done[i]).Max(pq => (pq.First - pq.Second).abs().max().ToDouble());
    Console.WriteLine($"max |{runs[0].key} - {runs[i].key}| = {diff:G3} after {(blocks + 1) * steps} steps");
}
return 0;
