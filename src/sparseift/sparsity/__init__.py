"""Sparse training: masks, distributions, schedules and methods (paper sections 3.1, 3.2, A.2).

Static random, pruning at init (SNIP, GraSP, FORCE), dynamic sparse training (SET, RigL,
gradual magnitude pruning, GraNet), transposable N:M, as ``torch.optim``-shaped objects::

    sparsifier = RigL(model, optimizer, result.sparse_params, total_steps=T)
    ...; optimizer.step(); sparsifier.step()
"""

from sparseift.sparsity.base import Sparsifier, StaticSparsifier
from sparseift.sparsity.distributions import DISTRIBUTIONS, Distribution, distribute, erk, global_sparsity, uniform
from sparseift.sparsity.dst import SET, DynamicSparsifier, GradualMagnitudePruning, GraNet, RigL
from sparseift.sparsity.masks import apply_masks, attach_masks, get_masks, mask_key, topk_mask, zero_entries
from sparseift.sparsity.nm import NM, is_transposable_nm, parse_nm, transposable_nm_mask
from sparseift.sparsity.pruning_at_init import FORCE, SNIP, GraSP, PruningAtInit, force_scores, grasp_scores, snip_scores
from sparseift.sparsity.report import FlopBudget, FlopSummary, ParamSparsity, SparsityReport
from sparseift.sparsity.schedules import UpdateSchedule, cosine_drop_fraction, cubic_sparsity
from sparseift.sparsity.selection import default_sparse_params, resolve_targets

__all__ = [
    "Sparsifier",
    "StaticSparsifier",
    "DynamicSparsifier",
    "SET",
    "RigL",
    "GradualMagnitudePruning",
    "GraNet",
    "PruningAtInit",
    "SNIP",
    "GraSP",
    "FORCE",
    "snip_scores",
    "grasp_scores",
    "force_scores",
    "NM",
    "parse_nm",
    "transposable_nm_mask",
    "is_transposable_nm",
    "Distribution",
    "DISTRIBUTIONS",
    "uniform",
    "erk",
    "distribute",
    "global_sparsity",
    "UpdateSchedule",
    "cosine_drop_fraction",
    "cubic_sparsity",
    "mask_key",
    "attach_masks",
    "get_masks",
    "apply_masks",
    "zero_entries",
    "topk_mask",
    "FlopBudget",
    "FlopSummary",
    "ParamSparsity",
    "SparsityReport",
    "default_sparse_params",
    "resolve_targets",
]
