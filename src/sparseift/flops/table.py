"""Per-layer FLOP tables: a dense model beside its Sparse-IFT variants."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from sparseift.flops.counter import FlopProfile

__all__ = ["Column", "flop_rows", "format_table"]


@dataclass(frozen=True)
class Column:
    """One Sparse-IFT variant: a label, its profile and the sparsities of its sparse parameters."""

    label: str
    profile: FlopProfile
    sparsities: Mapping[str, float]


def _owner(name: str, dense_names: Sequence[str]) -> str:
    """The dense-model module a variant's module stands in for (longest name prefix)."""
    best = ""
    for dense in dense_names:
        if (name == dense or name.startswith(dense + ".") or not dense) and len(dense) >= len(best):
            best = dense
    return best


def flop_rows(dense: FlopProfile, columns: Sequence[Column]) -> list[tuple[str, list[float]]]:
    """Rows ``(layer, [dense MACs, effective MACs of each column])`` plus a ``total`` row.

    A variant's operations are summed under the dense module they replace (Parallel's
    ``conv1.branches.3`` counts under ``conv1``).
    """
    dense_rows = {name: float(macs) for name, (macs, _) in dense.per_module().items()}
    names = list(dense_rows)
    rows = {name: [dense_rows[name]] + [0.0] * len(columns) for name in names}
    for i, column in enumerate(columns, start=1):
        for name, (_, eff) in column.profile.per_module(column.sparsities).items():
            owner = _owner(name, names)
            rows.setdefault(owner, [0.0] * (len(columns) + 1))[i] += eff
    total = [sum(values[i] for values in rows.values()) for i in range(len(columns) + 1)]
    return [*rows.items(), ("total", total)]


def format_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A plain aligned text table (right-aligned numbers, left-aligned first column)."""
    cells = [[str(h) for h in headers]] + [[_fmt(v) for v in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = []
    for n, row in enumerate(cells):
        parts = [row[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(row[1:], widths[1:])]
        lines.append("  ".join(parts).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _fmt(value: object) -> str:
    if isinstance(value, float):
        return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.6f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)
