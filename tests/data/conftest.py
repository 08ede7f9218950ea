"""Fixtures of the data tests: tiny fake datasets written to a temporary folder."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.data.fakes import write_fashion_mnist


@pytest.fixture
def fashion_dir(tmp_path: Path) -> Path:
    return write_fashion_mnist(tmp_path / "fashion")
