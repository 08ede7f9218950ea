"""Batched image augmentation as tensor ops: a whole batch at once, on its own device.

Images are ``(N, C, H, W)`` tensors, uint8 (0..255) or float. Randomness comes only from
the ``generator`` argument (which must live on the images' device, e.g.
``torch.Generator("cuda")``), so a run is reproducible from the generator's seed and its
state can be checkpointed with ``generator.get_state()``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["random_crop", "random_flip", "normalize", "BatchTransform"]


def _check_images(images: Tensor) -> None:
    if images.dim() != 4:
        raise ValueError(f"images must be a (N, C, H, W) tensor, got shape {tuple(images.shape)}")


def random_crop(images: Tensor, padding: int, generator: torch.Generator | None = None) -> Tensor:
    """Zero-pad every side by ``padding`` pixels, then cut each image back to ``(H, W)`` at
    its own offset ``(dy, dx)``, uniform in ``[0, 2 * padding]^2``."""
    _check_images(images)
    if isinstance(padding, bool) or not isinstance(padding, int) or padding < 0:
        raise ValueError(f"padding must be an int >= 0, got {padding!r}")
    if padding == 0:
        return images
    n, _, height, width = images.shape
    padded = F.pad(images, (padding, padding, padding, padding))
    offsets = torch.randint(0, 2 * padding + 1, (2, n), generator=generator, device=images.device)
    rows = offsets[0, :, None] + torch.arange(height, device=images.device)  # (N, H)
    cols = offsets[1, :, None] + torch.arange(width, device=images.device)  # (N, W)
    batch = torch.arange(n, device=images.device)[:, None, None]
    channels_last = padded.permute(0, 2, 3, 1)[batch, rows[:, :, None], cols[:, None, :]]  # (N, H, W, C)
    return channels_last.permute(0, 3, 1, 2).contiguous()


def random_flip(images: Tensor, p: float = 0.5, generator: torch.Generator | None = None) -> Tensor:
    """Mirror each image left-right with probability ``p``."""
    _check_images(images)
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"p must lie in [0, 1], got {p!r}")
    flip = torch.rand(images.shape[0], generator=generator, device=images.device) < p
    return torch.where(flip[:, None, None, None], images.flip(-1), images)


def normalize(
    images: Tensor, mean: Sequence[float], std: Sequence[float], dtype: torch.dtype = torch.float32
) -> Tensor:
    """``(x - mean) / std`` per channel in ``dtype``, with uint8 images first scaled to [0, 1]."""
    _check_images(images)
    channels = images.shape[1]
    if len(mean) != channels or len(std) != channels:
        raise ValueError(f"mean and std must have {channels} entries (one per channel), got {len(mean)} and {len(std)}")
    if any(s <= 0 for s in std):
        raise ValueError(f"std must be > 0 in every channel, got {tuple(std)}")
    x = images.to(dtype)
    if not images.is_floating_point():
        x = x / 255.0
    mean_t = torch.tensor(mean, dtype=dtype, device=images.device).view(1, -1, 1, 1)
    std_t = torch.tensor(std, dtype=dtype, device=images.device).view(1, -1, 1, 1)
    return (x - mean_t) / std_t


@dataclass(frozen=True)
class BatchTransform:
    """Random pad-crop (``crop_padding`` > 0), random horizontal flip (``flip``), then
    per-channel normalisation with ``mean``/``std``: the batch-level transform a trainer
    applies after moving a uint8 batch to its device."""

    mean: tuple[float, ...]
    std: tuple[float, ...]
    crop_padding: int = 0
    flip: bool = False

    def __call__(self, images: Tensor, generator: torch.Generator | None = None) -> Tensor:
        images = random_crop(images, self.crop_padding, generator)
        if self.flip:
            images = random_flip(images, 0.5, generator)
        return normalize(images, self.mean, self.std)
