"""``sparseift compare``: the main job. Dense vs Sparse-IFT variants at iso-FLOP on one recipe."""

from __future__ import annotations

import argparse
from pathlib import Path

from sparseift.flops.table import format_table
from sparseift.train import list_recipes, load_config, recipe_path
from sparseift.train.compare import Variant, plot_results, results_table, run_comparison, write_results
from sparseift.transforms import FAMILIES

HELP = "train dense and Sparse-IFT variants on one recipe and compare them at iso-FLOP (results.json + PNG)"
DEFAULT_RECIPE = "fmnist_compare"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", nargs="?", default=DEFAULT_RECIPE,
                        help=f"recipe file or packaged recipe (default {DEFAULT_RECIPE}; {', '.join(list_recipes())})")
    parser.add_argument("overrides", nargs="*", help="section.key=value overrides applied to every variant")
    parser.add_argument("--family", nargs="+", default=["wide"], choices=FAMILIES, help="Sparse-IFT members")
    parser.add_argument("--sparsity", nargs="+", type=float, default=[0.5, 0.75, 0.9], help="values of s")
    parser.add_argument("--no-dense", action="store_true", help="skip the dense baseline")
    parser.add_argument("--out", default="runs/compare", help="output folder (runs, results.json, plot)")



def run(args: argparse.Namespace) -> int:
    base = load_config(recipe_path(args.config), args.overrides)
    variants = [] if args.no_dense else [Variant("dense", 0.0)]
    variants += [Variant(family, s) for family in args.family for s in args.sparsity]
    out = Path(args.out)
    results = run_comparison(base, variants, out)
    headers, rows = results_table(results)
    print()
    print(format_table(headers, rows))
    json_path = write_results(results, base, out / "results.json")
    png_path = plot_results(results, out / "metric_vs_flops.png")
    print(f"\nwrote {json_path} and {png_path}")
    return 0
