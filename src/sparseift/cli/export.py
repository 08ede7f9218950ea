"""``sparseift export``: a training checkpoint -> ONNX, with exact zeros in the weights."""

from __future__ import annotations

import argparse

from sparseift.inference import export_onnx, load_checkpoint_model
from sparseift.models import example_input

HELP = "export a checkpoint to ONNX (masks applied, BatchNorm folded, zeros kept exact)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", help="checkpoint file written by training ({'model', 'config', ...})")
    parser.add_argument("--onnx", required=True, metavar="OUT", help="path of the .onnx file to write")
    parser.add_argument("--opset", type=int, default=17, help="ONNX opset version in [7, 21] (default 17)")


def run(args: argparse.Namespace) -> int:
    model, name, _ = load_checkpoint_model(args.checkpoint)
    result = export_onnx(model, example_input(name, 1), args.onnx, opset=args.opset)
    print(
        f"wrote {result.path} ({name}, opset {result.opset}, dynamic batch): "
        f"{result.zeros:,} of {result.elements:,} initialiser values are exact zeros ({result.sparsity:.1%})"
    )
    return 0
