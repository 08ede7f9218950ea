"""``sparseift flops``: per-layer and total FLOPs of a model beside its Sparse-IFT variants."""

from __future__ import annotations

import argparse

from sparseift.flops import calibrate_iso_flop, profile_flops
from sparseift.flops.table import Column, flop_rows, format_table
from sparseift.models import build_model, example_input, list_models
from sparseift.transforms import FAMILIES, Transformed, k_sw, transform

HELP = "print the FLOP table of a model and its Sparse-IFT variants, Iso-FLOP calibrated (A.2)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, choices=list_models(), help="model name")
    parser.add_argument("--family", nargs="+", default=list(FAMILIES), choices=FAMILIES, help="Sparse-IFT members")
    parser.add_argument("--sparsity", nargs="+", type=float, default=[0.5, 0.75, 0.9], help="values of s in [0, 1)")
    parser.add_argument("--batch", type=int, default=1, help="batch size of the example input")
    parser.add_argument("--no-calibrate", action="store_true", help="show nominal sparsities, no Iso-FLOP search")
    parser.add_argument("--summary", action="store_true", help="print only the totals, not every layer")
    parser.add_argument("--rtol", type=float, default=1e-6, help="relative tolerance of the Iso-FLOP search")


def _sizes(result: Transformed) -> str:
    """The family's size parameter as realised: width factors, branches or ranks."""
    sized = [r for r in result.layers if r.size is not None and r.role == "sparse"]
    if not sized:
        return "-"
    if result.family == "wide":
        k = k_sw(result.sparsity)
        factors = [r.size * k / r.size_exact for r in sized]
        return f"k_sw={k:.4f} realised x{min(factors):.4f}..x{max(factors):.4f}"
    values = sorted({r.size for r in sized})
    label = {"parallel": "k_sp", "factorized": "d_sf", "doped": "d_sd"}[result.family]
    return f"{label}={values[0]}" if len(values) == 1 else f"{label}={values[0]}..{values[-1]}"


def run(args: argparse.Namespace) -> int:
    dense = build_model(args.model)
    x = example_input(args.model, args.batch)
    dense_profile = profile_flops(dense, x)
    target = dense_profile.dense_macs()
    print(f"{args.model}: dense forward MACs {target:,} (batch {args.batch}); FLOP = multiply-accumulate\n")
    for family in args.family:
        columns, summary = [], []
        for s in args.sparsity:
            result = transform(dense, family, s, example_inputs=x)
            profile = profile_flops(result.model, x)
            if args.no_calibrate or not result.sparse_params:
                sparsities, before = result.sparse_params, profile.effective_macs(result.sparse_params) / target
                after = before
            else:
                cal = calibrate_iso_flop(profile, result.sparse_params, target, rtol=args.rtol)
                sparsities, before, after = cal.sparse_params, cal.ratio_before, cal.ratio
            columns.append(Column(f"s={s:g}", profile, sparsities))
            values = sorted(sparsities.values()) or [0.0]
            summary.append([f"s={s:g}", before, after, values[0], values[-1], _sizes(result)])
        print(f"== Sparse {family.capitalize()} ==")
        rows = flop_rows(dense_profile, columns)
        if args.summary:
            rows = rows[-1:]
        table = [[name, *values] for name, values in rows]
        ratio = ["ratio to dense", 1.0, *(v / target for v in rows[-1][1][1:])]
        print(format_table(["layer", "dense", *(c.label for c in columns)], [*table, ratio]))
        print()
        headers = ["variant", "ratio before", "ratio after", "min sparsity", "max sparsity", "size"]
        print(format_table(headers, summary))
        print()
    return 0
