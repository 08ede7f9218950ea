"""Build and load the C++ kernels on first use, with a cache; ``None`` when they cannot be built.

The extension is compiled with ``torch.utils.cpp_extension.load`` (needs a C++ compiler
and ``ninja``) for the CPU it runs on (``-march=native``), so AVX-512 or AVX2 is used where
the CPU has it. The build directory is keyed by the source, the torch version, the compiler
flags and the CPU's vector features, so a home directory shared between machines never
loads a binary built for another CPU. Set ``SPARSEIFT_CACHE`` to move the cache (default
``~/.cache/sparseift``); set ``SPARSEIFT_NO_KERNELS=1`` to force the pure PyTorch path.
"""

from __future__ import annotations

import functools
import hashlib
import os
import platform
import warnings
from pathlib import Path
from types import ModuleType

import torch

__all__ = ["SOURCES", "cache_dir", "cpu_features", "build_kernels", "kernels"]

CSRC = Path(__file__).with_name("csrc")
SOURCES = tuple(sorted(CSRC.glob("*.cpp")))
HEADERS = tuple(sorted(CSRC.glob("*.h")))
CFLAGS = ("-O3", "-march=native", "-ffp-contract=fast", "-fopenmp")
LDFLAGS = ("-pthread", "-fopenmp")
_FEATURES = ("avx512f", "avx512bw", "avx512vl", "avx2", "fma", "avx", "sse4_2", "neon", "asimd")


def cache_dir() -> Path:
    """Where compiled kernels are cached: ``$SPARSEIFT_CACHE`` or ``~/.cache/sparseift``."""
    root = os.environ.get("SPARSEIFT_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "sparseift"
    )
    return Path(root)


def cpu_features() -> tuple[str, ...]:
    """The SIMD features of this CPU that the kernels care about (from /proc/cpuinfo)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return (platform.machine(),)
    flags: set[str] = set()
    for line in text.splitlines():
        if line.startswith(("flags", "Features")):
            flags.update(line.split(":", 1)[1].split())
            break
    return tuple(f for f in _FEATURES if f in flags)


def _build_key() -> str:
    digest = hashlib.sha256()
    sources = (*(source.read_bytes() for source in SOURCES), *(header.read_bytes() for header in HEADERS))
    for part in (*sources, torch.__version__.encode(), " ".join(CFLAGS).encode(),
                 " ".join(cpu_features()).encode(), platform.machine().encode()):
        digest.update(part)
    return digest.hexdigest()[:16]


def build_kernels(directory: Path | None = None, *, verbose: bool = False) -> ModuleType | None:
    """Compile (or load from ``directory``) the kernels; ``None`` with a warning on failure.

    Failure covers a missing compiler or ``ninja``, a compile error, or
    ``SPARSEIFT_NO_KERNELS=1``; callers then run every layer through PyTorch's dense ops.
    """
    if os.environ.get("SPARSEIFT_NO_KERNELS", "") not in ("", "0"):
        return None
    key = _build_key()
    build = (directory or cache_dir()) / f"kernels-{key}"
    try:
        from torch.utils import cpp_extension

        build.mkdir(parents=True, exist_ok=True)
        return cpp_extension.load(
            name=f"sparseift_kernels_{key}",
            sources=[str(source) for source in SOURCES],
            extra_cflags=list(CFLAGS),
            extra_ldflags=list(LDFLAGS),
            build_directory=str(build),
            verbose=verbose,
        )
    except Exception as error:  # any build failure means: use the dense fallback
        warnings.warn(
            f"sparseift.inference: sparse CPU kernels unavailable ({type(error).__name__}: "
            f"{str(error).strip().splitlines()[-1] if str(error).strip() else error!r}); "
            "every layer runs through PyTorch's dense path",
            RuntimeWarning,
            stacklevel=2,
        )
        return None


@functools.lru_cache(maxsize=1)
def kernels() -> ModuleType | None:
    """The process-wide kernels, built on the first call (see :func:`build_kernels`)."""
    return build_kernels()
