"""Where data is looked for, and the error that says so when it is missing.

Nothing is ever downloaded. A dataset is found in the folder the user names (``data_dir``),
or else in the system folder a Debian package installs it to, or else under one of the
default data roots: ``$SPARSEIFT_DATA_DIR`` and ``./data`` (the folder to copy data into
and carry to a machine without network).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

__all__ = ["DATA_DIR_ENV", "default_data_roots", "candidate_dirs", "missing_data_error"]

DATA_DIR_ENV = "SPARSEIFT_DATA_DIR"


def default_data_roots() -> list[Path]:
    """``$SPARSEIFT_DATA_DIR`` (when set) and ``./data``, in that order."""
    roots = [Path(os.environ[DATA_DIR_ENV])] if os.environ.get(DATA_DIR_ENV) else []
    return [*roots, Path("data")]


def candidate_dirs(data_dir: str | os.PathLike[str] | None, system_dir: str | None, folder: str) -> list[Path]:
    """The folders to search, in order: only ``data_dir`` when given; else ``system_dir``
    (when not None) and ``<root>/<folder>`` for each default data root."""
    if data_dir is not None:
        return [Path(data_dir).expanduser()]
    system = [Path(system_dir)] if system_dir is not None else []
    return [*system, *(root / folder for root in default_data_roots())]


def missing_data_error(what: str, looked_in: Sequence[Path | str], hint: str) -> FileNotFoundError:
    """A :class:`FileNotFoundError` naming ``what`` was missing, every place looked in, and
    ``hint``: the one command that installs it or how to point to it."""
    places = "\n".join(f"  - {Path(p).resolve()}" for p in looked_in)
    return FileNotFoundError(f"{what} not found. Looked in:\n{places}\nTo fix: {hint}")
