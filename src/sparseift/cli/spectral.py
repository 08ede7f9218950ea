"""``sparseift spectral``: per-layer spectral graph metrics of a checkpoint, and their plots."""

from __future__ import annotations

import argparse
import csv
from collections.abc import Mapping
from pathlib import Path

import torch

from sparseift.analysis import SpectralOptions, analyse_network, plot_spectral
from sparseift.analysis.network import SUBGRAPHS, NetworkSpectrum
from sparseift.analysis.spectral import SOLVERS
from sparseift.flops.table import format_table

HELP = "Ramanujan gap, imdb, weighted spectral gap and imsg of each sparse layer of a checkpoint (section 4)"

_COLUMNS = ("layer", "inputs", "outputs", "density", "degree", "mu_hat", "delta_r", "delta_r_imdb", "lambda", "lambda_imsg", "subgraphs", "solver", "note")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", nargs="?", help="checkpoint file {'model': state_dict, ...} or a bare state dict")
    parser.add_argument("--csv", type=Path, help="write every per-layer value to this CSV file")
    parser.add_argument("--subgraphs", choices=SUBGRAPHS, default="degree", help="sub-graphs for imdb/imsg (Hoang et al. 2023b) or none")
    parser.add_argument("--min-inputs", type=int, default=2, help="fewest inputs of one degree that form a sub-graph")
    parser.add_argument("--min-degree", type=int, default=3, help="lowest input degree that forms a sub-graph")
    parser.add_argument("--solver", choices=SOLVERS, default="auto", help="top-2 singular values: auto (cost model), gram, sparse (Lanczos) or dense (LAPACK)")
    parser.add_argument("--plot", nargs="+", type=Path, metavar="METRICS_JSONL", help="plot these runs' JSONL metrics files instead")
    parser.add_argument("--out", type=Path, default=Path("."), help="folder for the PNG plots (with --plot)")
    parser.add_argument("--accuracy-key", default="accuracy", help="metric that colours the plots (with --plot)")


def load_state_dict(path: str | Path) -> tuple[Mapping[str, torch.Tensor], dict[str, object]]:
    """The model state dict of a checkpoint and its other scalar entries (step, epoch).

    Loaded with ``weights_only=True``: no arbitrary unpickling of the file.
    """
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(checkpoint, Mapping):
        raise ValueError(f"{path}: expected a dict checkpoint, got {type(checkpoint).__name__}")
    if "model" in checkpoint:
        if not isinstance(checkpoint["model"], Mapping):
            raise ValueError(f"{path}: checkpoint['model'] must be a state dict, got {type(checkpoint['model']).__name__}")
        info = {k: v for k, v in checkpoint.items() if k in ("step", "epoch")}
        return checkpoint["model"], info
    if all(isinstance(v, torch.Tensor) for v in checkpoint.values()):
        return checkpoint, {}
    raise ValueError(f"{path}: expected {{'model': state_dict, ...}} or a state dict; keys are {sorted(checkpoint)[:8]}")


def _write_csv(path: Path, spectrum: NetworkSpectrum) -> None:
    rows = [layer.row() for layer in spectrum.layers]
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def _cell(value: object) -> object:
    return "-" if value is None else value


def run(args: argparse.Namespace) -> int:
    if args.plot:
        written = plot_spectral(args.plot, args.out, args.accuracy_key)
        for path in written.values():
            print(path)
        return 0
    if args.checkpoint is None:
        raise ValueError("give a CHECKPOINT to analyse, or --plot METRICS_JSONL to draw the figures")
    state, info = load_state_dict(args.checkpoint)
    options = SpectralOptions(args.subgraphs, args.solver, min_inputs=args.min_inputs, min_degree=args.min_degree)
    spectrum = analyse_network(state, options)
    header = ", ".join(f"{k} {v}" for k, v in info.items())
    print(f"{args.checkpoint}{': ' + header if header else ''}; {len(spectrum.layers)} sparse layers\n")
    rows = [[_cell(layer.row()[c]) for c in _COLUMNS] for layer in spectrum.layers]
    summary = spectrum.summary()
    mean = ["mean", "", "", "", "", "", *(_cell(summary[m]) for m in ("delta_r", "delta_r_imdb", "lambda", "lambda_imsg")), "", "", ""]
    print(format_table(_COLUMNS, [*rows, mean]))
    if args.csv is not None:
        _write_csv(args.csv, spectrum)
        print(f"\nwrote {args.csv}")
    return 0
