"""Load pickled data without letting the file run code.

``pickle.load`` calls whatever callable a file names (``os.system`` included), so loading a
pickle from an untrusted or corrupted download can execute arbitrary code. The CIFAR
"python version" batches are pickles, so they are read with :class:`DataUnpickler`, which
resolves only the few globals needed to rebuild numpy arrays and bytes (``bytes`` and a
latin-1-only ``_codecs.encode``, which Python 3 uses for bytes at protocol 2); dicts, lists,
ints and strings are built by pickle opcodes and need no global at all. Any other global, and
any persistent id, is refused with :class:`pickle.UnpicklingError` before it is called.
"""

from __future__ import annotations

import pickle
from typing import IO, Any

import numpy as np

__all__ = ["DataUnpickler", "safe_load"]

# numpy pickles arrays through these private helpers; take them from numpy's own reduce
# output so the allow-list holds across numpy 1.x (numpy.core) and 2.x (numpy._core).
_RECONSTRUCT = np.ndarray((0,), dtype=np.uint8).__reduce__()[0]
_FROMBUFFER = np.zeros(1, dtype=np.uint8).__reduce_ex__(5)[0]



def _latin1_encode(text: str, encoding: str = "latin1") -> bytes:
    """What Python 3 pickles of protocol < 3 use to rebuild bytes (``_codecs.encode``),
    limited to the one codec they name."""
    if encoding not in ("latin1", "latin-1") or not isinstance(text, str):
        raise pickle.UnpicklingError(f"_codecs.encode is only allowed as encode(str, 'latin1'), got {encoding!r}")
    return text.encode("latin1")


_ALLOWED: dict[tuple[str, str], Any] = {
    ("builtins", "bytes"): bytes,
    ("_codecs", "encode"): _latin1_encode,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    **{(f"numpy.{core}.multiarray", "_reconstruct"): _RECONSTRUCT for core in ("core", "_core")},
    **{(f"numpy.{core}.numeric", "_frombuffer"): _FROMBUFFER for core in ("core", "_core")},
}


class DataUnpickler(pickle.Unpickler):
    """An unpickler that only rebuilds numpy arrays and plain containers, never calls code."""

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            allowed = ", ".join(f"{m}.{n}" for m, n in _ALLOWED)
            raise pickle.UnpicklingError(
                f"refused to load global {module}.{name} from a data pickle; allowed globals: {allowed}"
            ) from None

    def persistent_load(self, pid: Any) -> Any:
        raise pickle.UnpicklingError(f"refused persistent id {pid!r} in a data pickle")


def safe_load(file: IO[bytes]) -> Any:
    """Unpickle ``file`` with :class:`DataUnpickler`; Python 2 strings come back as bytes."""
    return DataUnpickler(file, encoding="bytes").load()
