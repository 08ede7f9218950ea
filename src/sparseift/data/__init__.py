"""Datasets, splits, batched augmentation and a fast loader, all offline.

Quick start::

    from sparseift.data import BatchLoader, build_dataset

    train = build_dataset("fashion_mnist", "train")          # uint8 (1, 28, 28), 10 classes
    loader = BatchLoader(train.dataset, 128, shuffle=True, drop_last=True, seed=0, device="cpu")
    transform = train.batch_transform()                       # pad-crop + flip + normalise
    generator = torch.Generator().manual_seed(0)
    for x, y in loader:
        x = transform(x, generator)

Nothing is ever downloaded: missing data raises ``FileNotFoundError`` naming where it
looked and the command that installs it or how to point to it.
"""

from sparseift.data.augment import BatchTransform, normalize, random_crop, random_flip
from sparseift.data.cifar import load_cifar
from sparseift.data.fashion_mnist import load_fashion_mnist
from sparseift.data.idx import read_idx
from sparseift.data.image_folder import ImageFolderDataset, RandomResizedCrop, ResizeCenterCrop, scan_image_folder
from sparseift.data.loader import BatchLoader, shard_indices
from sparseift.data.registry import Augmentation, DataSplit, build_dataset, dataset_spec, list_datasets
from sparseift.data.safe_pickle import safe_load
from sparseift.data.splits import SPLITS, Split, contiguous_ranges, holdout_split
from sparseift.data.tensors import LabelledArrays, TensorPairDataset
from sparseift.data.text import ByteBlockDataset, ByteCorpus, load_byte_corpus

__all__ = [
    "build_dataset",
    "dataset_spec",
    "list_datasets",
    "DataSplit",
    "Augmentation",
    "BatchLoader",
    "shard_indices",
    "BatchTransform",
    "random_crop",
    "random_flip",
    "normalize",
    "SPLITS",
    "Split",
    "holdout_split",
    "contiguous_ranges",
    "TensorPairDataset",
    "LabelledArrays",
    "ByteBlockDataset",
    "ByteCorpus",
    "load_byte_corpus",
    "ImageFolderDataset",
    "ResizeCenterCrop",
    "RandomResizedCrop",
    "scan_image_folder",
    "read_idx",
    "load_fashion_mnist",
    "load_cifar",
    "safe_load",
]
