#!/usr/bin/env python3
"""torch.optim.NAdam trajectories on float64 Rosenbrock from both standard starts.

Writes tests/Core.Tests/reference/nadam/<case>.csv (columns step,loss,p0,p1; step 0 is the start)
and nadam/manifest.csv (case,options,start,source), where `options` is the option string of our
registry's "nadam" that must reproduce the case and `start` the start point "x;y".
The F# test (tests/Core.Tests/TorchTests.fs) reads only these files.

Run from the repository root with Debian's python3-torch (1.13):
    /usr/bin/python3 tests/reference/torch_nadam.py

torch.optim.NAdam runs as users run it: default arguments (foreach=None, the single-tensor code,
whose momentum term uses mu_product * mu * mu_next), the parameter in float64. The default dtype
is float64 so that the state's mu_product (made with torch.tensor(1.)) is float64 as ours is for
float64 parameters; with torch's float32 default the product is rounded to float32 each step,
which moves the trajectory by about 2e-9 (relative).
"""
import csv
import math
import os

import torch

torch.set_default_dtype(torch.float64)
torch.set_num_threads(1)

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "Core.Tests", "reference", "nadam")
STEPS = 200
STARTS = {"a": [-1.5, 2.0], "b": [-1.2, 1.0]}


def rosenbrock(v, a=1.0, b=100.0):
    x = v[0]
    y = v[1]
    return (a - x).square() + b * (y - x.square()).square()


def run(start, **kw):
    p = torch.tensor(start, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.NAdam([p], **kw)
    rows = []
    for k in range(STEPS + 1):
        opt.zero_grad()
        loss = rosenbrock(p)
        loss.backward()
        rows.append((k, loss.item(), p[0].item(), p[1].item()))
        if k < STEPS:
            opt.step()
    return rows


# (case, our options, torch keyword arguments)
CASES = [
    ("lr0.01", "lr=0.01", dict(lr=0.01)),
    ("lr0.001", "lr=0.001", dict(lr=0.001)),
    ("lr0.01_b0.8_0.99_wd0.01", "lr=0.01;beta1=0.8;beta2=0.99;weight_decay=0.01",
     dict(lr=0.01, betas=(0.8, 0.99), weight_decay=0.01)),
    ("lr0.005_psi0.02", "lr=0.005;momentum_decay=0.02", dict(lr=0.005, momentum_decay=0.02)),
]


def main():
    os.makedirs(OUT, exist_ok=True)
    n = 0
    with open(os.path.join(OUT, "manifest.csv"), "w", newline="") as mf:
        manifest = csv.writer(mf, lineterminator="\n")
        manifest.writerow(["case", "options", "start", "source"])
        for tag, start in STARTS.items():
            for name, options, kw in CASES:
                case = f"{name}_{tag}"
                rows = run(start, **kw)
                for r in rows:
                    if not all(math.isfinite(v) for v in r[1:]):
                        raise SystemExit(f"{case}: not finite at step {r[0]}: {r}")
                with open(os.path.join(OUT, case + ".csv"), "w", newline="") as f:
                    w = csv.writer(f, lineterminator="\n")
                    w.writerow(["step", "loss", "p0", "p1"])
                    for k, loss, p0, p1 in rows:
                        w.writerow([k, repr(loss), repr(p0), repr(p1)])
                manifest.writerow([case, options, f"{start[0]!r};{start[1]!r}", f"torch.optim.NAdam {torch.__version__}"])
                n += 1
                print(f"{case:28s} loss {rows[0][1]:.4g} -> {rows[-1][1]:.6g}  p = ({rows[-1][2]:.6f}, {rows[-1][3]:.6f})")
    print(f"torch {torch.__version__}; wrote {n} cases to {os.path.normpath(OUT)}")


if __name__ == "__main__":
    main()
