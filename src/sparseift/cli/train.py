"""``sparseift train CONFIG [key=value ...]``: one training run from a recipe."""

from __future__ import annotations

import argparse

from sparseift.train import Trainer, list_recipes, load_config, recipe_path

HELP = "train one run from a recipe (a YAML/TOML file or a packaged recipe name)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help=f"config file, or a packaged recipe: {', '.join(list_recipes())}")
    parser.add_argument("overrides", nargs="*", help="section.key=value overrides, e.g. optim.lr=0.05")
    parser.add_argument("--resume", nargs="?", const=True, default=None, help="continue from a checkpoint "
                        "(default: <out_dir>/<name>/checkpoint.pt)")  # fmt: skip


def run(args: argparse.Namespace) -> int:
    config = load_config(recipe_path(args.config), args.overrides)
    result = Trainer(config, resume=args.resume).fit()
    metrics = " ".join(f"{k} {v:.4f}" for k, v in result.metrics.items())
    print(f"done: {result.steps} steps, {metrics}, training FLOPs {result.training_macs:.4g}, in {result.out_dir}")
    return 0
