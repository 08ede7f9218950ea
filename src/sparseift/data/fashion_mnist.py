"""Fashion-MNIST (60000 train / 10000 test, 28x28 grey, 10 classes) from its IDX files,
as Debian's ``dataset-fashion-mnist`` package installs them or from a user folder."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from sparseift.data.idx import read_idx
from sparseift.data.locate import candidate_dirs, missing_data_error
from sparseift.data.tensors import LabelledArrays

__all__ = ["FASHION_MNIST_SYSTEM_DIR", "FASHION_MNIST_INSTALL", "load_fashion_mnist"]

FASHION_MNIST_SYSTEM_DIR = "/usr/share/datasets/fashion-mnist"
FASHION_MNIST_INSTALL = "apt-get install -y dataset-fashion-mnist"
_PREFIX = {True: "train", False: "t10k"}


def load_fashion_mnist(train: bool, data_dir: str | os.PathLike[str] | None = None) -> LabelledArrays:
    """Images as uint8 ``(N, 1, 28, 28)`` and labels as int64 ``(N,)`` of the official train
    or test set. Looks in ``data_dir`` when given, else in the Debian package's folder,
    ``$SPARSEIFT_DATA_DIR/fashion-mnist`` and ``./data/fashion-mnist``; each file may be
    gzipped (``.gz``) or plain."""
    prefix = _PREFIX[bool(train)]
    looked = candidate_dirs(data_dir, FASHION_MNIST_SYSTEM_DIR, "fashion-mnist")
    for folder in looked:
        images_path = _find_file(folder, f"{prefix}-images-idx3-ubyte")
        labels_path = _find_file(folder, f"{prefix}-labels-idx1-ubyte")
        if images_path is not None and labels_path is not None:
            return _check(read_idx(images_path), read_idx(labels_path), folder)
    raise missing_data_error(
        f"Fashion-MNIST ({prefix}-images-idx3-ubyte[.gz] and {prefix}-labels-idx1-ubyte[.gz])",
        looked,
        f"run `{FASHION_MNIST_INSTALL}`, or pass data_dir=PATH (--data-dir PATH) naming a folder with the IDX files.",
    )


def _find_file(folder: Path, stem: str) -> Path | None:
    for name in (f"{stem}.gz", stem):
        if (folder / name).is_file():
            return folder / name
    return None


def _check(images: np.ndarray, labels: np.ndarray, folder: Path) -> LabelledArrays:
    if images.dtype != np.uint8 or images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise ValueError(
            f"{folder}: expected uint8 images (N, H, W) and N labels, got {images.dtype} {images.shape} "
            f"and {labels.shape}"
        )
    return LabelledArrays(images[:, None], labels.astype(np.int64), folder)
