"""Inference latency of Sparse Wide models: sparseift vs PyTorch eager vs ONNX Runtime vs DeepSparse.

Sparse Wide ResNet-18 (uniform random masks, random BatchNorm statistics) at
s = 0 / 0.5 / 0.75 / 0.9, batch 1 and 64 at 224x224, and a small Sparse Wide GPT at
batch 1 and 16 x 128 tokens, all float32 on ``--threads`` threads. sparseift compiles each
model per batch size with ``tune=True`` (every path of every layer timed on that batch).

Runtimes are timed in interleaved rounds (one run of each per round) so that load from
other processes hits them alike. ONNX Runtime runs with ``allow_spinning=0``; PyTorch's
OpenMP threads keep their default (spin briefly, then sleep), and sparseift's kernels run on
that same OpenMP team; ``--omp-passive`` makes idle threads sleep at once, which costs
PyTorch-based runtimes about 50% at batch 1 on a 2-core machine (dense ResNet-18 eager: 14 ms
vs 22 ms). DeepSparse, whose idle threads spin, runs in its own process right before and
right after each cell's rounds (half its repetitions each), so that a drift of the machine
hits both sides; each progress line ends with the machine's matrix-product speed at that time.
The table shows median ms per batch and the ratio to the fastest dense (s = 0) model of any
runtime at the same batch.

DeepSparse is never a sparseift dependency: it runs in a separate Python given by
``--deepsparse-python`` (a throwaway venv with ``pip install deepsparse==1.8.0``) and is
skipped with a message otherwise. ONNX Runtime is optional likewise.

    python benchmarks/bench_inference.py --deepsparse-python /tmp/ds/bin/python
    python benchmarks/bench_inference.py --quick
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

if "--omp-passive" in sys.argv:  # must precede the first OpenMP region, hence before torch
    os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
import torch  # noqa: E402
from torch import nn  # noqa: E402

import sparseift  # noqa: E402
from sparseift.inference import compile, export_onnx  # noqa: E402
from sparseift.inference._ext import cpu_features, kernels  # noqa: E402
from sparseift.models import build_model  # noqa: E402

RUNTIMES = ("eager", "onnxruntime", "deepsparse", "sparseift", "sparseift-nchw")
"""``sparseift-nchw``: sparseift tuned without the channels-last dense path (``tune_paths=
("sparse", "dense")``), to measure that path's gain side by side; off unless asked for."""

_DEEPSPARSE_RUN = r"""
import json, sys, time
import numpy as np
from deepsparse import compile_model
path, shape, threads, reps = sys.argv[1], json.loads(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
engine = compile_model(path, batch_size=shape[0], num_cores=threads)
inputs = [np.random.default_rng(0).standard_normal(shape).astype(np.float32)]
engine(inputs)
times = []
for _ in range(reps):
    start = time.perf_counter(); engine(inputs); times.append(time.perf_counter() - start)
print(json.dumps(times))
"""


class DeepSparse:
    """DeepSparse runs in another Python (its own venv), one short process per measurement:
    its idle threads spin, so it never shares the CPU with the other runtimes' rounds."""

    def __init__(self, python: str) -> None:
        self.python = python

    def times(self, path: Path, shape: tuple[int, ...], threads: int, reps: int) -> list[float]:
        """Seconds per run of the ONNX model at ``path`` on an input of ``shape``."""
        out = subprocess.run(
            [self.python, "-c", _DEEPSPARSE_RUN, str(path), json.dumps(list(shape)), str(threads), str(reps)],
            capture_output=True, text=True, check=True,
        )
        return json.loads(out.stdout.strip().splitlines()[-1])

    def version(self) -> str:
        out = subprocess.run([self.python, "-c", "import deepsparse; print(deepsparse.__version__)"],
                             capture_output=True, text=True, check=True)
        return out.stdout.strip()


def timed(fn: Callable[[], object]) -> Callable[[], float]:
    """A callable that runs ``fn`` once and returns its wall time in seconds."""

    def run() -> float:
        start = time.perf_counter()
        fn()
        return time.perf_counter() - start

    return run


def sparse_wide(name: str, kwargs: dict, sparsity: float, example: torch.Tensor, seed: int) -> nn.Module:
    """Sparse Wide ``name`` at ``sparsity`` with uniform random masks (dense model at 0)."""
    torch.manual_seed(seed)
    dense = build_model(name, **kwargs)
    if sparsity == 0:
        model, sparse = dense, {}
    else:
        result = sparseift.transform(dense, "wide", sparsity, example_inputs=example)
        model, sparse = result.model, result.sparse_params
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for pname, param in model.named_parameters():
            if pname in sparse:
                param.mul_(torch.rand(param.shape, generator=generator) >= sparse[pname])
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.uniform_(-0.1, 0.1, generator=generator)
                module.running_var.uniform_(0.5, 1.5, generator=generator)
    return model.eval()


@dataclass
class Cell:
    """Timings of one (model, sparsity, batch) across runtimes."""

    label: str
    sparsity: float
    batch: int
    runs: dict[str, Callable[[], float]] = field(default_factory=dict)
    times: dict[str, list[float]] = field(default_factory=dict)

    def measure(self, reps: int) -> None:
        for fn in self.runs.values():  # warm-up
            fn()
        for _ in range(reps):
            for name, fn in self.runs.items():
                self.times.setdefault(name, []).append(fn())

    def median_ms(self, name: str) -> float | None:
        return 1000 * statistics.median(self.times[name]) if name in self.times else None


def resnet_cells(args: argparse.Namespace, tmp: Path, ds: DeepSparse | None) -> list[Cell]:
    cells = []
    example = torch.randn(1, 3, args.image, args.image)
    for sparsity in args.sparsity:
        model = sparse_wide("resnet18", {}, sparsity, example, args.seed)
        onnx_path = tmp / f"resnet18_s{sparsity}.onnx"
        if "onnxruntime" in args.runtimes or ds is not None:
            export_onnx(model, example, onnx_path)
        for batch in args.batch:
            x = torch.randn(batch, 3, args.image, args.image)
            fast = compile(model, example_inputs=x, tune=args.tune)
            if args.verbose:
                print(fast.summary(), flush=True)
            cell = Cell("ResNet-18", sparsity, batch)
            if "sparseift-nchw" in args.runtimes:
                nchw = compile(model, example_inputs=x, tune=args.tune, tune_paths=("sparse", "dense"))
                cell.runs["sparseift-nchw"] = timed(lambda f=nchw, x=x: f(x))
            with torch.no_grad():
                if "eager" in args.runtimes:
                    cell.runs["eager"] = timed(lambda m=model, x=x: m(x))
                if "onnxruntime" in args.runtimes:
                    cell.runs["onnxruntime"] = ort_runner(onnx_path, x, args.threads)
                cell.runs["sparseift"] = timed(lambda f=fast, x=x: f(x))
                reps = args.reps_large if batch >= 16 else args.reps
                deepsparse = (lambda: ds.times(onnx_path, tuple(x.shape), args.threads, -(-reps // 2))) if ds else None
                if deepsparse:  # before and after the other runtimes' rounds: drift hits both sides
                    cell.times["deepsparse"] = deepsparse()
                cell.measure(reps)
            if deepsparse:
                cell.times["deepsparse"] += deepsparse()
            cells.append(cell)
            print_progress(cell)
    return cells


def gpt_cells(args: argparse.Namespace) -> list[Cell]:
    cells = []
    kwargs = {"n_layer": 4, "n_embd": 256, "n_head": 4, "vocab_size": 1024}
    example = torch.randint(0, 1024, (1, 128))
    for sparsity in args.sparsity:
        model = sparse_wide("gpt2_small", kwargs, sparsity, example, args.seed)
        for batch in args.gpt_batch:
            tokens = torch.randint(0, 1024, (batch, 128))
            fast = compile(model, example_inputs=tokens, tune=args.tune)
            if args.verbose:
                print(fast.summary(), flush=True)
            cell = Cell("GPT 4x256", sparsity, batch)
            with torch.no_grad():
                cell.runs["eager"] = timed(lambda m=model, t=tokens: m(t))
                cell.runs["sparseift"] = timed(lambda f=fast, t=tokens: f(t))
                cell.measure(args.reps)
            cells.append(cell)
            print_progress(cell)
    return cells


def ort_runner(path: Path, x: torch.Tensor, threads: int) -> Callable[[], float]:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    feed = {"input_0": x.numpy()}
    return timed(lambda: session.run(None, feed))


def machine_gmacs() -> float:
    """This machine's speed now: GMAC/s of a 1024^3 float32 matrix product (best of 5), so that a
    run's log shows how far the machine drifted between cells (shared VMs here drift up to 2x)."""
    a, b = torch.randn(1024, 1024), torch.randn(1024, 1024)
    torch.mm(a, b)
    best = min(timed(lambda: torch.mm(a, b))() for _ in range(5))
    return 1024**3 / best / 1e9


def print_progress(cell: Cell) -> None:
    parts = [f"{n} {cell.median_ms(n):.1f}" for n in cell.times]
    speed = machine_gmacs()
    print(f"  {cell.label} s={cell.sparsity:g} batch {cell.batch}: " + ", ".join(parts) + f" ms (machine {speed:.0f} GMAC/s)",
          flush=True)


def table(cells: list[Cell]) -> str:
    """Markdown: median ms per runtime, and each runtime's ratio to the best dense (s=0) time."""
    names = [n for n in RUNTIMES if any(n in c.times for c in cells)]
    best_dense: dict[tuple[str, int], float] = {}
    for c in cells:
        if c.sparsity == 0:
            best_dense[(c.label, c.batch)] = min(c.median_ms(n) for n in c.times)
    nchw = "sparseift-nchw" in names
    head = ["model", "batch", "s", *[f"{n} ms" for n in names], "sparseift / best dense", "sparseift / deepsparse"]
    head += ["sparseift / sparseift-nchw"] if nchw else []
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for c in cells:
        ms = {n: c.median_ms(n) for n in names}
        ref = best_dense.get((c.label, c.batch))
        ours = ms["sparseift"]
        vs_ref = f"{ours / ref:.2f}x" if ref else "-"
        vs_ds = f"{ours / ms['deepsparse']:.2f}x" if ms.get("deepsparse") else "-"
        row = [c.label, str(c.batch), f"{c.sparsity:g}", *[f"{ms[n]:.1f}" if ms[n] else "-" for n in names], vs_ref, vs_ds]
        if nchw:
            row.append(f"{ours / ms['sparseift-nchw']:.2f}x" if ms["sparseift-nchw"] else "-")
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def versions(ds: DeepSparse | None) -> str:
    def version(pkg: str) -> str:
        try:
            return importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            return "not installed"

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gcc = subprocess.run(["gcc", "-dumpfullversion"], capture_output=True, text=True).stdout.strip() or "none"
    ext = kernels()
    return "\n".join(
        [
            f"machine: {cpu}, {os.cpu_count()} logical CPUs, {platform.platform()}",
            f"cpu features: {' '.join(cpu_features())}; sparseift kernels: "
            + (f"built, {ext.vector_width()}-float vectors" if ext else "unavailable (dense fallback)"),
            f"python {platform.python_version()}, torch {torch.__version__}, onnxruntime {version('onnxruntime')}, "
            f"onnx {version('onnx')}, deepsparse {ds.version() if ds else 'skipped'}, sparseift "
            f"{sparseift.__version__}, gcc {gcc}",
        ]
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="s = 0 and 0.9, batch 1 and 8, fewer repetitions")
    parser.add_argument("--threads", type=int, default=2, help="threads of every runtime (default 2)")
    parser.add_argument("--sparsity", type=float, nargs="+", default=[0.0, 0.5, 0.75, 0.9])
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 64], help="ResNet-18 batch sizes")
    parser.add_argument("--gpt-batch", type=int, nargs="+", default=[1, 16], help="GPT batch sizes (x 128 tokens)")
    parser.add_argument("--image", type=int, default=224, help="image side")
    parser.add_argument("--reps", type=int, default=15, help="timed rounds at small batch")
    parser.add_argument("--reps-large", type=int, default=3, help="timed rounds at batch >= 16")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--runtimes", nargs="+", default=[r for r in RUNTIMES if r != "sparseift-nchw"], choices=RUNTIMES)
    parser.add_argument("--deepsparse-python", default=os.environ.get("SPARSEIFT_DEEPSPARSE_PYTHON"),
                        help="python of a separate venv with deepsparse==1.8.0 (or $SPARSEIFT_DEEPSPARSE_PYTHON)")
    parser.add_argument("--no-gpt", action="store_true", help="skip the GPT model")
    parser.add_argument("--no-tune", dest="tune", action="store_false",
                        help="choose sparse/dense per layer by the density rule instead of timing both "
                        "paths on an input of the benchmarked batch size")
    parser.add_argument("--verbose", action="store_true", help="print each compiled model's layer plan")
    parser.add_argument("--omp-passive", action="store_true",
                        help="OMP_WAIT_POLICY=PASSIVE: PyTorch's idle OpenMP threads sleep at once")
    args = parser.parse_args(argv)
    if args.quick:
        args.sparsity, args.batch, args.gpt_batch, args.reps, args.reps_large = [0.0, 0.9], [1, 8], [1], 5, 2
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    if "onnxruntime" in args.runtimes:
        try:
            import onnxruntime  # noqa: F401
        except ImportError:
            print("onnxruntime not installed: skipped (pip install onnxruntime)")
            args.runtimes = [r for r in args.runtimes if r != "onnxruntime"]
    ds = None
    if "deepsparse" in args.runtimes:
        if args.deepsparse_python and Path(args.deepsparse_python).exists():
            ds = DeepSparse(args.deepsparse_python)
        else:
            print("DeepSparse skipped: pass --deepsparse-python PY, the python of a separate venv with "
                  "`pip install deepsparse==1.8.0` (it is never a sparseift dependency)")
    print(versions(ds))
    print(f"threads {args.threads}, seed {args.seed}, image {args.image}, rounds {args.reps}/{args.reps_large} "
          f"(small/large batch), command: {' '.join([Path(sys.argv[0]).name, *(argv or sys.argv[1:])])}\n",
          flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        cells = resnet_cells(args, Path(tmp), ds)
        if not args.no_gpt:
            cells += gpt_cells(args)
    print("\nmedian ms per batch; ratios to the fastest dense (s=0) runtime at the same batch\n")
    print(table(cells))
    return 0


if __name__ == "__main__":
    sys.exit(main())
