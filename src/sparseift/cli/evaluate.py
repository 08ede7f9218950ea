"""``sparseift eval CHECKPOINT``: evaluate a trained model on its dataset's validation or test split."""

from __future__ import annotations

import argparse

from sparseift.data import BatchLoader
from sparseift.train import evaluate, load_checkpoint, restore_model
from sparseift.train.build import load_data

HELP = "evaluate a checkpoint written by `sparseift train`"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", help="path of a checkpoint.pt")
    parser.add_argument("--split", choices=["val", "test"], default="val", help="data split (default: val)")
    parser.add_argument("--data-dir", default=None, help="where the dataset lives (default: the run's data.data_dir)")
    parser.add_argument("--batch-size", type=int, default=None, help="evaluation batch size")


def run(args: argparse.Namespace) -> int:
    model, config = restore_model(load_checkpoint(args.checkpoint))
    if args.data_dir is not None:
        config.data.data_dir = args.data_dir
    data = load_data(config.data, args.split)
    loader = BatchLoader(data.dataset, args.batch_size or config.data.eval_batch_size, shuffle=False)
    metrics = evaluate(model, loader, data.batch_transform(augment=False), data.task)
    print(f"{config.name} on {config.data.name} {args.split}: " + " ".join(f"{k} {v:.4f}" for k, v in metrics.items()))
    return 0
