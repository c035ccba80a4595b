namespace Optimizers.Experiments

open System.Globalization

/// Number formatting shared by every output of the host: invariant culture, round-trip precision.
module Output =

    /// A float with enough digits to read back the same double.
    let num (v: float) : string = v.ToString("R", CultureInfo.InvariantCulture)

    /// A short float for tables meant for people.
    let short (v: float) : string = v.ToString("G4", CultureInfo.InvariantCulture)

    /// Three decimals, for tables of losses and accuracies (mean +- standard error).
    let f3 (v: float) : string = v.ToString("0.000", CultureInfo.InvariantCulture)
