"""Training-step overhead of RigL on a Sparse Wide CIFAR ResNet-18 (issue 3 benchmark).

Three copies of the same Sparse Wide network (base width 16, s = 0.75, batch 64) are
trained side by side, interleaved round by round so that machine noise hits all alike:

- ``dense``: the widened network without a sparsifier (the reference step);
- ``rigl``: the widened network with RigL (deltaT = 100), whose ``sparsifier.step()`` on a
  non-update step is the per-step cost of keeping the masks;
- ``rigl-every-step``: RigL with deltaT = 1, whose ``sparsifier.step()`` is one mask update,
  amortised over deltaT = 100 steps.

Target (issue 3): (mask keeping + amortised update) <= 5% of a dense step.

    .venv/bin/python benchmarks/bench_rigl_overhead.py            # defaults of the issue
    .venv/bin/python benchmarks/bench_rigl_overhead.py --rounds 5  # quicker
"""

from __future__ import annotations

import argparse
import copy
import os
import platform
import statistics
import time
from collections.abc import Callable

import numpy as np
import torch
from torch import nn

import sparseift
from sparseift.models import build_model
from sparseift.sparsity import RigL


def _train_step(model: nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor) -> None:
    opt.zero_grad(set_to_none=True)
    nn.functional.cross_entropy(model(x), y).backward()
    opt.step()


def _timed(fn: Callable[[], None]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=int, default=16)
    parser.add_argument("--sparsity", type=float, default=0.75)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--delta-t", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    dense_base = build_model("cifar_resnet18", width=args.width, num_classes=10)
    x = torch.randn(args.batch, 3, 32, 32)
    y = torch.randint(0, 10, (args.batch,))
    result = sparseift.transform(dense_base, "wide", args.sparsity, example_inputs=x[:1])

    def make() -> tuple[nn.Module, torch.optim.Optimizer]:
        model = copy.deepcopy(result.model).train()
        return model, torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4, nesterov=True)

    total = 100 * args.delta_t
    dense, dense_opt = make()
    rigl, rigl_opt = make()
    keeper = RigL(rigl, rigl_opt, result.sparse_params, total_steps=total, delta_t=args.delta_t)
    updater_model, updater_opt = make()
    updater = RigL(updater_model, updater_opt, result.sparse_params, total_steps=total, delta_t=1, end_step=total)

    times: dict[str, list[float]] = {k: [] for k in ("dense", "rigl_train", "keep", "update_train", "update")}
    for round_ in range(args.warmup + args.rounds):
        sample = {
            "dense": _timed(lambda: _train_step(dense, dense_opt, x, y)),
            "rigl_train": _timed(lambda: _train_step(rigl, rigl_opt, x, y)),
            "keep": _timed(keeper.step),
            "update_train": _timed(lambda: _train_step(updater_model, updater_opt, x, y)),
            "update": _timed(updater.step),
        }
        if round_ >= args.warmup:
            for key, value in sample.items():
                times[key].append(value)
    med = {k: statistics.median(v) * 1e3 for k, v in times.items()}
    amortised = (med["update"] - med["keep"]) / args.delta_t
    overhead = med["keep"] + amortised
    step = med["dense"]

    print(f"# RigL overhead, Sparse Wide CIFAR ResNet-18 (width {args.width}, s={args.sparsity}, batch {args.batch})")
    print(f"# machine: {platform.platform()}, {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} logical CPUs, {args.threads} threads")
    print(f"# versions: python {platform.python_version()}, torch {torch.__version__}, numpy {np.__version__}, "
          f"sparseift {sparseift.__version__}; seed {args.seed}; median of {args.rounds} interleaved rounds")
    print(f"# sparse parameters: {len(result.sparse_params)}, "
          f"{sum(rigl.get_parameter(n).numel() for n in result.sparse_params):,} weights")
    print()
    print(f"| {'quantity':<48} | {'ms':>9} | {'/ dense step':>12} |")
    print(f"|{'-' * 50}|{'-' * 11}|{'-' * 14}|")
    rows = [
        ("dense step (widened net, no sparsifier)", step),
        ("RigL net: forward+backward+optimizer", med["rigl_train"]),
        ("mask keeping: sparsifier.step(), no update", med["keep"]),
        ("mask update: sparsifier.step() on an update step", med["update"]),
        (f"mask update amortised over deltaT={args.delta_t}", amortised),
        ("total overhead (keeping + amortised update)", overhead),
    ]
    for label, value in rows:
        print(f"| {label:<48} | {value:>9.3f} | {value / step:>12.4f} |")
    print()
    verdict = "meets" if overhead / step <= 0.05 else "MISSES"
    print(f"total overhead {100 * overhead / step:.2f}% of a dense step: {verdict} the 5% target")


if __name__ == "__main__":
    main()
