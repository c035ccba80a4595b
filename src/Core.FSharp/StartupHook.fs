namespace global

/// A .NET startup hook: the runtime calls `Initialize` before the program's Main when the
/// program's runtimeconfig names this assembly under STARTUP_HOOKS, which the build targets of the
/// Optimizers.Core package (buildTransitive/Optimizers.Core.targets, also imported by every project
/// of the repository) add to every executable. It limits LibTorch's OpenMP spinning
/// (`Optimizers.OpenMp.limitSpinning`) before anything can load LibTorch, which reads the setting
/// once. It touches no tensor. Opt out: set OMP_WAIT_POLICY or GOMP_SPINCOUNT, or build with
/// -p:OptimizersLimitSpinning=false.
[<Sealed; AbstractClass>]
type internal StartupHook =
    /// Called by the runtime before Main.
    static member Initialize() : unit =
        try Optimizers.OpenMp.limitSpinning () |> ignore with _ -> ()
