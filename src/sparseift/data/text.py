"""A byte-level text corpus (vocabulary 256) and next-byte prediction blocks.

A corpus is one file, or every file under a folder matching a glob pattern, concatenated
in sorted relative-path order, so the same files always give the same bytes; its sha256
is recorded so a run names exactly the text it trained on. Debian's ``python3.11-doc``
reST sources (497 files, about 11 MB of English) are the default corpus.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor
from torch.utils.data import Dataset

from sparseift._checks import check_positive_int
from sparseift.data.locate import candidate_dirs, missing_data_error

__all__ = [
    "PYTHON_DOCS_DIR",
    "PYTHON_DOCS_INSTALL",
    "ByteCorpus",
    "load_byte_corpus",
    "ByteBlockDataset",
]

PYTHON_DOCS_DIR = "/usr/share/doc/python3.11/html/_sources"
PYTHON_DOCS_INSTALL = "apt-get install -y --no-install-recommends python3.11-doc"


@dataclass(frozen=True)
class ByteCorpus:
    """The bytes of a corpus as a uint8 tensor, their sha256, and the files they came from
    (relative to ``root``, in concatenation order)."""

    data: Tensor
    sha256: str
    root: Path
    files: tuple[str, ...]


def load_byte_corpus(path: str | os.PathLike[str] | None = None, pattern: str = "*") -> ByteCorpus:
    """Read a corpus from ``path``: a file, or the files under a folder (recursively) whose
    name matches ``pattern``. Without ``path``, the Python docs sources are used, looked for
    in the Debian package's folder, then ``$SPARSEIFT_DATA_DIR/python3.11-doc`` and
    ``./data/python3.11-doc``."""
    looked = candidate_dirs(path, PYTHON_DOCS_DIR, "python3.11-doc")
    for place in looked:
        if place.is_file():
            return _concatenate(place.parent, [place])
        files = sorted((p for p in place.rglob(pattern) if p.is_file()), key=lambda p: p.relative_to(place).as_posix())
        if files:
            return _concatenate(place, files)
    raise missing_data_error(
        f"a text corpus (a file, or files matching {pattern!r} under a folder)",
        looked,
        f"run `{PYTHON_DOCS_INSTALL}` for the default corpus, or pass data_dir=PATH (--data-dir PATH) "
        "naming a text file or a folder of them.",
    )


def _concatenate(root: Path, files: list[Path]) -> ByteCorpus:
    raw = b"".join(path.read_bytes() for path in files)
    data = torch.frombuffer(bytearray(raw), dtype=torch.uint8) if raw else torch.empty(0, dtype=torch.uint8)
    relative = tuple(path.relative_to(root).as_posix() for path in files)
    return ByteCorpus(data, hashlib.sha256(raw).hexdigest(), root, relative)


class ByteBlockDataset(Dataset[tuple[Tensor, Tensor]]):
    """Next-byte prediction blocks of a byte stream: example ``i`` is the input
    ``data[i*stride : i*stride + context_length]`` and the target shifted by one byte,
    both int64 of shape ``(context_length,)``. ``stride`` defaults to ``context_length``
    (non-overlapping blocks); ``stride=1`` makes every offset an example."""

    def __init__(self, data: Tensor, context_length: int, stride: int | None = None) -> None:
        if data.dtype != torch.uint8 or data.dim() != 1:
            raise ValueError(f"data must be a 1-D uint8 tensor, got {data.dtype} of shape {tuple(data.shape)}")
        self.context_length = check_positive_int("context_length", context_length)
        self.stride = check_positive_int("stride", context_length if stride is None else stride)
        if data.numel() < context_length + 1:
            raise ValueError(
                f"context_length must be < the number of bytes ({data.numel()}) so one block and its "
                f"target fit, got {context_length}"
            )
        self.data = data
        self._window = torch.arange(context_length, device=data.device)

    def __len__(self) -> int:
        return (self.data.numel() - self.context_length - 1) // self.stride + 1

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        if not -len(self) <= index < len(self):
            raise IndexError(f"index must lie in [{-len(self)}, {len(self)}), got {index}")
        inputs, targets = self.batch(torch.tensor([index % len(self)], device=self.device))
        return inputs[0], targets[0]

    @property
    def device(self) -> torch.device:
        """The device the bytes live on."""
        return self.data.device

    def batch(self, indices: Tensor) -> tuple[Tensor, Tensor]:
        """Inputs and targets, each ``(len(indices), context_length)`` int64."""
        positions = indices[:, None] * self.stride + self._window
        return self.data[positions].long(), self.data[positions + 1].long()

    def to(self, device: torch.device | str) -> ByteBlockDataset:
        """The same blocks over the bytes moved to ``device`` (``self`` when already there)."""
        device = torch.device(device)
        if self.device == device:
            return self
        return ByteBlockDataset(self.data.to(device), self.context_length, self.stride)
