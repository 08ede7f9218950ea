"""How a global sparsity is spread over the sparse parameters: uniform, ERK, or a map.

A distribution is a pure function of parameter shapes and the global sparsity ``s``
(fraction of zeros over all sparse parameters) that returns each parameter's sparsity.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Literal

from sparseift._checks import check_choice, check_sparsity

__all__ = ["Distribution", "DISTRIBUTIONS", "uniform", "erk", "distribute", "global_sparsity"]

Distribution = Literal["uniform", "erk"]
DISTRIBUTIONS: tuple[str, ...] = ("uniform", "erk")


def uniform(shapes: Mapping[str, Sequence[int]], sparsity: float) -> dict[str, float]:
    """Every parameter at ``sparsity`` (the paper's default, appendix A.2)."""
    check_sparsity(sparsity)
    return {name: sparsity for name in shapes}


def erk(shapes: Mapping[str, Sequence[int]], sparsity: float) -> dict[str, float]:
    """Erdos-Renyi-Kernel densities (Evci et al. 2020, section 3, "Sparsity distribution").

    A layer with weight shape ``(n_1, ..., n_k)`` (``(cout, cin, kh, kw)`` for a conv,
    ``(out, in)`` for a linear layer, where ERK reduces to Erdos-Renyi) gets density

        ``d_l = eps * (n_1 + ... + n_k) / (n_1 * ... * n_k)``,

    with ``eps`` solving ``sum_l d_l N_l = (1 - s) sum_l N_l`` (``N_l`` = the layer's size).
    When the largest ``d_l`` would exceed 1, that layer is made dense, removed from the
    budget, and ``eps`` is solved again (the iterative re-normalisation of Evci et al.'s
    reference implementation), until every density is at most 1.
    """
    check_sparsity(sparsity)
    numel = {name: math.prod(shape) for name, shape in shapes.items()}
    raw = {name: sum(shape) / numel[name] for name, shape in shapes.items()}
    dense: set[str] = set()
    eps = 0.0
    while len(dense) < len(shapes):
        budget = (1.0 - sparsity) * sum(numel.values()) - sum(numel[name] for name in dense)
        free = [name for name in shapes if name not in dense]
        eps = budget / sum(raw[name] * numel[name] for name in free)
        largest = max(raw[name] for name in free)
        if eps * largest <= 1.0:
            break
        dense.update(name for name in free if raw[name] == largest)
    return {name: 0.0 if name in dense else 1.0 - eps * raw[name] for name in shapes}


def global_sparsity(sparsities: Mapping[str, float], numels: Mapping[str, int]) -> float:
    """Total zeros over total entries: ``sum_l s_l N_l / sum_l N_l`` (section 5 of PAPER.md)."""
    return sum(sparsities[name] * numels[name] for name in sparsities) / sum(numels[name] for name in sparsities)


def distribute(shapes: Mapping[str, Sequence[int]], sparsity: float, distribution: Distribution) -> dict[str, float]:
    """Per-parameter sparsities of ``distribution`` (``"uniform"`` or ``"erk"``) at global ``sparsity``."""
    check_choice("distribution", distribution, DISTRIBUTIONS)
    return {"uniform": uniform, "erk": erk}[distribution](shapes, sparsity)
