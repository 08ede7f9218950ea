from __future__ import annotations

import codecs
import io
import os
import pickle
from pathlib import Path

import numpy as np
import pytest

from sparseift.data import build_dataset, load_cifar, safe_load
from tests.data.fakes import write_cifar


@pytest.mark.parametrize("archive", [True, False])
def test_cifar10_train_and_test(tmp_path: Path, archive: bool) -> None:
    path = write_cifar(tmp_path, "cifar10", per_batch=4, archive=archive)
    train, test = load_cifar("cifar10", True, path), load_cifar("cifar10", False, path)
    assert train.inputs.shape == (20, 3, 32, 32) and train.inputs.dtype == np.uint8
    assert test.inputs.shape == (4, 3, 32, 32)
    # Batches are concatenated in order data_batch_1..5: image i is filled with value i.
    np.testing.assert_array_equal(train.inputs[:, 0, 0, 0], np.arange(20))
    np.testing.assert_array_equal(train.labels, np.arange(20) % 10)
    np.testing.assert_array_equal(test.inputs[:, 2, 31, 31], np.arange(20, 24))


def test_cifar100_uses_fine_labels_and_a_parent_folder(tmp_path: Path) -> None:
    write_cifar(tmp_path, "cifar100", per_batch=6)
    train = load_cifar("cifar100", True, tmp_path)  # the folder holding the archive
    np.testing.assert_array_equal(train.labels, np.arange(6))
    split = build_dataset("cifar100", "train", tmp_path, val_fraction=0.5)
    assert split.num_classes == 100 and split.input_shape == (3, 32, 32) and len(split.dataset) == 3
    assert split.batch_transform().crop_padding == 4


def test_missing_cifar_says_where_it_looked(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError) as error:
        load_cifar("cifar10", True, tmp_path)
    message = str(error.value)
    assert str(tmp_path.resolve()) in message and "cifar-10-python.tar.gz" in message and "data_dir" in message


class _Evil:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (open, (str(self.marker), "w"))


def test_malicious_pickle_is_refused_before_running(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    (folder / "data_batch_1").write_bytes(pickle.dumps({b"data": _Evil(marker)}, protocol=2))
    with pytest.raises(pickle.UnpicklingError, match="refused to load global"):
        load_cifar("cifar10", True, folder)
    assert not marker.exists()


@pytest.mark.parametrize(
    "payload", [(os.system, ("true",)), (eval, ("1",)), (__import__, ("os",)), (codecs.encode, ("abc", "rot13"))]
)
def test_safe_load_refuses_any_callable(payload: tuple) -> None:
    class Reducer:
        def __reduce__(self) -> tuple:
            return payload

    with pytest.raises(pickle.UnpicklingError):
        safe_load(io.BytesIO(pickle.dumps(Reducer())))


def test_safe_load_rebuilds_arrays_of_any_protocol() -> None:
    value = {"x": np.arange(6, dtype=np.uint8).reshape(2, 3), "y": [1, 2], "z": b"ok"}
    for protocol in range(2, pickle.HIGHEST_PROTOCOL + 1):
        loaded = safe_load(io.BytesIO(pickle.dumps(value, protocol=protocol)))
        np.testing.assert_array_equal(loaded["x"], value["x"])
        assert loaded["y"] == [1, 2] and loaded["z"] == b"ok"


def test_batch_with_wrong_shape_is_rejected(tmp_path: Path) -> None:
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    (folder / "train").write_bytes(pickle.dumps({"data": np.zeros((2, 10), np.uint8), "fine_labels": [0, 1]}))
    with pytest.raises(ValueError, match=r"shape \(N, 3072\)"):
        load_cifar("cifar100", True, folder)
