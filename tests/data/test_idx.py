from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

from sparseift.data import read_idx
from sparseift.data.idx import parse_idx
from tests.data.fakes import idx_bytes


@pytest.mark.parametrize("dtype", ["u1", "i1", "i2", "i4", "f4", "f8"])
@pytest.mark.parametrize("gzipped", [False, True])
def test_read_idx_round_trips_every_type(tmp_path: Path, dtype: str, gzipped: bool) -> None:
    values = (np.arange(2 * 3 * 4).reshape(2, 3, 4) - 5).astype(dtype)
    raw = idx_bytes(values)
    path = tmp_path / "values.idx"
    path.write_bytes(gzip.compress(raw) if gzipped else raw)
    read = read_idx(path)
    assert read.dtype == np.dtype(dtype) and read.dtype.isnative
    np.testing.assert_array_equal(read, values)


def test_header_is_big_endian() -> None:
    raw = bytes([0, 0, 0x08, 2, 0, 0, 0, 2, 0, 0, 0, 3]) + bytes(range(6))
    np.testing.assert_array_equal(parse_idx(raw), np.arange(6, dtype=np.uint8).reshape(2, 3))


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"\x01\x00\x08\x01\x00\x00\x00\x01\x00", "first two bytes"),
        (b"\x00\x00\x07\x01\x00\x00\x00\x01\x00", "type byte"),
        (b"\x00\x00\x08\x02\x00\x00\x00\x01", "declares 2 dimensions"),
        (b"\x00\x00\x08\x01\x00\x00\x00\x03\x00", "needs 11 bytes"),
    ],
)
def test_malformed_idx_is_rejected(raw: bytes, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_idx(raw)
