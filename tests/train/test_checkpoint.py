"""Atomic checkpoints, loaded without unpickling code."""

from __future__ import annotations

import pickle

import pytest
import torch

from sparseift.train import load_checkpoint, save_checkpoint


def test_round_trip_and_no_temporary_files(tmp_path) -> None:  # noqa: ANN001
    path = save_checkpoint({"w": torch.arange(3), "step": 5}, tmp_path / "ck.pt")
    assert load_checkpoint(path)["step"] == 5
    assert [p.name for p in tmp_path.iterdir()] == ["ck.pt"]


def test_a_failed_write_keeps_the_previous_checkpoint(tmp_path, monkeypatch) -> None:  # noqa: ANN001
    path = save_checkpoint({"step": 1}, tmp_path / "ck.pt")

    def broken_save(obj: object, handle) -> None:  # noqa: ANN001
        handle.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint({"step": 2}, path)
    monkeypatch.undo()
    assert load_checkpoint(path)["step"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["ck.pt"]


class _Evil:
    def __reduce__(self):  # noqa: ANN204
        return (print, ("pwned",))


def test_pickled_code_is_refused(tmp_path) -> None:  # noqa: ANN001
    path = tmp_path / "evil.pt"
    path.write_bytes(pickle.dumps({"x": _Evil()}))
    with pytest.raises(Exception, match="(?i)weights_only|unsupported|global"):
        load_checkpoint(path)


def test_missing_checkpoint(tmp_path) -> None:  # noqa: ANN001
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_checkpoint(tmp_path / "nope.pt")
