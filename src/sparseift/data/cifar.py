"""CIFAR-10 and CIFAR-100 from the standard "python version" archive or its extracted folder.

The batches are read straight out of ``cifar-10-python.tar.gz`` / ``cifar-100-python.tar.gz``
(no extraction) or from ``cifar-10-batches-py/`` / ``cifar-100-python/``, with the
restricted unpickler of :mod:`sparseift.data.safe_pickle`. Nothing is downloaded.
"""

from __future__ import annotations

import os
import tarfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Literal

import numpy as np

from sparseift._checks import check_choice
from sparseift.data.locate import candidate_dirs, missing_data_error
from sparseift.data.safe_pickle import safe_load
from sparseift.data.tensors import LabelledArrays

__all__ = ["CifarLayout", "CIFAR_LAYOUTS", "load_cifar"]

CifarName = Literal["cifar10", "cifar100"]


@dataclass(frozen=True)
class CifarLayout:
    """How one CIFAR variant is packaged: folder, archive, batch files and the label key."""

    title: str
    folder: str
    archive: str
    train_batches: tuple[str, ...]
    test_batches: tuple[str, ...]
    label_key: str
    num_classes: int


CIFAR_LAYOUTS: dict[str, CifarLayout] = {
    "cifar10": CifarLayout(
        "CIFAR-10",
        "cifar-10-batches-py",
        "cifar-10-python.tar.gz",
        tuple(f"data_batch_{i}" for i in range(1, 6)),
        ("test_batch",),
        "labels",
        10,
    ),
    "cifar100": CifarLayout(
        "CIFAR-100", "cifar-100-python", "cifar-100-python.tar.gz", ("train",), ("test",), "fine_labels", 100
    ),
}


def load_cifar(
    name: CifarName, train: bool, data_dir: str | os.PathLike[str] | None = None
) -> LabelledArrays:
    """Images as uint8 ``(N, 3, 32, 32)`` and labels as int64 ``(N,)`` of the official train
    (50000) or test (10000) set. ``data_dir`` may be the archive, the extracted folder, or a
    folder holding either; without it ``$SPARSEIFT_DATA_DIR`` and ``./data`` are searched."""
    layout = CIFAR_LAYOUTS[check_choice("name", name, CIFAR_LAYOUTS)]
    source = _find_source(layout, data_dir)
    batches = layout.train_batches if train else layout.test_batches
    images, labels = [], []
    with _open_batches(source, layout) as open_batch:
        for batch in batches:
            with open_batch(batch) as file:
                data, batch_labels = _parse_batch(safe_load(file), layout, f"{source}:{batch}")
            images.append(data)
            labels.append(batch_labels)
    return LabelledArrays(np.concatenate(images), np.concatenate(labels), source)


def _find_source(layout: CifarLayout, data_dir: str | os.PathLike[str] | None) -> Path:
    first = layout.train_batches[0]
    looked = candidate_dirs(data_dir, None, "")
    for place in looked:
        for candidate in (place, place / layout.folder, place / layout.archive):
            if candidate.is_file() and tarfile.is_tarfile(candidate):
                return candidate
            if (candidate / first).is_file():
                return candidate
    raise missing_data_error(
        f"{layout.title} ({layout.archive} or its extracted {layout.folder}/)",
        looked,
        f"copy {layout.archive} (the python version from https://www.cs.toronto.edu/~kriz/cifar.html) "
        f"or its extracted {layout.folder}/ into ./data, or pass data_dir=PATH (--data-dir PATH) "
        "pointing at either; nothing is downloaded.",
    )


@contextmanager
def _open_batches(source: Path, layout: CifarLayout) -> Iterator[Callable[[str], IO[bytes]]]:
    """Yield a function that opens one batch file by name, from an archive or a folder."""
    if source.is_dir():
        yield lambda batch: open(source / batch, "rb")
        return
    with tarfile.open(source, "r:*") as archive:

        def open_member(batch: str) -> IO[bytes]:
            name = f"{layout.folder}/{batch}"
            try:
                member = archive.extractfile(name)
            except KeyError:
                member = None
            if member is None:
                raise FileNotFoundError(f"{source} is not a {layout.title} archive: it has no file {name}")
            return member

        yield open_member


def _parse_batch(batch: object, layout: CifarLayout, source: str) -> tuple[np.ndarray, np.ndarray]:
    if not isinstance(batch, dict):
        raise ValueError(f"{source}: a CIFAR batch must unpickle to a dict, got {type(batch).__name__}")
    fields = {key.decode() if isinstance(key, bytes) else key: value for key, value in batch.items()}
    for key in ("data", layout.label_key):
        if key not in fields:
            raise ValueError(f"{source}: CIFAR batch has no {key!r} field; fields: {sorted(fields)}")
    data, labels = fields["data"], np.asarray(fields[layout.label_key], dtype=np.int64)
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise ValueError(f"{source}: 'data' must be a uint8 array of shape (N, 3072), got {data!r:.80}")
    if labels.shape != (data.shape[0],) or labels.min(initial=0) < 0 or labels.max(initial=0) >= layout.num_classes:
        raise ValueError(
            f"{source}: {layout.label_key!r} must hold {data.shape[0]} labels in [0, {layout.num_classes}), "
            f"got shape {labels.shape}"
        )
    return data.reshape(-1, 3, 32, 32), labels
