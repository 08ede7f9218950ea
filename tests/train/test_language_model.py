"""A byte-level GPT trained with SET on a small text file: the CPU proxy of the GPT-3 Small recipe."""

from __future__ import annotations

from pathlib import Path

from sparseift.train import Trainer, load_config, recipe_path


def test_sparse_wide_gpt_learns_a_text_corpus(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("the quick brown fox jumps over the lazy dog. " * 400)
    config = load_config(
        recipe_path("gpt_tiny_pydocs"),
        [
            f"data.data_dir={corpus}", "data.kwargs.context_length=32", "model.kwargs.context_length=32",
            "model.kwargs.n_layer=1", "data.batch_size=16", "train.max_steps=30", "train.log_every=10",
            "sparsity.delta_t=10", "train.threads=1", f"train.out_dir={tmp_path}", "train.progress=false",
            "optim.lr=0.01",
        ],
    )  # fmt: skip
    trainer = Trainer(config)
    result = trainer.fit()
    losses = [row["loss"] for row in trainer.logger.rows() if row["kind"] == "train"]
    assert losses[-1] < 0.7 * losses[0]
    assert result.metrics["val_bits_per_byte"] < 5.0  # uniform over 256 bytes is 8 bits
    assert trainer.sparsifier is not None and type(trainer.sparsifier).__name__ == "SET"
    attn = trainer.model.blocks[0].attn
    assert attn.qkv.out_features == 3 * attn.num_heads * attn.head_dim  # widened heads
