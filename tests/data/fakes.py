"""Writers of tiny fake datasets in the real on-disk formats (IDX, pickled CIFAR batches)."""

from __future__ import annotations

import gzip
import io
import pickle
import struct
import tarfile
from pathlib import Path

import numpy as np

IDX_TYPE_CODES = {np.dtype("u1"): 0x08, np.dtype("i1"): 0x09, np.dtype("i2"): 0x0B, np.dtype("i4"): 0x0C,
                  np.dtype("f4"): 0x0D, np.dtype("f8"): 0x0E}


def idx_bytes(values: np.ndarray) -> bytes:
    """The IDX encoding of ``values`` (big-endian header and data)."""
    header = bytes([0, 0, IDX_TYPE_CODES[values.dtype], values.ndim]) + struct.pack(f">{values.ndim}I", *values.shape)
    return header + values.astype(values.dtype.newbyteorder(">")).tobytes()


def write_fashion_mnist(folder: Path, n_train: int = 50, n_test: int = 20, gzipped: bool = True) -> Path:
    """Four IDX files named as Fashion-MNIST's, with pixel value = example index mod 256."""
    folder.mkdir(parents=True, exist_ok=True)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        images = np.broadcast_to((np.arange(n) % 256).astype(np.uint8)[:, None, None], (n, 28, 28)).copy()
        labels = (np.arange(n) % 10).astype(np.uint8)
        for stem, values in ((f"{prefix}-images-idx3-ubyte", images), (f"{prefix}-labels-idx1-ubyte", labels)):
            raw = idx_bytes(values)
            if gzipped:
                (folder / f"{stem}.gz").write_bytes(gzip.compress(raw))
            else:
                (folder / stem).write_bytes(raw)
    return folder


class Py2Pickler(pickle._Pickler):  # type: ignore[name-defined]
    """Writes strings the way Python 2's cPickle did (BINSTRING opcodes), as in the real
    CIFAR batches, so they come back as bytes under ``encoding="bytes"``."""

    dispatch = dict(pickle._Pickler.dispatch)  # type: ignore[attr-defined]

    def save_py2_string(self, obj: bytes | str) -> None:
        raw = obj.encode("latin-1") if isinstance(obj, str) else obj
        if len(raw) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(raw)]) + raw)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(raw)) + raw)
        self.memoize(obj)

    dispatch[bytes] = save_py2_string
    dispatch[str] = save_py2_string


def cifar_batch(n: int, label_key: str, num_classes: int, offset: int) -> bytes:
    """One pickled CIFAR batch of ``n`` images: every pixel of image ``i`` is ``offset + i``."""
    data = np.repeat((offset + np.arange(n)).astype(np.uint8)[:, None], 3072, axis=1)
    batch = {
        "batch_label": "fake batch",
        label_key: [(offset + i) % num_classes for i in range(n)],
        "data": data,
        "filenames": [f"img_{offset + i}.png" for i in range(n)],
    }
    buffer = io.BytesIO()
    Py2Pickler(buffer, protocol=2).dump(batch)
    return buffer.getvalue()


CIFAR_FILES = {
    "cifar10": ("cifar-10-batches-py", [f"data_batch_{i}" for i in range(1, 6)], ["test_batch"], "labels", 10),
    "cifar100": ("cifar-100-python", ["train"], ["test"], "fine_labels", 100),
}


def write_cifar(root: Path, name: str, per_batch: int = 4, archive: bool = True) -> Path:
    """A fake CIFAR archive (``root/<archive>``) or extracted folder (``root/<folder>/``)."""
    folder, train, test, label_key, num_classes = CIFAR_FILES[name]
    files = {}
    for number, batch in enumerate(train + test):
        files[batch] = cifar_batch(per_batch, label_key, num_classes, offset=number * per_batch)
    root.mkdir(parents=True, exist_ok=True)
    if not archive:
        (root / folder).mkdir()
        for batch, raw in files.items():
            (root / folder / batch).write_bytes(raw)
        return root / folder
    path = root / ("cifar-10-python.tar.gz" if name == "cifar10" else "cifar-100-python.tar.gz")
    with tarfile.open(path, "w:gz") as tar:
        for batch, raw in files.items():
            info = tarfile.TarInfo(f"{folder}/{batch}")
            info.size = len(raw)
            tar.addfile(info, io.BytesIO(raw))
    return path
