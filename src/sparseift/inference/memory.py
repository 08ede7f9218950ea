"""The caching buffer pool that a :class:`~sparseift.inference.CompiledModel` runs in.

While a compiled model runs, every CPU tensor of at least 1 MiB (activations, the kernels'
input layouts) comes from a pool of reusable, huge-page-advised blocks instead of fresh
pages from the OS (``csrc/buffer_pool.h``): at batch 64 the page faults of fresh
activations cost more than the convolutions. Freed blocks are kept, up to
``$SPARSEIFT_POOL_MB`` (default 4096) MiB, for the next forward pass; at the cap the least
recently returned blocks make room (those of a model compiled earlier for other sizes);
:func:`release_buffers` returns them to the OS. Without the kernels this is a no-op.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from sparseift.inference._ext import kernels

__all__ = ["pooled_buffers", "release_buffers", "cached_bytes"]


@contextlib.contextmanager
def pooled_buffers() -> Iterator[bool]:
    """Within the block, CPU tensors >= 1 MiB come from the pool; yields whether it is active
    (``False`` without the kernels or when another allocator of higher priority is installed)."""
    ext = kernels()
    active = ext is not None and ext.pool_install()
    try:
        yield active
    finally:
        if active:
            ext.pool_uninstall()


def release_buffers() -> int:
    """Free the pool's cached blocks (blocks still in use stay valid); returns the bytes freed."""
    ext = kernels()
    return 0 if ext is None else int(ext.pool_release())


def cached_bytes() -> int:
    """Bytes the pool holds for reuse."""
    ext = kernels()
    return 0 if ext is None else int(ext.pool_cached_bytes())
