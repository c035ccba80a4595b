"""Reference trajectories from PyTorch's torch.optim for the foundation optimizers.

Independent of our implementation: PyTorch computes them. Run by a developer with PyTorch
installed (Debian: apt-get install python3-torch); the CSVs are committed and the tests read
them, so CI needs no Python.

    /usr/bin/python3 tests/reference/torch_foundation.py

Each CSV: step,loss,p0,p1 with step 0 the start, float64, Rosenbrock a=1 b=100 from (-1.5, 2),
the same layout as `optimizers trace --format csv`.
"""
import os
import torch

OUT = os.path.join(os.path.dirname(__file__), "..", "Core.Tests", "reference")
STEPS = 200
START = [-1.5, 2.0]


def rosenbrock(p):
    x, y = p[0], p[1]
    return (1.0 - x) ** 2 + 100.0 * (y - x * x) ** 2


def trajectory(name, make, steps=STEPS):
    p = torch.tensor(START, dtype=torch.float64, requires_grad=True)
    opt = make([p])
    rows = []
    for k in range(steps + 1):
        opt.zero_grad()
        loss = rosenbrock(p)
        loss.backward()
        rows.append([k, loss.item()] + p.detach().tolist())
        if k < steps:
            opt.step()
    with open(os.path.join(OUT, name + ".csv"), "w") as f:
        f.write("step,loss,p0,p1\n")
        for r in rows:
            f.write("%d,%s\n" % (r[0], ",".join(repr(float(v)) for v in r[1:])))


CASES = {
    # name: (constructor, the same settings as our `trace` options)
    "sgd_lr1e-3": lambda ps: torch.optim.SGD(ps, lr=1e-3),
    "sgd_lr1e-4_wd0.1": lambda ps: torch.optim.SGD(ps, lr=1e-4, weight_decay=0.1),
    "momentum_lr1e-4": lambda ps: torch.optim.SGD(ps, lr=1e-4, momentum=0.9),
    "momentum_lr1e-4_damp0.5_wd0.01": lambda ps: torch.optim.SGD(ps, lr=1e-4, momentum=0.9, dampening=0.5, weight_decay=0.01),
    "nesterov_lr1e-4": lambda ps: torch.optim.SGD(ps, lr=1e-4, momentum=0.9, nesterov=True),
    "adam_default": lambda ps: torch.optim.Adam(ps),
    "adam_lr0.01": lambda ps: torch.optim.Adam(ps, lr=0.01),
    "adam_lr0.05_b0.8_0.99_eps1e-6_wd0.01": lambda ps: torch.optim.Adam(ps, lr=0.05, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.01),
}

if __name__ == "__main__":
    os.makedirs(OUT, exist_ok=True)
    print("torch", torch.__version__)
    for name, make in CASES.items():
        trajectory(name, make)
        print("wrote", name)
