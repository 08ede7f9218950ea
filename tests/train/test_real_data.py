"""A short run on the real Fashion-MNIST files (skipped when Debian's package is not installed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from sparseift.train import Trainer, load_config, recipe_path

FMNIST = Path("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz")


@pytest.mark.skipif(not FMNIST.is_file(), reason="apt-get install -y dataset-fashion-mnist")
def test_sparse_wide_rigl_learns_fashion_mnist(tmp_path: Path) -> None:
    config = load_config(
        recipe_path("fmnist_compare"),
        [
            "transform.family=wide", "transform.sparsity=0.75", "train.max_steps=40", "train.log_every=10",
            "data.train_subset=5120", "data.batch_size=64", "sparsity.delta_t=10", "train.threads=1",
            f"train.out_dir={tmp_path}", "train.progress=false",
        ],
    )  # fmt: skip
    trainer = Trainer(config)
    result = trainer.fit()
    losses = [row["loss"] for row in trainer.logger.rows() if row["kind"] == "train"]
    assert losses[-1] < losses[0]
    assert result.metrics["val_accuracy"] > 0.25  # 10 classes: chance is 0.1
    assert trainer.sparsifier.is_update_step(10)
