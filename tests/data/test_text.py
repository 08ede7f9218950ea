from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import torch

from sparseift.data import ByteBlockDataset, build_dataset, load_byte_corpus
from sparseift.data.text import PYTHON_DOCS_DIR


@pytest.fixture
def corpus_dir(tmp_path: Path) -> Path:
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "2.txt").write_bytes(b"third ")
    (tmp_path / "a.txt").write_bytes(b"first ")
    (tmp_path / "b" / "1.txt").write_bytes(b"second ")
    (tmp_path / "c.rst").write_bytes(b"fourth")
    return tmp_path


def test_files_concatenate_in_sorted_path_order_with_sha256(corpus_dir: Path) -> None:
    corpus = load_byte_corpus(corpus_dir)
    expected = b"first second third fourth"
    assert corpus.files == ("a.txt", "b/1.txt", "b/2.txt", "c.rst")
    assert bytes(corpus.data.tolist()) == expected
    assert corpus.sha256 == hashlib.sha256(expected).hexdigest()


def test_pattern_and_single_file(corpus_dir: Path) -> None:
    assert load_byte_corpus(corpus_dir, "*.txt").files == ("a.txt", "b/1.txt", "b/2.txt")
    single = load_byte_corpus(corpus_dir / "c.rst")
    assert single.files == ("c.rst",) and bytes(single.data.tolist()) == b"fourth"


def test_blocks_predict_the_next_byte() -> None:
    data = torch.arange(20, dtype=torch.uint8)
    blocks = ByteBlockDataset(data, context_length=4)
    assert len(blocks) == 4  # starts 0, 4, 8, 12 (16 would need byte 20)
    x, y = blocks[3]
    assert x.tolist() == [12, 13, 14, 15] and y.tolist() == [13, 14, 15, 16] and x.dtype == torch.int64
    every_offset = ByteBlockDataset(data, context_length=4, stride=1)
    assert len(every_offset) == 16
    xs, ys = every_offset.batch(torch.tensor([0, 15]))
    assert xs.tolist() == [[0, 1, 2, 3], [15, 16, 17, 18]] and ys[1].tolist() == [16, 17, 18, 19]


def test_block_arguments_are_checked() -> None:
    with pytest.raises(ValueError, match="context_length"):
        ByteBlockDataset(torch.zeros(4, dtype=torch.uint8), context_length=4)
    with pytest.raises(ValueError, match="stride must be >= 1"):
        ByteBlockDataset(torch.zeros(9, dtype=torch.uint8), context_length=4, stride=0)


def test_text_splits_are_contiguous_and_disjoint(tmp_path: Path) -> None:
    path = tmp_path / "corpus.txt"
    path.write_bytes(bytes(range(256)) * 4)  # 1024 bytes
    splits = {s: build_dataset("text_bytes", s, path, context_length=8, val_fraction=0.25, test_fraction=0.25)
              for s in ("train", "val", "test")}
    assert [splits[s].dataset.data.numel() for s in ("train", "val", "test")] == [512, 256, 256]
    assert splits["val"].dataset.data[0].item() == 0 and splits["test"].dataset.data[0].item() == 0
    assert splits["train"].num_classes == 256 and splits["train"].input_shape == (8,)
    assert splits["train"].sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert splits["train"].batch_transform() is None


def test_missing_corpus_names_the_install_command(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError) as error:
        load_byte_corpus(tmp_path / "missing")
    assert "python3.11-doc" in str(error.value) and str(tmp_path / "missing") in str(error.value)


@pytest.mark.skipif(not Path(PYTHON_DOCS_DIR).is_dir(), reason="python3.11-doc not installed")
def test_default_corpus_is_the_python_docs() -> None:
    corpus = load_byte_corpus()
    assert len(corpus.files) > 400 and all(name.endswith(".rst.txt") for name in corpus.files)
    assert corpus.data.numel() > 10_000_000
