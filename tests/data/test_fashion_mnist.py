from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from sparseift.data import build_dataset, load_fashion_mnist
from sparseift.data.fashion_mnist import FASHION_MNIST_SYSTEM_DIR
from tests.data.fakes import write_fashion_mnist


@pytest.mark.parametrize("gzipped", [True, False])
def test_reads_fake_files_from_data_dir(tmp_path: Path, gzipped: bool) -> None:
    folder = write_fashion_mnist(tmp_path, n_train=30, n_test=12, gzipped=gzipped)
    train, test = load_fashion_mnist(True, folder), load_fashion_mnist(False, folder)
    assert train.inputs.shape == (30, 1, 28, 28) and train.inputs.dtype == np.uint8
    assert test.inputs.shape == (12, 1, 28, 28)
    assert train.labels.dtype == np.int64
    np.testing.assert_array_equal(train.labels, np.arange(30) % 10)
    assert train.source == folder


def test_missing_files_name_the_folder_and_the_install_command(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError) as error:
        load_fashion_mnist(True, tmp_path / "nowhere")
    message = str(error.value)
    assert str((tmp_path / "nowhere").resolve()) in message
    assert "apt-get install -y dataset-fashion-mnist" in message and "data_dir" in message


@pytest.mark.skipif(
    not Path(FASHION_MNIST_SYSTEM_DIR, "train-images-idx3-ubyte.gz").is_file(),
    reason="Fashion-MNIST not installed (apt-get install -y dataset-fashion-mnist)",
)
def test_real_fashion_mnist() -> None:
    train, test = load_fashion_mnist(True), load_fashion_mnist(False)
    assert train.inputs.shape == (60000, 1, 28, 28) and test.inputs.shape == (10000, 1, 28, 28)
    assert np.bincount(train.labels).tolist() == [6000] * 10
    assert train.inputs.mean() / 255 == pytest.approx(0.2860, abs=5e-4)
    assert (train.inputs / 255).std() == pytest.approx(0.3530, abs=5e-4)
    split = build_dataset("fashion_mnist", "val")
    assert len(split.dataset) == 6000 and split.num_classes == 10 and split.input_shape == (1, 28, 28)
