"""The trainer end to end on synthetic data: learning, invariants, FLOPs, bit-exact resume."""

from __future__ import annotations

import copy
import json

import pytest
import torch

from sparseift.flops import active_count, profile_flops, training_macs
from sparseift.sparsity import get_masks
from sparseift.train import Trainer, config_from_dict, load_checkpoint, restore_model


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
    resumed = _trainer(interrupted, resume=True)
    assert resumed.resume_path is not None
    resumed.fit()
    assert resumed.step == reference.step
    for (name, a), (_, b) in zip(reference.model.state_dict().items(), resumed.model.state_dict().items()):
        assert torch.equal(a, b), name
    ref_opt, new_opt = reference.optimizer.state_dict()["state"], resumed.optimizer.state_dict()["state"]
    for key in ref_opt:
        assert torch.equal(ref_opt[key]["momentum_buffer"], new_opt[key]["momentum_buffer"])
    assert resumed.sparsifier.state_dict()["step"] == reference.sparsifier.state_dict()["step"]
    assert resumed.macs == pytest.approx(reference.macs, rel=1e-12)
    rows = [json.loads(line) for line in (resumed.out_dir / "metrics.jsonl").read_text().splitlines()]
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
