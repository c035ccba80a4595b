namespace Optimizers

open System.IO

/// Where the files shipped with the library (models/*.bin, data/mnist-*) are found besides next to
/// the program (where the build copies them) and in a clone of the repository.
module Shipped =

    /// The NuGet package's own copy: the core's package holds them under optimizers/, two folders
    /// above its assembly (lib/TFM/Optimizers.Core.dll). This is what an F# script that references
    /// the package sees, since it has no build to copy them beside a program.
    let packageFolder () : string option =
        let dll = typeof<Tree>.Assembly.Location
        if System.String.IsNullOrEmpty dll then None
        else
            let d = Path.GetFullPath(Path.Combine(Path.GetDirectoryName dll, "..", "..", "optimizers"))
            if Directory.Exists d then Some d else None
