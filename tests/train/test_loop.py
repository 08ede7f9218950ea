"""The trainer end to end on synthetic data: learning, invariants, FLOPs, bit-exact resume."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from sparseift.flops import active_count, profile_flops, training_macs
from sparseift.sparsity import get_masks
from sparseift.train import Trainer, config_from_dict, load_checkpoint, restore_model


ROOT = Path(__file__).resolve().parents[2]


def _trainer(data: dict, **kwargs: object) -> Trainer:
    return Trainer(config_from_dict(data), **kwargs)


def test_loss_decreases_and_masks_stay_exactly_sparse(tiny_config: dict) -> None:
    tiny_config["train"]["epochs"] = 3
    trainer = _trainer(tiny_config)
    result = trainer.fit()
    rows = [json.loads(line) for line in (result.out_dir / "metrics.jsonl").read_text().splitlines()]
    train_losses = [r["loss"] for r in rows if r["kind"] == "train"]
    assert train_losses[-1] < train_losses[0]
    assert result.metrics["val_accuracy"] > 0.3
    masks = get_masks(trainer.model)
    assert masks
    params = dict(trainer.model.named_parameters())
    for name, mask in masks.items():
        assert not params[name][~mask].any()
        assert int(mask.sum()) == active_count(mask.numel(), trainer.sparsifier.targets[name])
    assert (result.out_dir / "metrics.csv").is_file() and (result.out_dir / "checkpoint.pt").is_file()


def test_training_flops_accumulate_per_step(tiny_config: dict) -> None:
    tiny_config["sparsity"]["method"] = "set"  # never needs the dense gradient
    trainer = _trainer(tiny_config)
    result = trainer.fit()
    per_step = training_macs(trainer.forward_sparse, trainer.forward_dense) * 32
    assert result.training_macs == pytest.approx(per_step * result.steps, rel=1e-9)
    # iso-FLOP: the calibrated sparse forward equals the dense model's forward
    dense_forward = float(profile_flops(trainer.run.dense, torch.randn(1, 1, 8, 8)).dense_macs())
    assert trainer.forward_sparse == pytest.approx(dense_forward, rel=1e-6)


class _Crash:
    """Kills the run (an exception) at one step, after the checkpoint of the step before."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_step(self, model: object, step: int, epoch: float, metrics: dict) -> None:
        if step == self.step:
            raise KeyboardInterrupt("killed")


def test_resume_continues_bit_exactly_across_mask_updates(tiny_config: dict) -> None:
    tiny_config["train"]["checkpoint_every"] = 7  # mid-epoch, after the mask update at step 6
    straight = copy.deepcopy(tiny_config)
    straight["name"] = "straight"
    reference = _trainer(straight)
    reference.fit()

    interrupted = copy.deepcopy(tiny_config)
    interrupted["name"] = "interrupted"
    with pytest.raises(KeyboardInterrupt):
        _trainer(interrupted, callbacks=[_Crash(step=9)]).fit()
    # continue in a fresh process, through the command line
    recipe = Path(interrupted["train"]["out_dir"]) / "interrupted.yaml"
    recipe.write_text(yaml.safe_dump(interrupted))
    script = (
        "import sys, tests.train.conftest; from sparseift.cli import main; "
        f"sys.exit(main(['train', {str(recipe)!r}, '--resume']))"
    )
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "resumed" in done.stdout
    resumed = load_checkpoint(Path(interrupted["train"]["out_dir"]) / "interrupted" / "checkpoint.pt")
    final = reference.state_dict()
    assert resumed["position"] == final["position"]
    for name, value in final["model"].items():
        assert torch.equal(resumed["model"][name], value), name
    for key, value in final["optimizer"]["state"].items():
        assert torch.equal(resumed["optimizer"]["state"][key]["momentum_buffer"], value["momentum_buffer"])
    assert resumed["sparsifier"]["step"] == final["sparsifier"]["step"]
    for name, mask in final["sparsifier"]["masks"].items():
        assert torch.equal(resumed["sparsifier"]["masks"][name], mask)
    assert resumed["totals"]["macs"] == pytest.approx(final["totals"]["macs"], rel=1e-12)
    rows = [json.loads(line) for line in (Path(interrupted["train"]["out_dir"]) / "interrupted" / "metrics.jsonl")
            .read_text().splitlines()]  # fmt: skip
    assert [r["step"] for r in rows if r["kind"] == "train"] == [4, 8, 12, 16]


def test_checkpoint_restores_the_model_without_data(tiny_config: dict) -> None:
    trainer = _trainer(tiny_config)
    result = trainer.fit()
    checkpoint = load_checkpoint(result.out_dir / "checkpoint.pt")
    model, config = restore_model(checkpoint)
    assert config.name == "tiny"
    x = torch.randn(4, 1, 8, 8)
    trainer.model.eval()
    torch.testing.assert_close(model.eval()(x), trainer.model(x), rtol=0, atol=0)
    assert set(get_masks(model)) == set(get_masks(trainer.model))


@pytest.mark.parametrize("amp", ["bf16"])
def test_bf16_autocast_trains(tiny_config: dict, amp: str) -> None:
    tiny_config["train"]["amp"] = amp
    result = _trainer(tiny_config).fit()
    assert result.metrics["val_loss"] == result.metrics["val_loss"]  # finite, not NaN


def test_grad_accumulation_and_clipping_run(tiny_config: dict) -> None:
    tiny_config["train"].update(grad_accum=2, grad_clip=1.0)
    trainer = _trainer(tiny_config)
    result = trainer.fit()
    assert result.steps == 512 // 32 // 2


def test_dense_run_has_no_sparsifier(tiny_config: dict) -> None:
    tiny_config["transform"] = {"family": "dense"}
    trainer = _trainer(tiny_config)
    result = trainer.fit()
    assert trainer.sparsifier is None and result.nonzero_parameters == result.parameters


def test_spectral_metrics_are_recorded_at_each_evaluation(tiny_config: dict) -> None:
    tiny_config["train"].update(spectral_each_eval=True, eval_every_epochs=0.5)
    trainer = _trainer(tiny_config)
    trainer.fit()
    rows = [json.loads(line) for line in (trainer.out_dir / "spectral.jsonl").read_text().splitlines()]
    assert len(rows) == 2 and all(row["kind"] == "spectral" for row in rows)
    assert all("val_accuracy" in row["metrics"] and row["delta_r"] is not None for row in rows)


def test_sparse_baseline_keeps_the_dense_width_and_skips_calibration(tiny_config: dict) -> None:
    tiny_config["transform"] = {"family": "sparse", "sparsity": 0.75}
    trainer = _trainer(tiny_config)
    trainer.fit()
    assert trainer.model is trainer.run.dense
    assert set(trainer.sparsifier.targets.values()) == {0.75}
    assert "0.weight" not in trainer.sparsifier.targets and "11.weight" not in trainer.sparsifier.targets
    assert trainer.forward_sparse < 0.5 * trainer.forward_dense
