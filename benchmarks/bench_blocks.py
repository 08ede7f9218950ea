"""What one sparse residual block costs, sparseift vs DeepSparse, measured by whole-model difference.

DeepSparse's own per-layer view (``deepsparse.debug_analysis``) runs ~25% above its real cost,
and per-layer hooks miss what a runtime gains by fusing layers. So this times whole models
instead: chains of ``k`` ResNet BasicBlocks (two sparse 3x3 convs with BatchNorm, ReLU and
the residual add; uniform random masks at ``--density``) on a ``[batch, channels, size, size]``
input, for each ``k`` of ``--blocks``, both runtimes side by side (DeepSparse in its own
process right before and right after sparseift's rounds, as in ``bench_inference.py``). The
least-squares slope of time over ``k`` is the cost of one block in the middle of a network,
without the fixed cost of the first layout conversion and the output; half of it is one conv,
reported also as effective GMAC/s (non-zero multiply-adds per second)::

    python benchmarks/bench_blocks.py --deepsparse-python /tmp/ds/bin/python
    python benchmarks/bench_blocks.py --channels 405 --size 28 --density 0.1

Defaults: the 56 x 56 stage of Sparse Wide ResNet-18 at s = 0.9 (202 channels), batch 16.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

import torch
from bench_inference import DeepSparse, timed  # this script's folder is on sys.path when it runs
from torch import nn
from torchvision.models.resnet import BasicBlock

from sparseift.inference import compile, export_onnx


def block_chain(blocks: int, channels: int, density: float, seed: int) -> nn.Module:
    """``blocks`` BasicBlocks of ``channels`` channels, conv weights masked to ``density`` (uniform
    random), BatchNorm with random statistics, in eval mode."""
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = nn.Sequential(*(BasicBlock(channels, channels) for _ in range(blocks)))
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.Conv2d):
                module.weight.mul_(torch.rand(module.weight.shape, generator=generator) < density)
            elif isinstance(module, nn.BatchNorm2d):
                module.running_mean.uniform_(-0.1, 0.1, generator=generator)
                module.running_var.uniform_(0.5, 1.5, generator=generator)
    return model.eval()


def slope(xs: list[int], ys: list[float]) -> float:
    """Least-squares slope of ``ys`` over ``xs``."""
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--channels", type=int, default=202)
    parser.add_argument("--size", type=int, default=56, help="height and width of the activations")
    parser.add_argument("--density", type=float, default=0.1, help="fraction of non-zero conv weights")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--blocks", type=int, nargs="+", default=[1, 2, 3], help="chain lengths (at least two)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--reps", type=int, default=6, help="timed runs per runtime and chain")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--deepsparse-python", default=None, help="python of a venv with deepsparse==1.8.0")
    args = parser.parse_args()
    if not 0 < args.density <= 1:
        parser.error(f"--density must be in (0, 1], got {args.density}")
    if min(args.channels, args.size, args.batch, args.threads, args.reps) < 1:
        parser.error("--channels, --size, --batch, --threads and --reps must be >= 1")
    if len(set(args.blocks)) < 2 or min(args.blocks) < 1:
        parser.error(f"--blocks needs at least two different lengths >= 1, got {args.blocks}")
    torch.set_num_threads(args.threads)
    ds = DeepSparse(args.deepsparse_python) if args.deepsparse_python else None
    if ds is None:
        print("DeepSparse: skipped (no --deepsparse-python)")
    x = torch.randn(args.batch, args.channels, args.size, args.size)
    rows: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for blocks in args.blocks:
            model = block_chain(blocks, args.channels, args.density, args.seed)
            fast = compile(model, example_inputs=x, tune=True)
            run = timed(lambda f=fast: f(x))
            times: dict[str, list[float]] = {}
            if ds is not None:
                path = Path(tmp) / f"chain{blocks}.onnx"
                export_onnx(model, x[:1], path)
                times["deepsparse"] = ds.times(path, tuple(x.shape), args.threads, -(-args.reps // 2))
            with torch.no_grad():
                run()  # warm-up
                times["sparseift"] = [run() for _ in range(args.reps)]
            if ds is not None:
                times["deepsparse"] += ds.times(path, tuple(x.shape), args.threads, -(-args.reps // 2))
            for name, ts in times.items():
                rows.setdefault(name, []).append(1e3 * min(ts))
            print(f"  {blocks} block(s): " + ", ".join(f"{n} {1e3 * min(ts):.1f} ms" for n, ts in times.items()), flush=True)
    macs = args.batch * args.size**2 * args.channels**2 * 9 * args.density
    print(f"\n{args.channels} channels, {args.size} x {args.size}, density {args.density:g}, batch {args.batch}, "
          f"{args.threads} threads; fastest of {args.reps} runs (ms)\n")
    print("| runtime | " + " | ".join(f"{k} block(s)" for k in args.blocks) + " | per block | per conv | GMAC/s per conv |")
    print("|---|" + "---|" * (len(args.blocks) + 3))
    for name, ms in rows.items():
        per_block = slope(args.blocks, ms)
        per_conv = per_block / 2
        print(f"| {name} | " + " | ".join(f"{m:.1f}" for m in ms)
              + f" | {per_block:.1f} | {per_conv:.1f} | {macs / per_conv / 1e6:.0f} |")


if __name__ == "__main__":
    main()
