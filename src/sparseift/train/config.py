"""Run configuration: typed dataclasses, loaded from YAML or TOML, overridable by ``key=value``.

A recipe file mirrors :class:`RunConfig`::

    name: fmnist_wide_rigl
    model: {name: fmnist_resnet, kwargs: {width: 8}}
    transform: {family: wide, sparsity: 0.75}
    sparsity: {method: rigl, delta_t: 100}
    data: {name: fashion_mnist, batch_size: 128}
    optim: {name: sgd, lr: 0.1, weight_decay: 5.0e-4}
    schedule: {name: multistep, milestones: [0.3, 0.6, 0.8], gamma: 0.2}
    train: {epochs: 2}

Unknown keys and values of the wrong type or outside their range are rejected with the
dotted key named (``optim.lr must be > 0, got -1``).
"""

from __future__ import annotations

import dataclasses
import json
import tomllib
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from sparseift._checks import check_fraction

__all__ = [
    "ConfigError",
    "ModelConfig",
    "TransformConfig",
    "SparsityConfig",
    "DataConfig",
    "OptimConfig",
    "ScheduleConfig",
    "TrainConfig",
    "RunConfig",
    "load_config",
    "config_from_dict",
    "apply_overrides",
    "config_to_dict",
]

FamilyName = Literal["dense", "sparse", "wide", "parallel", "factorized", "doped"]
MethodName = Literal["static", "snip", "grasp", "force", "set", "rigl", "granet", "gmp"]


class ConfigError(ValueError):
    """A configuration key or value that is not allowed."""


def _positive(key: str, value: float) -> None:
    if not value > 0:
        raise ConfigError(f"{key} must be > 0, got {value!r}")


@dataclass
class ModelConfig:
    """A registered model (``sparseift.models.build_model(name, **kwargs)``)."""

    name: str = "fmnist_resnet"
    kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass
class TransformConfig:
    """The Sparse-IFT family applied to the model.

    ``"dense"`` trains the model as it is; ``"sparse"`` trains it at its own width with the
    sparse layers at ``sparsity`` and no Iso-FLOP compensation: the same-FLOP DST baselines
    of table 8, which spend the saved FLOPs on a longer schedule (``epochs = 200/(1-s)``).
    """

    family: FamilyName = "dense"
    sparsity: float = 0.0
    exclude: list[str] = field(default_factory=list)
    keep_first_last_dense: bool = True
    nonlinearity: Literal["default", "none"] = "default"
    iso_flop: bool = True
    """Calibrate the sparse layers' sparsity so the run's FLOPs equal the dense model's (A.2)."""

    def validate(self, prefix: str) -> None:
        try:
            check_fraction(self.sparsity, f"{prefix}.sparsity", high_open=True)
        except (TypeError, ValueError) as error:
            raise ConfigError(str(error)) from None
        if self.family == "dense" and self.sparsity != 0:
            raise ConfigError(f"{prefix}.sparsity must be 0 when {prefix}.family is 'dense', got {self.sparsity}")


@dataclass
class SparsityConfig:
    """The sparse-training method (section 3.1) and its hyperparameters (paper defaults)."""

    method: MethodName = "rigl"
    distribution: Literal["uniform", "erk"] = "uniform"
    structure: str | None = None
    """Transposable N:M, e.g. ``"2:8-T"`` (section 3.2)."""
    delta_t: int = 100
    drop_fraction: float = 0.3
    end_fraction: float = 0.75
    initial_sparsity: float = 0.0
    """GraNet / gradual magnitude pruning: sparsity at the start of the dense-to-sparse schedule."""
    prune_batches: int = 1
    """SNIP / GraSP / FORCE: batches of training data used to score weights at initialisation."""
    seed: int = 0

    def validate(self, prefix: str) -> None:
        _positive(f"{prefix}.delta_t", self.delta_t)
        _positive(f"{prefix}.prune_batches", self.prune_batches)
        for name in ("drop_fraction", "end_fraction"):
            value = getattr(self, name)
            if not 0 < value <= 1:
                raise ConfigError(f"{prefix}.{name} must lie in (0, 1], got {value!r}")
        if not 0 <= self.initial_sparsity < 1:
            raise ConfigError(f"{prefix}.initial_sparsity must lie in [0, 1), got {self.initial_sparsity!r}")


@dataclass
class DataConfig:
    """A registered dataset (``sparseift.data.build_dataset``) and how it is batched."""

    name: str = "fashion_mnist"
    data_dir: str | None = None
    batch_size: int = 128
    eval_batch_size: int = 512
    augment: bool = True
    train_subset: int | None = None
    """Use only the first N training examples (after the seeded train/val split): CPU proxies."""
    kwargs: dict[str, Any] = field(default_factory=dict)

    def validate(self, prefix: str) -> None:
        _positive(f"{prefix}.batch_size", self.batch_size)
        _positive(f"{prefix}.eval_batch_size", self.eval_batch_size)
        if self.train_subset is not None:
            _positive(f"{prefix}.train_subset", self.train_subset)


@dataclass
class OptimConfig:
    """SGD (Nesterov) as in the paper's CNN recipes, or AdamW as in its GPT recipe."""

    name: Literal["sgd", "adamw"] = "sgd"
    lr: float = 0.1
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 5e-4
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8

    def validate(self, prefix: str) -> None:
        _positive(f"{prefix}.lr", self.lr)
        if self.weight_decay < 0:
            raise ConfigError(f"{prefix}.weight_decay must be >= 0, got {self.weight_decay!r}")
        if not 0 <= self.momentum < 1:
            raise ConfigError(f"{prefix}.momentum must lie in [0, 1), got {self.momentum!r}")


@dataclass
class ScheduleConfig:
    """Learning-rate schedule, as a function of the training progress.

    ``multistep``: lr times ``gamma`` at each milestone (fractions of training: the paper's
    epochs 60/120/160 of 200 are 0.3/0.6/0.8); ``cosine``: cosine decay to
    ``final_fraction * lr``; ``warmup_cosine``: linear warm-up over ``warmup_fraction`` then
    cosine to ``final_fraction * lr`` (the GPT recipe, 10%); ``constant``.
    """

    name: Literal["multistep", "cosine", "warmup_cosine", "constant"] = "multistep"
    milestones: list[float] = field(default_factory=lambda: [0.3, 0.6, 0.8])
    gamma: float = 0.2
    warmup_fraction: float = 0.0
    final_fraction: float = 0.0

    def validate(self, prefix: str) -> None:
        for value in self.milestones:
            if not 0 < value < 1:
                raise ConfigError(f"{prefix}.milestones must be fractions of training in (0, 1), got {value!r}")
        if list(self.milestones) != sorted(self.milestones):
            raise ConfigError(f"{prefix}.milestones must be increasing, got {self.milestones}")
        _positive(f"{prefix}.gamma", self.gamma)
        for name in ("warmup_fraction", "final_fraction"):
            value = getattr(self, name)
            if not 0 <= value < 1:
                raise ConfigError(f"{prefix}.{name} must lie in [0, 1), got {value!r}")


@dataclass
class TrainConfig:
    """The loop: length, regularisation, precision, logging and checkpoints."""

    epochs: float = 1.0
    max_steps: int | None = None
    label_smoothing: float = 0.0
    grad_clip: float | None = None
    amp: Literal["none", "bf16", "fp16"] = "none"
    grad_accum: int = 1
    seed: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    threads: int | None = None
    log_every: int = 50
    eval_every_epochs: float = 1.0
    checkpoint_every: int | None = None
    """Also checkpoint every N optimizer steps (always at each evaluation and at the end)."""
    out_dir: str = "runs"
    tensorboard: bool = False
    progress: bool = True
    spectral_each_eval: bool = False
    """Record the spectral graph metrics of the masks (section 4) at each evaluation."""
    spectral_every: int | None = None
    """Also record them every N optimizer steps."""

    def validate(self, prefix: str) -> None:
        _positive(f"{prefix}.epochs", self.epochs)
        _positive(f"{prefix}.grad_accum", self.grad_accum)
        _positive(f"{prefix}.log_every", self.log_every)
        _positive(f"{prefix}.eval_every_epochs", self.eval_every_epochs)
        for name in ("max_steps", "checkpoint_every", "threads", "grad_clip", "spectral_every"):
            value = getattr(self, name)
            if value is not None:
                _positive(f"{prefix}.{name}", value)
        if not 0 <= self.label_smoothing < 1:
            raise ConfigError(f"{prefix}.label_smoothing must lie in [0, 1), got {self.label_smoothing!r}")


@dataclass
class RunConfig:
    """Everything one training run needs."""

    name: str = "run"
    model: ModelConfig = field(default_factory=ModelConfig)
    transform: TransformConfig = field(default_factory=TransformConfig)
    sparsity: SparsityConfig = field(default_factory=SparsityConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def validate(self) -> RunConfig:
        """Check every section's ranges; returns ``self``."""
        for f in dataclasses.fields(self):
            section = getattr(self, f.name)
            if hasattr(section, "validate"):
                section.validate(f.name)
        return self


# -- dict <-> dataclass --------------------------------------------------------------------


def _coerce(key: str, value: Any, annotation: Any) -> Any:
    """Check ``value`` against a field's type annotation (and convert int -> float, list -> tuple)."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if dataclasses.is_dataclass(annotation):
        if not isinstance(value, Mapping):
            raise ConfigError(f"{key} must be a mapping of {annotation.__name__} fields, got {value!r}")
        return _build(annotation, value, key)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for option in (a for a in args if a is not type(None)):
            try:
                return _coerce(key, value, option)
            except ConfigError as error:
                errors.append(str(error))
        raise ConfigError(errors[0] if errors else f"{key} has an invalid value {value!r}")
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{key} must be one of {', '.join(map(repr, args))}; got {value!r}")
        return value
    if origin in (list, tuple):
        if not isinstance(value, Sequence) or isinstance(value, str):
            raise ConfigError(f"{key} must be a list, got {value!r}")
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(value) != len(args):
                raise ConfigError(f"{key} must have {len(args)} entries, got {value!r}")
            return tuple(_coerce(f"{key}[{i}]", v, a) for i, (v, a) in enumerate(zip(value, args)))
        item = args[0] if args else Any
        items = [_coerce(f"{key}[{i}]", v, item) for i, v in enumerate(value)]
        return items if origin is list else tuple(items)
    if origin is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{key} must be a mapping, got {value!r}")
        return dict(value)
    if annotation is Any:
        return value
    if annotation is float and isinstance(value, (int, str)) and not isinstance(value, bool):
        try:
            return float(value)  # YAML 1.1 reads 1e-8 (no dot) as a string
        except ValueError:
            raise ConfigError(f"{key} must be float, got {value!r}") from None
    if annotation in (int, float, str, bool):
        if not isinstance(value, annotation) or (annotation is int and isinstance(value, bool)):
            raise ConfigError(f"{key} must be {annotation.__name__}, got {value!r}")
        return value
    raise ConfigError(f"{key}: unsupported field type {annotation!r}")


def _build(cls: type, data: Mapping[str, Any], prefix: str) -> Any:
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        where = f"{prefix}." if prefix else ""
        raise ConfigError(f"unknown config key {where}{unknown[0]}; allowed keys: {', '.join(sorted(names))}")
    kwargs = {}
    for name, value in data.items():
        key = f"{prefix}.{name}" if prefix else name
        kwargs[name] = _coerce(key, value, hints[name])
    return cls(**kwargs)


def config_from_dict(data: Mapping[str, Any]) -> RunConfig:
    """A validated :class:`RunConfig` from a nested mapping."""
    return _build(RunConfig, data, "").validate()


def config_to_dict(config: RunConfig) -> dict[str, Any]:
    """The config as plain nested dicts/lists (JSON-able; tuples become lists)."""
    return json.loads(json.dumps(dataclasses.asdict(config)))


def _parse_value(text: str) -> Any:
    import yaml

    return yaml.safe_load(text)


def apply_overrides(data: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """Apply ``section.key=value`` overrides (values parsed as YAML scalars/lists) to a dict."""
    result = json.loads(json.dumps(data))
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} must look like key=value (e.g. optim.lr=0.05)")
        key, text = item.split("=", 1)
        node = result
        parts = key.strip().split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {key!r}: {part!r} is not a section")
        node[parts[-1]] = _parse_value(text)
    return result


def load_config(path: str | Path | None = None, overrides: Sequence[str] = ()) -> RunConfig:
    """Load a recipe from YAML (``.yaml``/``.yml``) or TOML (``.toml``), apply overrides, validate."""
    data: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"config file {str(path)!r} does not exist")
        text = path.read_text()
        if path.suffix == ".toml":
            data = tomllib.loads(text)
        elif path.suffix in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text) or {}
        else:
            raise ConfigError(f"config file must end in .yaml, .yml or .toml, got {path.name!r}")
    return config_from_dict(apply_overrides(data, overrides))
