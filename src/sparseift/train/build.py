"""Build a run's pieces from its config: data, dense and Sparse-IFT model, optimizer, sparsifier.

This is the one place that wires ``models``, ``transforms``, ``flops`` and ``sparsity``
together for a training run (STYLE.md).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.utils.data import Subset

from sparseift import sparsity as sp
from sparseift.data import DataSplit, build_dataset
from sparseift.models import build_model
from sparseift.models.init import kaiming_init, param_groups, zero_init_last_bn
from sparseift.models.registry import model_spec
from sparseift.transforms import transform
from sparseift.transforms.api import is_excluded
from sparseift.train.config import DataConfig, OptimConfig, RunConfig, config_from_dict

__all__ = [
    "RunModel",
    "load_data",
    "example_batch",
    "build_run_model",
    "restore_model",
    "build_optimizer",
    "build_sparsifier",
    "METHODS",
]

METHODS: dict[str, type[sp.Sparsifier]] = {
    "static": sp.StaticSparsifier,
    "snip": sp.SNIP,
    "grasp": sp.GraSP,
    "force": sp.FORCE,
    "set": sp.SET,
    "rigl": sp.RigL,
    "granet": sp.GraNet,
    "gmp": sp.GradualMagnitudePruning,
}


def load_data(config: DataConfig, split: str) -> DataSplit:
    """One split of the configured dataset (``train_subset`` keeps the first N training examples)."""
    data = build_dataset(config.name, split, config.data_dir, **config.kwargs)
    n = config.train_subset
    if split == "train" and n is not None and n < len(data.dataset):
        dataset = data.dataset
        first = dataset.subset(torch.arange(n)) if hasattr(dataset, "subset") else Subset(dataset, range(n))
        data = dataclasses.replace(data, dataset=first)
    return data


def example_batch(data: DataSplit, size: int = 1) -> torch.Tensor:
    """A model-ready input of ``size`` examples (normalised images or token ids)."""
    x = torch.stack([data.dataset[i][0] for i in range(size)])
    transform_ = data.batch_transform(augment=False)
    return transform_(x) if transform_ is not None else x


@dataclass
class RunModel:
    """The dense model, the trained (Sparse-IFT) model and its sparse parameters' targets."""

    dense: nn.Module
    model: nn.Module
    sparse_params: dict[str, float]


def build_run_model(config: RunConfig, example: torch.Tensor) -> RunModel:
    """Dense model from the registry, then the configured Sparse-IFT transform (if any)."""
    torch.manual_seed(config.train.seed)
    dense = build_model(config.model.name, **config.model.kwargs)
    t = config.transform
    if t.family == "dense":
        return RunModel(dense, dense, {})
    if t.family == "sparse":
        names = [n for n in sp.default_sparse_params(dense, example) if not is_excluded(n.rpartition(".")[0], t.exclude)]
        return RunModel(dense, dense, dict.fromkeys(names, t.sparsity))
    result = transform(
        dense,
        t.family,
        t.sparsity,
        example_inputs=example,
        exclude=t.exclude or None,
        keep_first_last_dense=t.keep_first_last_dense,
        nonlinearity=None if t.nonlinearity == "none" else "default",
    )
    _initialise(result.model, config.model.name, t.family)
    return RunModel(dense, result.model, result.sparse_params)


def _initialise(model: nn.Module, name: str, family: str) -> None:
    """Initialise a freshly transformed model for training from scratch (appendix C.2).

    Sparse Wide keeps every module type, so the model's own scheme applies (its registry
    ``reinit`` or its ``reset_parameters``); the layer-wise families add new module types,
    so they get the paper's Kaiming init with the last BatchNorm of each residual branch
    at zero.
    """
    spec = model_spec(name)
    if family == "wide" and spec.reinit is not None:
        spec.reinit(model)
    elif family == "wide" and hasattr(model, "reset_parameters"):
        model.reset_parameters()
    elif family != "wide":
        kaiming_init(model)
        zero_init_last_bn(model)


def build_optimizer(model: nn.Module, config: OptimConfig) -> torch.optim.Optimizer:
    """SGD (Nesterov) or AdamW; no weight decay on biases and norm parameters (paper recipes)."""
    groups = param_groups(model, config.weight_decay)
    if config.name == "sgd":
        return torch.optim.SGD(groups, lr=config.lr, momentum=config.momentum, nesterov=config.nesterov)
    return torch.optim.AdamW(groups, lr=config.lr, betas=config.betas, eps=config.eps)


def build_sparsifier(
    config: RunConfig,
    run: RunModel,
    optimizer: torch.optim.Optimizer,
    total_steps: int,
    example: torch.Tensor,
    prune_loader: Iterable[Any] | None,
) -> sp.Sparsifier | None:
    """The configured sparse-training method on the Sparse-IFT model's sparse parameters.

    With ``transform.iso_flop`` the method calibrates its targets to the dense model's
    FLOPs (appendix A.2), averaged over the run for dense-to-sparse methods.
    """
    if not run.sparse_params:
        return None
    s = config.sparsity
    iso_flop = config.transform.iso_flop and config.transform.family != "sparse"
    budget = sp.FlopBudget.iso_flop(run.model, run.dense, example) if iso_flop else None
    common: dict[str, Any] = {"distribution": s.distribution, "flop_budget": budget, "seed": s.seed}
    params: dict[str, float] | list[str] = run.sparse_params
    if s.distribution != "uniform" or s.structure is not None:
        params, common["sparsity"] = list(run.sparse_params), config.transform.sparsity
    if s.structure is not None:
        common["structure"] = s.structure
        common.pop("sparsity")
    cls = METHODS[s.method]
    if issubclass(cls, sp.PruningAtInit):
        if s.structure is not None:
            raise ValueError(f"sparsity.structure is not supported with sparsity.method={s.method!r}")
        return cls(run.model, optimizer, params, loader=prune_loader, batches=s.prune_batches, **common)
    if issubclass(cls, sp.DynamicSparsifier):
        common.update(total_steps=total_steps, delta_t=s.delta_t, end_step=int(s.end_fraction * total_steps))
        if cls in (sp.GraNet, sp.GradualMagnitudePruning):
            common["initial_sparsity"] = s.initial_sparsity
        else:
            common["drop_fraction"] = s.drop_fraction
    return cls(run.model, optimizer, params, **common)


def restore_model(checkpoint: Mapping[str, Any]) -> tuple[nn.Module, RunConfig]:
    """Rebuild a trained model (eval mode), masks included, from a checkpoint written by the trainer.

    The architecture comes from the checkpoint's config and example-input shape (Sparse
    Wide needs a forward pass); no data is read.
    """
    missing = [key for key in ("config", "example", "model", "sparse_targets") if key not in checkpoint]
    if missing:
        raise ValueError(f"not a checkpoint written by `sparseift train`: it lacks {', '.join(map(repr, missing))}")
    config = config_from_dict(checkpoint["config"])
    example = checkpoint["example"]
    run = build_run_model(config, torch.zeros(example["shape"], dtype=getattr(torch, example["dtype"])))
    sp.attach_masks(run.model, checkpoint["sparse_targets"])
    run.model.load_state_dict(checkpoint["model"])
    return run.model.eval(), config
