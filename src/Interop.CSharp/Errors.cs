using Core = Optimizers;

namespace Optimizers.Interop;

/// <summary>
/// The facade's exceptions are ordinary .NET ones with one message format, .NET's own:
/// "what is wrong and what is valid (Parameter 'name')", where name is the C# argument. The core
/// raises its own InvalidOptionException (an ArgumentException subclass from F#, whose message
/// omits the parameter suffix); every public entry point runs its core calls through
/// <see cref="Guard{T}"/>, which turns it into an ArgumentOutOfRangeException (a value outside
/// its valid range) or an ArgumentException (anything else) carrying the same text and ParamName,
/// and the core's divergence exception into an ArithmeticException.
/// </summary>
internal static class Errors
{
    public static T Guard<T>(Func<T> f, Func<string?, string?>? rename = null)
    {
        try { return f(); }
        catch (Exception e) when (Translate(e, rename) is { } t) { throw t; }
    }

    public static void Guard(Action f, Func<string?, string?>? rename = null) =>
        Guard<bool>(() => { f(); return true; }, rename);

    /// <summary>The facade's exception for a core one; null when it is already ordinary.</summary>
    public static Exception? Translate(Exception e, Func<string?, string?>? rename = null)
    {
        switch (e)
        {
            case Core.InvalidOptionException o:
                var name = rename?.Invoke(o.ParamName) ?? o.ParamName;
                // Hyper.fs and the schedules say "is invalid; it must be ..." for a value out of range.
                return o.Message.Contains(" must be ", StringComparison.Ordinal)
                    ? new ArgumentOutOfRangeException(name, o.Message)
                    : new ArgumentException(o.Message, name);
            case ArgumentException a when rename is not null && a.ParamName is { } p && rename(p) is { } q && q != p:
                return a is ArgumentOutOfRangeException ? new ArgumentOutOfRangeException(q, Bare(a)) : new ArgumentException(Bare(a), q);
            case Core.DivergedException d:
                return new ArithmeticException($"the loss is {d.Loss} at step {d.Step}: the run diverged; lower the learning rate or check the data");
            default:
                return null;
        }
    }

    /// <summary>An ArgumentException's message without .NET's " (Parameter '...')" suffix.</summary>
    private static string Bare(ArgumentException a)
    {
        var suffix = $" (Parameter '{a.ParamName}')";
        int at = a.Message.IndexOf(suffix, StringComparison.Ordinal);
        return at >= 0 ? a.Message[..at] : a.Message;
    }
}
