from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from sparseift.data import BatchTransform, normalize, random_crop, random_flip


def _images(n: int = 6, channels: int = 3, size: int = 5) -> torch.Tensor:
    return torch.randint(1, 256, (n, channels, size, size), dtype=torch.uint8)


def test_crop_output_is_a_window_of_the_padded_image() -> None:
    images = _images()
    crops = random_crop(images, 2, torch.Generator().manual_seed(0))
    assert crops.shape == images.shape and crops.dtype == torch.uint8
    padded = F.pad(images, (2, 2, 2, 2))
    windows = {(dy, dx) for dy in range(5) for dx in range(5)}
    for crop, source in zip(crops, padded):
        assert any(torch.equal(crop, source[:, dy : dy + 5, dx : dx + 5]) for dy, dx in windows)
    assert not all(torch.equal(c, i) for c, i in zip(crops, images))  # some image moved


def test_crop_with_zero_padding_is_the_identity() -> None:
    images = _images()
    assert random_crop(images, 0) is images


def test_flip_probability_extremes_and_mixture() -> None:
    images = _images(n=64)
    assert torch.equal(random_flip(images, 1.0), images.flip(-1))
    assert torch.equal(random_flip(images, 0.0), images)
    mixed = random_flip(images, 0.5, torch.Generator().manual_seed(1))
    flipped = [torch.equal(m, i.flip(-1)) for m, i in zip(mixed, images)]
    assert all(f or torch.equal(m, i) for f, m, i in zip(flipped, mixed, images))
    assert 10 < sum(flipped) < 54


def test_same_generator_seed_gives_the_same_batch() -> None:
    images = _images(n=16)
    transform = BatchTransform((0.5, 0.5, 0.5), (0.25, 0.25, 0.25), crop_padding=2, flip=True)
    first = transform(images, torch.Generator().manual_seed(5))
    assert torch.equal(first, transform(images, torch.Generator().manual_seed(5)))
    assert not torch.equal(first, transform(images, torch.Generator().manual_seed(6)))
    assert first.dtype == torch.float32 and first.shape == images.shape


def test_normalize_scales_uint8_and_keeps_float() -> None:
    images = torch.full((2, 2, 3, 3), 255, dtype=torch.uint8)
    out = normalize(images, (0.5, 0.0), (0.5, 2.0))
    assert torch.allclose(out[:, 0], torch.ones(2, 3, 3)) and torch.allclose(out[:, 1], torch.full((2, 3, 3), 0.5))
    assert torch.allclose(normalize(images.float() / 255, (0.5, 0.0), (0.5, 2.0)), out)


def test_bad_arguments_are_named() -> None:
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        random_flip(torch.zeros(3, 4, 4))
    with pytest.raises(ValueError, match="padding must be an int >= 0"):
        random_crop(_images(), -1)
    with pytest.raises(ValueError, match="3 entries"):
        normalize(_images(), (0.5,), (0.5,))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_runs_on_the_gpu_with_a_gpu_generator() -> None:
    images = _images(n=8).cuda()
    transform = BatchTransform((0.5, 0.5, 0.5), (0.25, 0.25, 0.25), crop_padding=2, flip=True)
    out = transform(images, torch.Generator("cuda").manual_seed(0))
    assert out.is_cuda and torch.equal(out, transform(images, torch.Generator("cuda").manual_seed(0)))
