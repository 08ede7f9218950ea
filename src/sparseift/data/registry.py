"""A registry of dataset names: ``build_dataset(name, split, data_dir=None, **kwargs)``.

Each builder returns a :class:`DataSplit`: the dataset of one split plus what a model and
a trainer need to know about it (classes or vocabulary, input shape, normalisation, the
default augmentation). Builders never download: missing data raises
:class:`FileNotFoundError` saying where it looked and how to install or point to it.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from torch.utils.data import Dataset

from sparseift._checks import check_choice
from sparseift.data.augment import BatchTransform
from sparseift.data.splits import SPLITS, Split

__all__ = [
    "Augmentation",
    "DataSplit",
    "DatasetSpec",
    "register_dataset",
    "build_dataset",
    "dataset_spec",
    "list_datasets",
]

Task = Literal["classification", "language_modeling"]


@dataclass(frozen=True)
class Augmentation:
    """The default training augmentation of a dataset: random pad-crop and horizontal flip."""

    crop_padding: int = 0
    flip: bool = False


@dataclass(frozen=True)
class DataSplit:
    """One split of a dataset.

    ``dataset`` yields ``(x, y)``: uint8 images ``input_shape`` and int64 labels for
    classification, int64 byte blocks ``(context_length,)`` and their next bytes for
    language modelling. ``num_classes`` is the vocabulary size (256) for text. ``mean`` and
    ``std`` (per channel, of pixel values in [0, 1]) are None for text. ``source`` is the
    path read; ``sha256`` the digest of the whole text corpus (all splits).
    """

    name: str
    split: Split
    task: Task
    dataset: Dataset[Any]
    num_classes: int
    input_shape: tuple[int, ...]
    mean: tuple[float, ...] | None
    std: tuple[float, ...] | None
    augmentation: Augmentation
    source: str
    sha256: str | None = None

    def batch_transform(self, augment: bool | None = None) -> BatchTransform | None:
        """The on-device batch transform: normalisation, plus the default augmentation when
        ``augment`` (default: only for the train split). None for text."""
        if self.mean is None or self.std is None:
            return None
        if augment is None:
            augment = self.split == "train"
        extra = self.augmentation if augment else Augmentation()
        return BatchTransform(self.mean, self.std, extra.crop_padding, extra.flip)


Builder = Callable[..., DataSplit]


@dataclass(frozen=True)
class DatasetSpec:
    """A registered dataset: its builder ``build(split, data_dir, **kwargs)`` and a description."""

    name: str
    build: Builder
    description: str


_REGISTRY: dict[str, DatasetSpec] = {}


def register_dataset(name: str, description: str) -> Callable[[Builder], Builder]:
    """Decorator: register a builder ``build(split, data_dir=None, **kwargs)`` under ``name``."""

    def decorate(build: Builder) -> Builder:
        if name in _REGISTRY:
            raise ValueError(f"dataset name {name!r} is registered twice")
        _REGISTRY[name] = DatasetSpec(name, build, description)
        return build

    return decorate


def build_dataset(
    name: str, split: Split = "train", data_dir: str | os.PathLike[str] | None = None, **kwargs: Any
) -> DataSplit:
    """Build split ``split`` ("train", "val" or "test") of the registered dataset ``name``,
    read from ``data_dir`` (or the dataset's default places); ``kwargs`` go to its builder
    (e.g. ``val_fraction``, ``split_seed``, ``context_length``, ``image_size``)."""
    check_choice("split", split, SPLITS)
    return dataset_spec(name).build(split, data_dir, **kwargs)


def dataset_spec(name: str) -> DatasetSpec:
    """The :class:`DatasetSpec` registered under ``name``."""
    _load_builtin()
    check_choice("dataset name", name, sorted(_REGISTRY))
    return _REGISTRY[name]


def list_datasets() -> list[str]:
    """Registered dataset names, sorted."""
    _load_builtin()
    return sorted(_REGISTRY)


def _load_builtin() -> None:
    from sparseift.data import catalog  # noqa: F401  (registers the built-in datasets)
