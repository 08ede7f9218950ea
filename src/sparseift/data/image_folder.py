"""ImageFolder-style datasets (one sub-folder of JPEG/PNG images per class), decoded with
PIL into uint8 ``(3, size, size)`` tensors by a per-image crop transform.

Only the geometry (resize and crop) happens per image on the CPU; flip and normalisation
are applied afterwards to the whole batch on its device (:class:`BatchTransform`). The
random crop draws from torch's global generator, which ``DataLoader`` seeds per worker
from its own ``generator``, so loading is reproducible.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import Dataset

from sparseift._checks import check_positive_int

__all__ = [
    "IMAGE_EXTENSIONS",
    "scan_image_folder",
    "ResizeCenterCrop",
    "RandomResizedCrop",
    "ImageFolderDataset",
]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")
ImageTransform = Callable[[Image.Image], Tensor]


def scan_image_folder(
    root: str | os.PathLike[str], classes: list[str] | None = None
) -> tuple[list[tuple[Path, int]], list[str]]:
    """The ``(path, label)`` of every image under ``root/<class>/`` (recursively, any case of
    the extensions in :data:`IMAGE_EXTENSIONS`) in sorted order, and the class names;
    label ``i`` is ``classes[i]``. ``classes`` defaults to the sorted sub-folder names; pass
    the training set's list so a test folder gets the same labels. Raises
    :class:`FileNotFoundError` when there are no images."""
    root = Path(root)
    if classes is None:
        classes = sorted(entry.name for entry in root.iterdir() if entry.is_dir()) if root.is_dir() else []
    samples = [
        (path, label)
        for label, name in enumerate(classes)
        for path in sorted((root / name).rglob("*"))
        if path.suffix.lower() in IMAGE_EXTENSIONS and path.is_file()
    ]
    if not samples:
        raise FileNotFoundError(
            f"no images ({', '.join(IMAGE_EXTENSIONS)}) in class sub-folders of {root.resolve()}; "
            "an ImageFolder-style directory holds one folder per class"
        )
    return samples, classes


def _to_tensor(image: Image.Image) -> Tensor:
    return torch.from_numpy(np.array(image, dtype=np.uint8)).permute(2, 0, 1).contiguous()


@dataclass(frozen=True)
class ResizeCenterCrop:
    """Evaluation geometry: resize the shorter side to ``resize`` (default ``size * 8 / 7``,
    i.e. 256 for 224), then cut the central ``size x size`` square."""

    size: int
    resize: int | None = None

    def __call__(self, image: Image.Image) -> Tensor:
        size = check_positive_int("size", self.size)
        resize = check_positive_int("resize", self.resize if self.resize is not None else round(size * 8 / 7))
        width, height = image.size
        scale = resize / min(width, height)
        image = image.resize((max(size, round(width * scale)), max(size, round(height * scale))), Image.BILINEAR)
        left, top = (image.size[0] - size) // 2, (image.size[1] - size) // 2
        return _to_tensor(image.crop((left, top, left + size, top + size)))


@dataclass(frozen=True)
class RandomResizedCrop:
    """Training geometry: a random box covering a fraction in ``scale`` of the image area
    with aspect ratio log-uniform in ``ratio``, resized to ``size x size``; after 10 boxes
    that do not fit, the central square."""

    size: int
    scale: tuple[float, float] = (0.08, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)

    def __call__(self, image: Image.Image) -> Tensor:
        size = check_positive_int("size", self.size)
        width, height = image.size
        log_ratio = torch.log(torch.tensor(self.ratio))
        for _ in range(10):
            area = width * height * torch.empty(1).uniform_(*self.scale).item()
            aspect = math.exp(torch.empty(1).uniform_(log_ratio[0].item(), log_ratio[1].item()).item())
            box_w, box_h = round(math.sqrt(area * aspect)), round(math.sqrt(area / aspect))
            if 0 < box_w <= width and 0 < box_h <= height:
                left = int(torch.randint(0, width - box_w + 1, ()).item())
                top = int(torch.randint(0, height - box_h + 1, ()).item())
                break
        else:
            box_w = box_h = min(width, height)
            left, top = (width - box_w) // 2, (height - box_h) // 2
        box = (left, top, left + box_w, top + box_h)
        return _to_tensor(image.resize((size, size), Image.BILINEAR, box=box))


class ImageFolderDataset(Dataset[tuple[Tensor, int]]):
    """Images decoded on access: ``(transform(RGB image), label)``."""

    def __init__(self, samples: list[tuple[Path, int]], classes: list[str], transform: ImageTransform) -> None:
        self.samples = samples
        self.classes = classes
        self.transform = transform

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        path, label = self.samples[index]
        with Image.open(path) as image:
            return self.transform(image.convert("RGB")), label
