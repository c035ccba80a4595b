using System.Globalization;
using SummaryWriter = TorchSharp.Modules.SummaryWriter;

namespace Optimizers.Interop;

// TensorBoard logging of the optimizer's own values from a user's training loop.
public sealed partial class Optimizer
{
    private SummaryWriter? _writer;
    private string _prefix = "optimizer";

    /// <summary>The TensorBoard writer that <see cref="step"/> logs to (see <see cref="LogTo"/>), or null.</summary>
    public SummaryWriter? Writer => _writer;

    /// <summary>
    /// Log the optimizer's learning rates to a TensorBoard writer (TorchSharp's
    /// <c>torch.utils.tensorboard.SummaryWriter(dir)</c>) after every <see cref="step"/>, at the step
    /// count as global step: <c>PREFIX/lr</c>, the rate in force of groups with a settable rate
    /// (<see cref="ParamGroup.LearningRate"/>, e.g. as a scheduler set it), and
    /// <c>PREFIX/learned_lr</c>, the rate a hypergradient optimizer has learned
    /// (<see cref="Watch"/>("lr")). With several groups or one learned rate per parameter tensor
    /// the tags end in <c>/GROUP</c> or <c>/GROUP/lr[i]</c>. Log the loss yourself with
    /// <c>writer.add_scalar("loss", loss, step)</c>. Null stops logging.
    /// </summary>
    /// <param name="writer">The writer, or null.</param>
    /// <param name="prefix">The tags' first part (default "optimizer").</param>
    /// <returns>This optimizer, for <c>using var opt = Optimizer.AdamHD(ps).LogTo(writer);</c>.</returns>
    /// <exception cref="ArgumentException">An empty prefix.</exception>
    public Optimizer LogTo(SummaryWriter? writer, string prefix = "optimizer")
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(prefix);
        _writer = writer;
        _prefix = prefix.TrimEnd('/');
        return this;
    }

    private void Log()
    {
        if (_writer is null) return;
        int step = StepCount;
        bool many = _groups.Count > 1;
        for (int gi = 0; gi < _groups.Count; gi++)
        {
            var g = _groups[gi];
            string group = gi.ToString(CultureInfo.InvariantCulture);
            if (g.HasLearningRate)
                _writer.add_scalar(many ? $"{_prefix}/lr/{group}" : $"{_prefix}/lr", (float)g.LearningRate, step);
        }
        var learned = Watch("lr");
        foreach (var (key, value) in learned)
        {
            // keys are "GROUP/lr" or "GROUP/lr[i]"
            var tag = learned.Count == 1 ? $"{_prefix}/learned_lr" : $"{_prefix}/learned_lr/{key}";
            _writer.add_scalar(tag, (float)value, step);
        }
    }
}
