"""The IDX file format of (Fashion-)MNIST, parsed with numpy; plain or gzipped files.

Layout (big-endian): two zero bytes, one type byte, one byte ``ndim``, then ``ndim``
uint32 sizes, then the values in C order. Type bytes: 0x08 uint8, 0x09 int8, 0x0B int16,
0x0C int32, 0x0D float32, 0x0E float64.
"""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np

__all__ = ["IDX_DTYPES", "read_idx", "parse_idx"]

IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype("u1"),
    0x09: np.dtype("i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_GZIP_MAGIC = b"\x1f\x8b"


def parse_idx(raw: bytes, source: str = "<bytes>") -> np.ndarray:
    """Parse the bytes of one (uncompressed) IDX file into an array in native byte order."""
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise ValueError(f"{source}: not an IDX file (the first two bytes must be zero), got {raw[:4]!r}")
    type_code, ndim = raw[2], raw[3]
    if type_code not in IDX_DTYPES:
        allowed = ", ".join(f"0x{code:02X}" for code in IDX_DTYPES)
        raise ValueError(f"{source}: IDX type byte must be one of {allowed}, got 0x{type_code:02X}")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(f"{source}: IDX header declares {ndim} dimensions but the file has {len(raw)} bytes")
    shape = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    dtype = IDX_DTYPES[type_code]
    expected = header + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(raw) != expected:
        raise ValueError(f"{source}: IDX shape {shape} of {dtype} needs {expected} bytes, the file has {len(raw)}")
    values = np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape)
    return values.astype(dtype.newbyteorder("="), copy=True)


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an IDX file, gunzipping it first when it starts with the gzip magic bytes."""
    raw = Path(path).read_bytes()
    if raw[:2] == _GZIP_MAGIC:
        raw = gzip.decompress(raw)
    return parse_idx(raw, source=str(path))
