"""Per-layer time of a compiled Sparse Wide ResNet-18: where a forward pass spends its time.

Forward hooks time every layer (with its fused pool) and every other leaf module of the
compiled model (the hooks add a little per layer, so the total is a few percent above an
unhooked pass). Each line gives the layer's fastest time of ``--reps`` passes, its path
(sparse / winograd / direct / dense / dense_cl), the weight's density and shape, and the blocked
sparse kernel's tuned task width::

    python benchmarks/profile_inference.py --sparsity 0.9 --batch 16

DeepSparse's own per-layer view of the same model is ``deepsparse.debug_analysis MODEL.onnx -b 16
-ncores 2`` (export the model with ``sparseift export --onnx`` or the inference benchmark).
"""

from __future__ import annotations

import argparse
import collections
import time

import torch
from bench_inference import sparse_wide  # this script's folder is on sys.path when it runs
from torch import nn

from sparseift.inference import compile
from sparseift.inference.layers import InferenceLayer


def layer_times(fast: nn.Module, x: torch.Tensor, reps: int) -> tuple[float, dict[str, float]]:
    """The fastest hooked forward pass of ``fast`` on ``x`` (seconds) and each layer's or other leaf module's fastest time."""
    times: dict[str, list[float]] = collections.defaultdict(list)
    started: dict[str, float] = {}
    handles = []
    for name, module in fast.module.named_modules():
        if name and (isinstance(module, InferenceLayer) or not list(module.children())):  # a layer with its fused pool
            handles.append(module.register_forward_pre_hook(lambda m, a, n=name: started.__setitem__(n, time.perf_counter())))
            handles.append(module.register_forward_hook(
                lambda m, a, o, n=name: times[n].append(time.perf_counter() - started[n])))
    with torch.no_grad():
        for _ in range(2):
            fast(x)
        times.clear()
        totals = []
        for _ in range(reps):
            begin = time.perf_counter()
            fast(x)
            totals.append(time.perf_counter() - begin)
    for handle in handles:
        handle.remove()
    return min(totals), {name: min(ts) for name, ts in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sparsity", type=float, default=0.9)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--image", type=int, default=224)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--no-tune", dest="tune", action="store_false", help="density rule instead of timing paths")
    args = parser.parse_args()
    if not 0 <= args.sparsity < 1:
        parser.error(f"--sparsity must be in [0, 1), got {args.sparsity}")
    if args.batch < 1 or args.reps < 1 or args.threads < 1:
        parser.error("--batch, --reps and --threads must be >= 1")
    torch.set_num_threads(args.threads)
    model = sparse_wide("resnet18", {}, args.sparsity, torch.randn(1, 3, args.image, args.image), 0)
    x = torch.randn(args.batch, 3, args.image, args.image)
    fast = compile(model, example_inputs=x, tune=args.tune)
    total, times = layer_times(fast, x, args.reps)
    plans = {name: module.plan for name, module in fast.module.named_modules() if isinstance(module, InferenceLayer)}
    print(f"Sparse Wide ResNet-18 s={args.sparsity} batch {args.batch}: {1e3 * total:.1f} ms per pass (hooks on)")
    for name, seconds in times.items():
        plan = plans.get(name)
        tile = "" if plan is None or plan.tile is None else f" tile {plan.tile}"
        detail = "" if plan is None else f"{plan.path:9s} d={plan.density:.2f} {list(plan.weight_shape)}{tile}"
        print(f"{1e3 * seconds:9.2f} ms  {name:28s} {detail}")


if __name__ == "__main__":
    main()
