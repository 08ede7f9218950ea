from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from sparseift.data import BatchLoader, RandomResizedCrop, ResizeCenterCrop, build_dataset, scan_image_folder

COLOURS = {"cat": (255, 0, 0), "dog": (0, 0, 255)}


def _write_images(root: Path, per_class: int, suffix: str = ".png") -> None:
    for name, colour in COLOURS.items():
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            Image.new("RGB", (12 + i, 10), colour).save(root / name / f"{i}{suffix}", format="PNG")
        (root / name / "notes.txt").write_text("not an image")


@pytest.fixture
def image_root(tmp_path: Path) -> Path:
    _write_images(tmp_path / "train", per_class=4)
    _write_images(tmp_path / "val", per_class=2, suffix=".JPEG")  # any case of the extension
    return tmp_path


def test_scan_finds_images_with_sorted_labels(image_root: Path) -> None:
    samples, classes = scan_image_folder(image_root / "train")
    assert classes == ["cat", "dog"]
    assert len(samples) == 8 and [label for _, label in samples] == [0] * 4 + [1] * 4
    assert all(path.suffix == ".png" for path, _ in samples)


def test_splits_decode_to_uint8_of_the_class_colour(image_root: Path) -> None:
    train = build_dataset("image_folder", "train", image_root, image_size=8, val_fraction=0.25)
    val = build_dataset("image_folder", "val", image_root, image_size=8, val_fraction=0.25)
    test = build_dataset("image_folder", "test", image_root, image_size=8)
    assert (len(train.dataset), len(val.dataset), len(test.dataset)) == (6, 2, 4)
    assert train.num_classes == 2 and train.input_shape == (3, 8, 8)
    assert set(train.dataset.samples).isdisjoint(val.dataset.samples)
    for split in (train, val, test):
        for image, label in split.dataset:
            assert image.shape == (3, 8, 8) and image.dtype == torch.uint8
            assert image[:, 0, 0].tolist() == list(COLOURS[split.dataset.classes[label]])


def test_loader_collates_an_image_folder(image_root: Path) -> None:
    test = build_dataset("imagenet", "test", image_root, image_size=8)
    batches = list(BatchLoader(test.dataset, 3, shuffle=False))
    assert [tuple(x.shape) for x, _ in batches] == [(3, 3, 8, 8), (1, 3, 8, 8)]
    assert torch.cat([y for _, y in batches]).tolist() == [0, 0, 1, 1]


def test_resize_center_crop_keeps_the_centre() -> None:
    pixels = np.zeros((20, 40, 3), np.uint8)
    pixels[:, 8:32] = 200  # a bright band wider than the central square
    crop = ResizeCenterCrop(10, resize=10)(Image.fromarray(pixels))
    assert crop.shape == (3, 10, 10) and bool((crop == 200).all())


def test_random_resized_crop_is_seeded_by_torch() -> None:
    image = Image.fromarray(np.arange(30 * 30 * 3, dtype=np.uint32).reshape(30, 30, 3).astype(np.uint8))
    crop = RandomResizedCrop(16)
    torch.manual_seed(3)
    first = crop(image)
    torch.manual_seed(3)
    assert torch.equal(first, crop(image)) and first.shape == (3, 16, 16)


def test_folder_without_images_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "empty_class").mkdir()
    with pytest.raises(FileNotFoundError, match="no images"):
        scan_image_folder(tmp_path)


def test_missing_imagenet_names_places_and_hint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SPARSEIFT_DATA_DIR", raising=False)
    with pytest.raises(FileNotFoundError) as error:
        build_dataset("imagenet", "train")
    assert str(tmp_path / "data" / "imagenet") in str(error.value) and "--data-dir" in str(error.value)


def test_test_split_needs_a_val_folder(tmp_path: Path) -> None:
    _write_images(tmp_path, per_class=2)
    with pytest.raises(FileNotFoundError, match="val/ or test/"):
        build_dataset("image_folder", "test", tmp_path, image_size=8)
