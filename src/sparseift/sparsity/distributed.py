"""The few collectives that keep masks identical on every rank (torch.distributed, any backend)."""

from __future__ import annotations

import torch
import torch.distributed as dist

__all__ = ["world_size", "all_reduce_mean_", "broadcast_mask_"]


def world_size() -> int:
    """Number of ranks of the default process group (1 when not distributed)."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def all_reduce_mean_(tensor: torch.Tensor) -> torch.Tensor:
    """Average ``tensor`` over ranks in place (no-op on one rank)."""
    if world_size() > 1:
        dist.all_reduce(tensor)
        tensor.div_(world_size())
    return tensor


def broadcast_mask_(mask: torch.Tensor) -> torch.Tensor:
    """Overwrite ``mask`` with rank 0's (sent as uint8, which every backend supports)."""
    if world_size() > 1:
        payload = mask.to(torch.uint8)
        dist.broadcast(payload, src=0)
        mask.copy_(payload.bool())
    return mask
