from __future__ import annotations

from pathlib import Path

import pytest
import torch

from sparseift.data import BatchLoader, build_dataset, dataset_spec, list_datasets


def test_builtin_names() -> None:
    builtin = [name for name in list_datasets() if dataset_spec(name).build.__module__.startswith("sparseift.")]
    assert builtin == ["cifar10", "cifar100", "digits", "fashion_mnist", "image_folder", "imagenet", "text_bytes"]


def test_unknown_name_and_split_are_named() -> None:
    with pytest.raises(ValueError, match="dataset name must be one of .*'mnist'"):
        build_dataset("mnist", "train")
    with pytest.raises(ValueError, match="split must be one of 'train', 'val', 'test'; got 'dev'"):
        build_dataset("fashion_mnist", "dev")  # type: ignore[arg-type]


def test_fashion_mnist_splits_from_data_dir(fashion_dir: Path) -> None:
    train = build_dataset("fashion_mnist", "train", fashion_dir, val_fraction=0.2, split_seed=4)
    val = build_dataset("fashion_mnist", "val", fashion_dir, val_fraction=0.2, split_seed=4)
    test = build_dataset("fashion_mnist", "test", fashion_dir)
    assert (len(train.dataset), len(val.dataset), len(test.dataset)) == (40, 10, 20)
    # Each fake image is filled with its index: the splits partition the 50 training images.
    ids = lambda split: split.dataset.inputs[:, 0, 0, 0].tolist()  # noqa: E731
    assert sorted(ids(train) + ids(val)) == list(range(50))
    assert ids(val) == ids(build_dataset("fashion_mnist", "val", fashion_dir, val_fraction=0.2, split_seed=4))
    assert train.num_classes == 10 and train.input_shape == (1, 28, 28) and train.mean == (0.2860,)
    assert train.source == str(fashion_dir) and train.task == "classification"


def test_val_split_needs_a_val_fraction(fashion_dir: Path) -> None:
    assert len(build_dataset("fashion_mnist", "train", fashion_dir, val_fraction=0.0).dataset) == 50
    with pytest.raises(ValueError, match="val_fraction > 0"):
        build_dataset("fashion_mnist", "val", fashion_dir, val_fraction=0.0)


def test_batch_transform_augments_only_the_train_split(fashion_dir: Path) -> None:
    train = build_dataset("fashion_mnist", "train", fashion_dir)
    test = build_dataset("fashion_mnist", "test", fashion_dir)
    assert (train.batch_transform().crop_padding, train.batch_transform().flip) == (2, True)
    assert (test.batch_transform().crop_padding, test.batch_transform().flip) == (0, False)
    x, _ = next(iter(BatchLoader(train.dataset, 8)))
    out = train.batch_transform()(x, torch.Generator().manual_seed(0))
    assert out.shape == (8, 1, 28, 28) and out.dtype == torch.float32


def test_default_places_include_the_env_folder(fashion_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sparseift.data.fashion_mnist.FASHION_MNIST_SYSTEM_DIR", str(fashion_dir / "absent"))
    monkeypatch.setenv("SPARSEIFT_DATA_DIR", str(fashion_dir.parent))
    (fashion_dir.parent / "fashion-mnist").symlink_to(fashion_dir)
    assert len(build_dataset("fashion_mnist", "test").dataset) == 20


def test_digits_when_scikit_learn_is_installed() -> None:
    pytest.importorskip("sklearn")
    splits = [build_dataset("digits", s) for s in ("train", "val", "test")]
    assert [len(s.dataset) for s in splits] == [1295, 143, 359]  # floor(0.2 * 1797), floor(0.1 * 1438)
    assert splits[0].input_shape == (1, 8, 8) and splits[0].dataset.inputs.max() == 255
