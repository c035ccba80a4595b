#!/usr/bin/env python3
"""Reference trajectories of the hand-designed catalog, computed by torch.optim.

Writes tests/Core.Tests/reference/catalog/<case>.csv (columns step,loss,p0,p1; step 0 is the
start) and catalog/manifest.csv (case,optimizer,options,source), where `optimizer` and `options`
are the registry name and option string of our implementation that must reproduce the case.
The F# tests read only these files (CI machines have no torch).

Run from the repository root with Debian's python3-torch (1.13):
    /usr/bin/python3 tests/reference/torch_catalog.py

Task: Rosenbrock f(x, y) = (1 - x)^2 + 100 (y - x^2)^2 from (-1.5, 2), 200 steps, float64,
with the loss written exactly as Optimizers.Tasks.Synthetic.rosenbrock writes it, so that the
gradients agree to the last bit.

Notes on the sources:
* Every optimizer PyTorch has is run by torch.optim itself (foreach=False, the single-tensor
  code, which is what 1.13 runs by default). For NAdam that code multiplies mu_t into the
  momentum term's product twice (mu_product_next = mu_product * mu * mu_next); PyTorch 2.0 and
  1.13's foreach code use mu_product * mu_next (pytorch/pytorch#92699). Ours follows the default
  (torch_nadam.py has more NAdam cases).
* AMSGrad is torch.optim.Adam(amsgrad=True).
* PyTorch has no SGDW: the sgdw cases run torch.optim.SGD (no weight decay) after the decoupled
  decay p <- p (1 - lr wd), the way torch.optim.AdamW applies it ("emulated" in the manifest).
* PyTorch has no AdaBound: the adabound cases transcribe the step of the authors' reference
  implementation (github.com/Luolc/AdaBound, adabound.py) in torch ops ("transcribed").
"""
import csv
import math
import os

import torch

torch.set_default_dtype(torch.float64)  # NAdam's mu_product is made with torch.tensor(1.)
torch.set_num_threads(1)

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "Core.Tests", "reference", "catalog")
START = [-1.5, 2.0]
STEPS = 200


def rosenbrock(v, a=1.0, b=100.0):
    x = v[0]
    y = v[1]
    return (a - x).square() + b * (y - x.square()).square()


def run_torch(make):
    p = torch.tensor(START, dtype=torch.float64, requires_grad=True)
    opt = make([p])
    rows = []
    for k in range(STEPS + 1):
        opt.zero_grad()
        loss = rosenbrock(p)
        loss.backward()
        rows.append((k, loss.item(), p[0].item(), p[1].item()))
        if k < STEPS:
            opt.step()
    return rows


def run_sgdw(lr, momentum, weight_decay, dampening=0.0, nesterov=False):
    def make(params):
        sgd = torch.optim.SGD(params, lr=lr, momentum=momentum, dampening=dampening,
                              nesterov=nesterov, foreach=False)

        class Decoupled:
            def zero_grad(self):
                sgd.zero_grad()

            @torch.no_grad()
            def step(self):
                for p in params:
                    p.mul_(1 - lr * weight_decay)
                sgd.step()

        return Decoupled()

    return run_torch(make)


class AdaBoundTranscribed:
    """The step of github.com/Luolc/AdaBound adabound.py (AdaBound / AMSBound), in torch ops."""

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), final_lr=0.1, gamma=1e-3, eps=1e-8,
                 weight_decay=0.0, amsbound=False):
        self.params = list(params)
        self.lr, self.base_lr, self.betas = lr, lr, betas
        self.final_lr, self.gamma, self.eps = final_lr, gamma, eps
        self.weight_decay, self.amsbound = weight_decay, amsbound
        self.state = [dict(step=0, exp_avg=torch.zeros_like(p), exp_avg_sq=torch.zeros_like(p),
                           max_exp_avg_sq=torch.zeros_like(p)) for p in self.params]

    def zero_grad(self):
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self):
        beta1, beta2 = self.betas
        for p, st in zip(self.params, self.state):
            grad = p.grad
            st["step"] += 1
            if self.weight_decay != 0:
                grad = grad.add(p, alpha=self.weight_decay)
            exp_avg, exp_avg_sq = st["exp_avg"], st["exp_avg_sq"]
            exp_avg.mul_(beta1).add_(grad, alpha=1 - beta1)
            exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
            if self.amsbound:
                torch.max(st["max_exp_avg_sq"], exp_avg_sq, out=st["max_exp_avg_sq"])
                denom = st["max_exp_avg_sq"].sqrt().add_(self.eps)
            else:
                denom = exp_avg_sq.sqrt().add_(self.eps)
            bias_correction1 = 1 - beta1 ** st["step"]
            bias_correction2 = 1 - beta2 ** st["step"]
            step_size = self.lr * math.sqrt(bias_correction2) / bias_correction1
            final_lr = self.final_lr * self.lr / self.base_lr
            lower_bound = final_lr * (1 - 1 / (self.gamma * st["step"] + 1))
            upper_bound = final_lr * (1 + 1 / (self.gamma * st["step"]))
            step_size = torch.full_like(denom, step_size)
            step_size.div_(denom).clamp_(lower_bound, upper_bound).mul_(exp_avg)
            p.add_(-step_size)


O = torch.optim
CASES = [
    # (case, registry name, our options, source, rows)
    ("adagrad_default", "adagrad", "", "torch.optim.Adagrad",
     lambda: run_torch(lambda ps: O.Adagrad(ps, foreach=False))),
    ("adagrad_decay", "adagrad", "lr=0.5;lr_decay=0.01;weight_decay=0.01;initial_accumulator_value=0.1;eps=1e-10",
     "torch.optim.Adagrad",
     lambda: run_torch(lambda ps: O.Adagrad(ps, lr=0.5, lr_decay=0.01, weight_decay=0.01,
                                            initial_accumulator_value=0.1, eps=1e-10, foreach=False))),
    ("rmsprop_default", "rmsprop", "", "torch.optim.RMSprop",
     lambda: run_torch(lambda ps: O.RMSprop(ps, foreach=False))),
    ("rmsprop_momentum", "rmsprop", "lr=0.001;momentum=0.5;weight_decay=0.01", "torch.optim.RMSprop",
     lambda: run_torch(lambda ps: O.RMSprop(ps, lr=1e-3, momentum=0.5, weight_decay=0.01, foreach=False))),
    ("rmsprop_centered", "rmsprop", "lr=0.001;alpha=0.9;momentum=0.9;centered=true;eps=1e-6",
     "torch.optim.RMSprop",
     lambda: run_torch(lambda ps: O.RMSprop(ps, lr=1e-3, alpha=0.9, momentum=0.9, centered=True, eps=1e-6,
                                            foreach=False))),
    ("adamax_default", "adamax", "", "torch.optim.Adamax",
     lambda: run_torch(lambda ps: O.Adamax(ps, foreach=False))),
    ("adamax_wd", "adamax", "lr=0.01;beta1=0.8;beta2=0.99;weight_decay=0.1", "torch.optim.Adamax",
     lambda: run_torch(lambda ps: O.Adamax(ps, lr=0.01, betas=(0.8, 0.99), weight_decay=0.1, foreach=False))),
    ("adamax_fast", "adamax", "lr=0.05", "torch.optim.Adamax",
     lambda: run_torch(lambda ps: O.Adamax(ps, lr=0.05, foreach=False))),
    ("amsgrad_default", "amsgrad", "", "torch.optim.Adam(amsgrad=True)",
     lambda: run_torch(lambda ps: O.Adam(ps, amsgrad=True, foreach=False))),
    ("amsgrad_wd", "amsgrad", "lr=0.05;beta1=0.9;beta2=0.99;weight_decay=0.01",
     "torch.optim.Adam(amsgrad=True)",
     lambda: run_torch(lambda ps: O.Adam(ps, lr=0.05, betas=(0.9, 0.99), weight_decay=0.01, amsgrad=True,
                                         foreach=False))),
    ("radam_default", "radam", "", "torch.optim.RAdam",
     lambda: run_torch(lambda ps: O.RAdam(ps, foreach=False))),
    ("radam_b2", "radam", "lr=0.005;beta1=0.8;beta2=0.9;weight_decay=0.01", "torch.optim.RAdam",
     lambda: run_torch(lambda ps: O.RAdam(ps, lr=0.005, betas=(0.8, 0.9), weight_decay=0.01, foreach=False))),
    ("nadam_default", "nadam", "", "torch.optim.NAdam",
     lambda: run_torch(lambda ps: O.NAdam(ps, foreach=False))),
    ("nadam_wd", "nadam", "lr=0.01;momentum_decay=0.01;weight_decay=0.01;beta2=0.99",
     "torch.optim.NAdam",
     lambda: run_torch(lambda ps: O.NAdam(ps, lr=0.01, betas=(0.9, 0.99), momentum_decay=0.01,
                                          weight_decay=0.01, foreach=False))),
    ("nadam_fast", "nadam", "lr=0.02;beta1=0.95", "torch.optim.NAdam",
     lambda: run_torch(lambda ps: O.NAdam(ps, lr=0.02, betas=(0.95, 0.999), foreach=False))),
    ("adamw_default", "adamw", "", "torch.optim.AdamW",
     lambda: run_torch(lambda ps: O.AdamW(ps, foreach=False))),
    ("adamw_wd", "adamw", "lr=0.01;weight_decay=0.1", "torch.optim.AdamW",
     lambda: run_torch(lambda ps: O.AdamW(ps, lr=0.01, weight_decay=0.1, foreach=False))),
    ("adamw_amsgrad", "adamw", "lr=0.01;weight_decay=0.05;amsgrad=true", "torch.optim.AdamW(amsgrad=True)",
     lambda: run_torch(lambda ps: O.AdamW(ps, lr=0.01, weight_decay=0.05, amsgrad=True, foreach=False))),
    ("sgdw_plain", "sgdw", "lr=0.0005;weight_decay=0.1", "emulated: decay then torch.optim.SGD",
     lambda: run_sgdw(5e-4, 0.0, 0.1)),
    ("sgdwm_default", "sgdwm", "lr=0.0001", "emulated: decay then torch.optim.SGD",
     lambda: run_sgdw(1e-4, 0.9, 1e-2)),
    ("sgdwm_nesterov", "sgdwm", "lr=0.0001;momentum=0.8;weight_decay=0.1;nesterov=true",
     "emulated: decay then torch.optim.SGD", lambda: run_sgdw(1e-4, 0.8, 0.1, nesterov=True)),
    ("adabound_default", "adabound", "", "transcribed: Luolc/AdaBound reference step",
     lambda: run_torch(lambda ps: AdaBoundTranscribed(ps))),
    ("adabound_fast", "adabound", "lr=0.01;final_lr=0.01;gamma=0.01;weight_decay=0.01",
     "transcribed: Luolc/AdaBound reference step",
     lambda: run_torch(lambda ps: AdaBoundTranscribed(ps, lr=0.01, final_lr=0.01, gamma=0.01, weight_decay=0.01))),
    ("amsbound_default", "amsbound", "", "transcribed: Luolc/AdaBound reference step (amsbound=True)",
     lambda: run_torch(lambda ps: AdaBoundTranscribed(ps, amsbound=True))),
    ("amsbound_fast", "amsbound", "lr=0.02;final_lr=0.02;gamma=0.05;beta2=0.9",
     "transcribed: Luolc/AdaBound reference step (amsbound=True)",
     lambda: run_torch(lambda ps: AdaBoundTranscribed(ps, lr=0.02, betas=(0.9, 0.9), final_lr=0.02, gamma=0.05,
                                                      amsbound=True))),
    ("adabound_fast2", "adabound", "lr=0.02;final_lr=0.02;gamma=0.05;beta2=0.9",
     "transcribed: Luolc/AdaBound reference step",
     lambda: run_torch(lambda ps: AdaBoundTranscribed(ps, lr=0.02, betas=(0.9, 0.9), final_lr=0.02, gamma=0.05))),
]


def main():
    os.makedirs(OUT, exist_ok=True)
    with open(os.path.join(OUT, "manifest.csv"), "w", newline="") as mf:
        manifest = csv.writer(mf, lineterminator="\n")
        manifest.writerow(["case", "optimizer", "options", "source"])
        for case, name, options, source, rows in CASES:
            rows = rows()
            for r in rows:
                if not all(math.isfinite(v) for v in r[1:]):
                    raise SystemExit(f"{case}: not finite at step {r[0]}: {r}")
            with open(os.path.join(OUT, case + ".csv"), "w", newline="") as f:
                w = csv.writer(f, lineterminator="\n")
                w.writerow(["step", "loss", "p0", "p1"])
                for k, loss, p0, p1 in rows:
                    w.writerow([k, repr(loss), repr(p0), repr(p1)])
            manifest.writerow([case, name, options, source])
            print(f"{case:18s} {name:9s} loss {rows[0][1]:.4g} -> {rows[-1][1]:.6g}  p = ({rows[-1][2]:.6f}, {rows[-1][3]:.6f})")
    print(f"torch {torch.__version__}; wrote {len(CASES)} cases to {os.path.normpath(OUT)}")


if __name__ == "__main__":
    main()
