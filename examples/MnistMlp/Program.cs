// Train a small TorchSharp MLP on the MNIST set shipped with the library with Adam-HD
// (hypergradient descent), the learned HyperAdam (the shipped models/hyperadam.bin) or any other
// optimizer of the catalog, and print the test accuracy.
//   dotnet run --project examples/MnistMlp -c Release -- [steps] [optimizer]
//   e.g.  -- 1000 adam-hd   |   -- 150 hyperadam   |   -- 1000 adam
// Measured on a 2-core machine shared with other jobs (load average 6-9): 1000 Adam-HD steps,
// test accuracy 0.899 in 24 s; 150 HyperAdam steps (an LSTM per coordinate, about 0.3 s a step
// there), 0.905 in 45 s; 1000 Adam steps, 0.899 in 10 s.
using System.Diagnostics;
using Optimizers.Interop;
using TorchSharp;
using static TorchSharp.torch;

if (args.Length > 2 || (args.Length > 0 && (!int.TryParse(args[0], out var s) || s < 0)))
{
    Console.Error.WriteLine("usage: mnist-mlp [steps >= 0, default 1000] [optimizer, default adam-hd; one of: "
        + string.Join(", ", Optimizer.Names) + "]");
    return 2;
}
int steps = args.Length > 0 ? int.Parse(args[0]) : 1000;
string name = args.Length > 1 ? args[1] : "adam-hd";
const int batchSize = 128;

// Nothing to set up: the library's startup hook (runtimeconfig STARTUP_HOOKS, from its build
// targets) has already made LibTorch's worker threads spin only briefly before they sleep, which
// keeps a step fast when another process shares the cores (README, "Engine notes").
Console.WriteLine($"OpenMP at start: GOMP_SPINCOUNT={Environment.GetEnvironmentVariable("GOMP_SPINCOUNT") ?? "unset"}");
torch.manual_seed(0);
var data = Mnist.Load();
Console.WriteLine($"MNIST (shipped set): {data.Train.Count} training, {data.Test.Count} test images");

// MlpMnist, the network HyperAdam was meta-trained on: 784-20-10, sigmoid, weights N(0, 0.1^2).
var model = nn.Sequential(nn.Flatten(), nn.Linear(784, 20), nn.Sigmoid(), nn.Linear(20, 10));
using (torch.no_grad())
    foreach (var p in model.parameters()) nn.init.normal_(p, 0.0, 0.1);

Optimizer opt;
try
{
    opt = name switch
    {
        "hyperadam" => Optimizer.HyperAdam(model.parameters()),           // models/hyperadam.bin
        "adam-hd" => Optimizer.AdamHD(model.parameters(), lr: 1e-3, hypergrad_lr: 1e-7),
        _ => Optimizer.Create(name, model.parameters()),
    };
}
catch (ArgumentException e)
{
    Console.Error.WriteLine($"mnist-mlp: {e.Message}");
    return 2;
}
using var owned = opt;
Console.WriteLine($"optimizer: {opt.Name}, {steps} steps of batch {batchSize}");

var clock = Stopwatch.StartNew();
var order = torch.randperm(data.Train.Count).DetachFromDisposeScope();
long next = 0;
for (int step = 1; step <= steps; step++)
{
    using var scope = torch.NewDisposeScope();
    if (next + batchSize > data.Train.Count) { order.Dispose(); order = torch.randperm(data.Train.Count).DetachFromDisposeScope(); next = 0; }
    var idx = order.narrow(0, next, batchSize);
    next += batchSize;
    opt.zero_grad();
    var loss = nn.functional.cross_entropy(model.forward(data.Train.Images.index_select(0, idx)), data.Train.Labels.index_select(0, idx));
    loss.backward();
    opt.step();
    double l = loss.ToDouble();
    if (double.IsNaN(l) || double.IsInfinity(l))
    {
        Console.Error.WriteLine($"the loss is {l} at step {step}: the run diverged");
        return 1;
    }
    if (step == 1 || step % 50 == 0 || step == steps) Console.WriteLine($"step {step,5}  loss {l:F4}");
}

using (torch.no_grad())
using (var scope = torch.NewDisposeScope())
{
    var predicted = model.forward(data.Test.Images).argmax(1);
    double accuracy = predicted.eq(data.Test.Labels).to_type(ScalarType.Float64).mean().ToDouble();
    Console.WriteLine($"test accuracy: {accuracy:F4} after {steps} steps ({clock.Elapsed.TotalSeconds:F1} s)");
}
foreach (var (key, value) in opt.Watch("lr"))
    Console.WriteLine($"learned learning rate {key}: {value:G4}");
return 0;
