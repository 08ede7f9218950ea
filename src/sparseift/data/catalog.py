"""The built-in datasets of :func:`build_dataset`.

Image classification sets keep their official test set as "test" and hold a seeded
``val_fraction`` of the official training set out as "val" (``split_seed`` picks which;
``val_fraction=0`` trains on all of it). Text is cut into contiguous train/val/test bytes.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from torch import Tensor

from sparseift.data.cifar import CIFAR_LAYOUTS, CifarName, load_cifar
from sparseift.data.fashion_mnist import load_fashion_mnist
from sparseift.data.image_folder import ImageFolderDataset, RandomResizedCrop, ResizeCenterCrop, scan_image_folder
from sparseift.data.locate import candidate_dirs, missing_data_error
from sparseift.data.registry import Augmentation, DataSplit, register_dataset
from sparseift.data.splits import Split, contiguous_ranges, holdout_split
from sparseift.data.tensors import LabelledArrays, TensorPairDataset
from sparseift.data.text import ByteBlockDataset, load_byte_corpus

__all__ = ["DEFAULT_VAL_FRACTION", "IMAGENET_MEAN", "IMAGENET_STD"]

PathArg = str | os.PathLike[str] | None

DEFAULT_VAL_FRACTION = 0.1
DIGITS_TEST_FRACTION = 0.2
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# Per-channel statistics of the official training sets, pixel values in [0, 1].
_CIFAR_STATS = {
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
}


def _train_or_val(split: Split, n: int, val_fraction: float, split_seed: int) -> Tensor:
    """The indices of the official training set that make up ``split`` ("train" or "val")."""
    kept, held = holdout_split(n, val_fraction, split_seed, name="val_fraction")
    if split == "val" and held.numel() == 0:
        raise ValueError(f"split='val' needs val_fraction > 0 (a held-out part of {n} examples), got {val_fraction}")
    return kept if split == "train" else held


def _in_memory(
    name: str, split: Split, arrays: LabelledArrays, val_fraction: float, split_seed: int, *,
    num_classes: int, mean: tuple[float, ...], std: tuple[float, ...], augmentation: Augmentation,
) -> DataSplit:
    """A :class:`DataSplit` of labelled arrays: the official training set (cut into train/val)
    or the official test set, as passed in ``arrays``."""
    dataset = TensorPairDataset.from_arrays(arrays)
    if split != "test":
        dataset = dataset.subset(_train_or_val(split, len(dataset), val_fraction, split_seed))
    shape = tuple(arrays.inputs.shape[1:])
    return DataSplit(
        name, split, "classification", dataset, num_classes, shape, mean, std, augmentation, str(arrays.source)
    )


@register_dataset("fashion_mnist", "Fashion-MNIST, 28x28 grey, 10 classes (apt-get install -y dataset-fashion-mnist)")
def fashion_mnist(
    split: Split, data_dir: PathArg = None, *, val_fraction: float = DEFAULT_VAL_FRACTION, split_seed: int = 0
) -> DataSplit:
    """Fashion-MNIST; pixel mean/std 0.2860/0.3530; default augmentation pad-2 crop + flip."""
    arrays = load_fashion_mnist(split != "test", data_dir)
    return _in_memory(
        "fashion_mnist", split, arrays, val_fraction, split_seed,
        num_classes=10, mean=(0.2860,), std=(0.3530,), augmentation=Augmentation(crop_padding=2, flip=True),
    )


def _cifar(name: CifarName, split: Split, data_dir: PathArg, val_fraction: float, split_seed: int) -> DataSplit:
    mean, std = _CIFAR_STATS[name]
    return _in_memory(
        name, split, load_cifar(name, split != "test", data_dir), val_fraction, split_seed,
        num_classes=CIFAR_LAYOUTS[name].num_classes, mean=mean, std=std,
        augmentation=Augmentation(crop_padding=4, flip=True),
    )


@register_dataset("cifar10", "CIFAR-10, 32x32 RGB, 10 classes (python-version archive or folder at data_dir)")
def cifar10(
    split: Split, data_dir: PathArg = None, *, val_fraction: float = DEFAULT_VAL_FRACTION, split_seed: int = 0
) -> DataSplit:
    """CIFAR-10; default augmentation pad-4 crop + flip."""
    return _cifar("cifar10", split, data_dir, val_fraction, split_seed)


@register_dataset("cifar100", "CIFAR-100 (fine labels), 32x32 RGB, 100 classes (python-version archive or folder)")
def cifar100(
    split: Split, data_dir: PathArg = None, *, val_fraction: float = DEFAULT_VAL_FRACTION, split_seed: int = 0
) -> DataSplit:
    """CIFAR-100 with its 100 fine labels; default augmentation pad-4 crop + flip."""
    return _cifar("cifar100", split, data_dir, val_fraction, split_seed)


@register_dataset("digits", "scikit-learn digits, 8x8 grey, 10 classes (pip install scikit-learn); for fast tests")
def digits(
    split: Split, data_dir: PathArg = None, *, val_fraction: float = DEFAULT_VAL_FRACTION, split_seed: int = 0
) -> DataSplit:
    """scikit-learn's 1797 digits (values 0..16 scaled to 0..255). It has no official test
    set: a fixed 20% (seed 0, whatever ``split_seed``) is "test", the rest train/val."""
    if data_dir is not None:
        raise ValueError(f"data_dir must be None for 'digits' (the data ships inside scikit-learn), got {data_dir!r}")
    try:
        from sklearn import datasets as sklearn_datasets
    except ModuleNotFoundError as error:
        raise ModuleNotFoundError("the 'digits' dataset needs scikit-learn: run `pip install scikit-learn`") from error
    bunch = sklearn_datasets.load_digits()
    images = np.rint(bunch.images * (255 / 16)).astype(np.uint8)[:, None]
    rest, test = (part.numpy() for part in holdout_split(len(images), DIGITS_TEST_FRACTION, seed=0))
    pick = test if split == "test" else rest
    source = Path(sklearn_datasets.__file__).parent / "data"
    scaled = images / 255.0
    return _in_memory(
        "digits", split, LabelledArrays(images[pick], bunch.target[pick], source), val_fraction, split_seed,
        num_classes=10, mean=(float(scaled.mean()),), std=(float(scaled.std()),), augmentation=Augmentation(),
    )


@register_dataset("text_bytes", "byte-level text corpus, vocabulary 256 (default: the Python 3.11 docs sources)")
def text_bytes(
    split: Split, data_dir: PathArg = None, *, context_length: int = 128, stride: int | None = None,
    val_fraction: float = 0.05, test_fraction: float = 0.05, pattern: str = "*",
) -> DataSplit:
    """Next-byte blocks of ``context_length`` from the corpus at ``data_dir`` (a file or the
    files matching ``pattern`` under a folder); the bytes are cut into contiguous
    ``[train | val | test]`` parts. ``stride`` defaults to ``context_length``."""
    corpus = load_byte_corpus(data_dir, pattern)
    start, stop = contiguous_ranges(corpus.data.numel(), val_fraction, test_fraction)[split]
    if stop - start <= context_length:
        raise ValueError(
            f"split {split!r} holds {stop - start} of the corpus's {corpus.data.numel()} bytes, too few for "
            f"context_length={context_length}; raise its fraction or lower context_length"
        )
    dataset = ByteBlockDataset(corpus.data[start:stop], context_length, stride)
    return DataSplit(
        "text_bytes", split, "language_modeling", dataset, 256, (context_length,), None, None, Augmentation(),
        str(corpus.root), corpus.sha256,
    )


def _image_folder(
    name: str, split: Split, data_dir: PathArg, image_size: int, val_fraction: float, split_seed: int, hint: str
) -> DataSplit:
    looked = candidate_dirs(data_dir, None, name)
    root = next((place for place in looked if place.is_dir()), None)
    if root is None:
        raise missing_data_error(f"{name} images (a folder of class folders, or train/ and val/ of them)", looked, hint)
    train_dir = root / "train" if (root / "train").is_dir() else root
    samples, classes = scan_image_folder(train_dir)
    if split == "test":
        held = [root / folder for folder in ("val", "test")]
        test_dir = next((folder for folder in held if train_dir != root and folder.is_dir()), None)
        if test_dir is None:
            raise missing_data_error(f"{name} test images (a val/ or test/ folder beside train/)", held, hint)
        samples, _ = scan_image_folder(test_dir, classes)
        transform = ResizeCenterCrop(image_size)
    else:
        samples = [samples[i] for i in _train_or_val(split, len(samples), val_fraction, split_seed).tolist()]
        transform = RandomResizedCrop(image_size) if split == "train" else ResizeCenterCrop(image_size)
    return DataSplit(
        name, split, "classification", ImageFolderDataset(samples, classes, transform), len(classes),
        (3, image_size, image_size), IMAGENET_MEAN, IMAGENET_STD, Augmentation(flip=True), str(root),
    )


@register_dataset("imagenet", "ImageNet (or any) ImageFolder directory with train/ and val/ class folders")
def imagenet(
    split: Split, data_dir: PathArg = None, *, image_size: int = 224,
    val_fraction: float = DEFAULT_VAL_FRACTION, split_seed: int = 0,
) -> DataSplit:
    """ImageNet from ``data_dir/train/<class>/`` and ``data_dir/val/<class>/`` (the official
    validation images, sorted into class folders, are the "test" split). Images are decoded
    per example (use a ``DataLoader`` with workers); training crops are random-resized,
    evaluation crops central; flip and normalisation happen on the batch."""
    hint = (
        "copy or symlink the ImageNet train/ and val/ class folders (val/ sorted into class folders) into "
        "./data/imagenet, or pass data_dir=PATH (--data-dir PATH) naming the folder that holds them."
    )
    return _image_folder("imagenet", split, data_dir, image_size, val_fraction, split_seed, hint)


@register_dataset("image_folder", "any ImageFolder directory (class folders, or train/ and val/ or test/ of them)")
def image_folder(
    split: Split, data_dir: PathArg = None, *, image_size: int = 224,
    val_fraction: float = DEFAULT_VAL_FRACTION, split_seed: int = 0,
) -> DataSplit:
    """Any ImageFolder directory: ``data_dir/<class>/`` (no test split) or
    ``data_dir/train/<class>/`` beside ``val/`` or ``test/``; as :func:`imagenet` otherwise."""
    hint = "pass data_dir=PATH (--data-dir PATH) naming a folder of class folders of JPEG/PNG images."
    return _image_folder("image_folder", split, data_dir, image_size, val_fraction, split_seed, hint)
