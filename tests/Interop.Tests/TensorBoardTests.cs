using Google.Protobuf;
using Optimizers.Interop;
using TorchSharp;
using Xunit;

namespace Optimizers.Interop.Tests;

/// Optimizer.LogTo: a user's own loop logs the optimizer's rates to TensorBoard through
/// TorchSharp's SummaryWriter; read back here as TensorBoard reads event files (TFRecord framing
/// with masked CRC-32C, then the Event protobuf).
public class TensorBoardTests
{
    private static readonly uint[] Table = Enumerable.Range(0, 256).Select(n =>
    {
        uint c = (uint)n;
        for (int k = 0; k < 8; k++) c = (c & 1) != 0 ? 0x82F63B78u ^ (c >> 1) : c >> 1;
        return c;
    }).ToArray();

    private static uint Masked(byte[] b, int offset, int count)
    {
        uint c = 0xFFFFFFFFu;
        for (int i = offset; i < offset + count; i++) c = Table[(c ^ b[i]) & 0xFF] ^ (c >> 8);
        c ^= 0xFFFFFFFFu;
        return ((c >> 15) | (c << 17)) + 0xa282ead8u;
    }

    /// (tag, step, value) of every scalar in the event files under `dir`.
    private static List<(string tag, long step, float value)> Scalars(string dir)
    {
        var result = new List<(string, long, float)>();
        foreach (var file in Directory.GetFiles(dir, "*tfevents*", SearchOption.AllDirectories))
        {
            var b = File.ReadAllBytes(file);
            for (int at = 0; at < b.Length;)
            {
                int n = (int)BitConverter.ToUInt64(b, at);
                Assert.Equal(BitConverter.ToUInt32(b, at + 8), Masked(b, at, 8));
                Assert.Equal(BitConverter.ToUInt32(b, at + 12 + n), Masked(b, at + 12, n));
                var ev = new CodedInputStream(b, at + 12, n);
                long step = 0;
                for (uint t; (t = ev.ReadTag()) != 0;)
                {
                    int field = WireFormat.GetTagFieldNumber(t);
                    if (field == 2) step = ev.ReadInt64();
                    else if (field == 5)
                    {
                        var summary = new CodedInputStream(ev.ReadBytes().ToByteArray());
                        for (uint u; (u = summary.ReadTag()) != 0;)
                        {
                            if (WireFormat.GetTagFieldNumber(u) != 1) { summary.SkipLastField(); continue; }
                            var value = new CodedInputStream(summary.ReadBytes().ToByteArray());
                            string tag = ""; float? x = null;
                            for (uint v; (v = value.ReadTag()) != 0;)
                                switch (WireFormat.GetTagFieldNumber(v))
                                {
                                    case 1: tag = value.ReadString(); break;
                                    case 2: x = value.ReadFloat(); break;
                                    default: value.SkipLastField(); break;
                                }
                            if (x is float f) result.Add((tag, step, f));
                        }
                    }
                    else ev.SkipLastField();
                }
                at += 12 + n + 4;
            }
        }
        return result;
    }

    [Fact]
    public void LogToWritesTheLearnedLearningRateAtEveryStep()
    {
        var dir = Directory.CreateTempSubdirectory("optimizers-tb-");
        try
        {
            var (model, x, y) = Fixtures.Problem();
            var writer = torch.utils.tensorboard.SummaryWriter(Path.Combine(dir.FullName, "adam-hd"));
            using var opt = Optimizer.AdamHD(model.parameters(), lr: 0.01, hypergrad_lr: 1e-3).LogTo(writer);
            Assert.Same(writer, opt.Writer);
            var learned = new List<double>();
            for (int i = 0; i < 5; i++)
            {
                Fixtures.Train(model, opt, x, y, 1);
                learned.Add(opt.Watch("lr").Single().Value);
            }
            var scalars = Scalars(dir.FullName);
            var lr = scalars.Where(s => s.tag == "optimizer/learned_lr").ToList();
            Assert.Equal(new long[] { 1, 2, 3, 4, 5 }, lr.Select(s => s.step));
            Assert.Equal(learned.Select(v => (float)v), lr.Select(s => s.value));
            Assert.True(learned.Distinct().Count() > 1, "the rate moved");

            // a settable rate, as a scheduler sets it, under optimizer/lr
            var sgdWriter = torch.utils.tensorboard.SummaryWriter(Path.Combine(dir.FullName, "sgd"));
            using var sgd = Optimizer.SGD(model.parameters(), lr: 0.1).LogTo(sgdWriter, "sgd");
            var sched = LRScheduler.StepLR(sgd, step_size: 2, gamma: 0.5);
            Fixtures.Train(model, sgd, x, y, 4, sched);
            var rates = Scalars(Path.Combine(dir.FullName, "sgd")).Where(s => s.tag == "sgd/lr").Select(s => s.value).ToArray();
            Assert.Equal(new[] { 0.1f, 0.1f, 0.05f, 0.05f }, rates);
        }
        finally { dir.Delete(true); }
    }
}
