"""``sparseift export``: a training checkpoint -> ONNX, with exact zeros in the weights."""

from __future__ import annotations

import argparse

import torch

from sparseift.inference import export_onnx
from sparseift.train import load_checkpoint, restore_model

HELP = "export a checkpoint to ONNX (masks applied, BatchNorm folded, zeros kept exact)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", help="checkpoint.pt written by `sparseift train`")
    parser.add_argument("--onnx", required=True, metavar="OUT", help="path of the .onnx file to write")
    parser.add_argument("--opset", type=int, default=17, help="ONNX opset version in [7, 21] (default 17)")


def run(args: argparse.Namespace) -> int:
    checkpoint = load_checkpoint(args.checkpoint)
    model, config = restore_model(checkpoint)
    example = torch.zeros(checkpoint["example"]["shape"], dtype=getattr(torch, checkpoint["example"]["dtype"]))
    result = export_onnx(model, example, args.onnx, opset=args.opset)
    print(
        f"wrote {result.path} ({config.model.name}, opset {result.opset}, dynamic batch): "
        f"{result.zeros:,} of {result.elements:,} initialiser values are exact zeros ({result.sparsity:.1%})"
    )
    return 0
