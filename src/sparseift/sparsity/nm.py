"""Transposable N:M block sparsity (Hubara et al. 2021; paper section 3.2, appendix C.3.3).

A weight is read as the matrix of appendix A.1 (``cout x cin*kh*kw`` for a conv) and cut
into ``M x M`` blocks. A transposable N:M mask keeps exactly ``N`` entries in every row
and every column of every block, so both ``W`` (forward) and ``W^T`` (backward) are N:M.
The paper's variants are 4:8-T, 2:8-T and 1:8-T (50%, 75%, 87.5% sparsity).

Selecting a maximum-score pattern per block is a max-weight N-regular bipartite subgraph.
We take ``N`` successive maximum-weight perfect matchings (assignment problems), each
avoiding the entries already taken: after ``k`` matchings the unused entries form an
``(M-k)``-regular bipartite graph, which has a perfect matching (Konig), so the result is
always valid; like Hubara et al.'s greedy it is an approximation of the optimum.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import torch

from sparseift._checks import check_positive_int

__all__ = ["NM", "parse_nm", "transposable_nm_mask", "is_transposable_nm", "check_nm_shape"]


@dataclass(frozen=True)
class NM:
    """Transposable N:M structure: ``n`` of every ``m`` entries kept along rows and columns."""

    n: int
    m: int

    def __post_init__(self) -> None:
        check_positive_int("n", self.n)
        check_positive_int("m", self.m)
        if self.n > self.m:
            raise ValueError(f"N:M needs n <= m; got n={self.n} > m={self.m}")

    @property
    def sparsity(self) -> float:
        """``1 - N/M``."""
        return 1.0 - self.n / self.m

    def __str__(self) -> str:
        return f"{self.n}:{self.m}-T"


def parse_nm(spec: NM | str) -> NM:
    """``"2:8-T"`` (or ``"2:8"``) -> ``NM(2, 8)``."""
    if isinstance(spec, NM):
        return spec
    match = re.fullmatch(r"\s*(\d+)\s*:\s*(\d+)\s*(-T)?\s*", spec) if isinstance(spec, str) else None
    if match is None:
        raise ValueError(f"structure must be an NM or a string like '2:8-T', got {spec!r}")
    return NM(int(match.group(1)), int(match.group(2)))


def _matrix(t: torch.Tensor) -> torch.Tensor:
    return t.reshape(t.shape[0], -1)


def check_nm_shape(name: str, shape: torch.Size | tuple[int, ...], nm: NM) -> None:
    """Raise ``ValueError`` unless both dimensions of the matrix view are multiples of ``m``."""
    rows = shape[0]
    cols = int(np.prod(shape[1:])) if len(shape) > 1 else 1
    if rows % nm.m or cols % nm.m:
        raise ValueError(
            f"parameter {name!r} has matrix view {rows} x {cols}; transposable {nm} needs both "
            f"dimensions to be multiples of m={nm.m}"
        )


def _blocks(matrix: torch.Tensor, m: int) -> torch.Tensor:
    rows, cols = matrix.shape
    return matrix.reshape(rows // m, m, cols // m, m).permute(0, 2, 1, 3).reshape(-1, m, m)


def _unblocks(blocks: torch.Tensor, rows: int, cols: int, m: int) -> torch.Tensor:
    return blocks.reshape(rows // m, cols // m, m, m).permute(0, 2, 1, 3).reshape(rows, cols)


def _block_pattern(scores: np.ndarray, n: int) -> np.ndarray:
    from scipy.optimize import linear_sum_assignment

    m = scores.shape[0]
    taken = np.zeros((m, m), dtype=bool)
    penalty = scores.min() - m * (scores.max() - scores.min()) - 1.0
    for _ in range(n):
        rows, cols = linear_sum_assignment(np.where(taken, penalty, scores), maximize=True)
        taken[rows, cols] = True
    return taken


def transposable_nm_mask(scores: torch.Tensor, nm: NM) -> torch.Tensor:
    """Bool mask, shaped like ``scores``, that is transposable ``nm`` and favours high scores."""
    matrix = _matrix(scores.detach())
    check_nm_shape("scores", tuple(scores.shape), nm)
    rows, cols = matrix.shape
    blocks = _blocks(matrix, nm.m).to(torch.float64).cpu().numpy()
    pattern = np.stack([_block_pattern(block, nm.n) for block in blocks])
    mask = _unblocks(torch.from_numpy(pattern), rows, cols, nm.m)
    return mask.reshape(scores.shape).to(scores.device)


def is_transposable_nm(mask: torch.Tensor, nm: NM) -> bool:
    """Whether every row and every column of every ``m x m`` block of ``mask`` has ``n`` Trues."""
    blocks = _blocks(_matrix(mask), nm.m).to(torch.int64)
    return bool((blocks.sum(1) == nm.n).all() and (blocks.sum(2) == nm.n).all())
