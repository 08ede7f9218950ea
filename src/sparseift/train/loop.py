"""The training loop: one ``Trainer`` for every recipe (section 8), on one CPU/GPU or DDP.

Order of a step (grad accumulation of ``train.grad_accum`` micro-batches): forward under
autocast, backward (scaled for fp16), unscale + clip, ``optimizer.step()``, then
``sparsifier.step()`` (masks re-applied to weights, gradients and optimizer state; a mask
update on its schedule), then the lr schedule. Training FLOPs are accumulated as it runs:
per step ``3 f_S`` times the global batch, or ``2 f_S + f_D`` on a step whose mask update
reads the dense gradient (:func:`sparseift.flops.training_macs`), with ``f_S`` the effective
forward FLOPs of the current masks.

Checkpoints (atomic, ``weights_only``-loadable) hold model, masks, optimizer, scheduler,
scaler, sparsifier and RNG states and the position in the epoch; resuming continues the
same sequence of batches, augmentations and mask updates, bit for bit.
"""

from __future__ import annotations

import math
import time
from contextlib import nullcontext
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch
import torch.nn.functional as F
from torch import nn

from sparseift.analysis import SpectralCallback
from sparseift.data import BatchLoader
from sparseift.flops import profile_flops, training_macs
from sparseift.sparsity import get_masks
from sparseift.train.build import (
    build_optimizer,
    build_run_model,
    build_sparsifier,
    example_batch,
    load_data,
)
from sparseift.train.checkpoint import load_checkpoint, save_checkpoint
from sparseift.train.config import RunConfig, config_to_dict
from sparseift.train.distributed import DistributedContext, init_distributed
from sparseift.train.logs import RunLogger, format_duration
from sparseift.train.schedules import lr_factor

__all__ = ["Trainer", "TrainResult", "Callback", "evaluate"]

CHECKPOINT = "checkpoint.pt"
SPECTRAL = "spectral.jsonl"


class Callback(Protocol):
    """Called by the trainer on the main process; implement either method."""

    def on_step(self, model: nn.Module, step: int, epoch: float, metrics: dict[str, float]) -> None: ...

    def on_epoch_end(self, model: nn.Module, epoch: float, metrics: dict[str, float]) -> None: ...


@dataclass(frozen=True)
class TrainResult:
    """What a finished run reports."""

    metrics: dict[str, float]
    training_macs: float
    wall_time: float
    parameters: int
    nonzero_parameters: int
    steps: int
    out_dir: Path


def _logits(output: Any) -> torch.Tensor:
    return output.logits if hasattr(output, "logits") else output


def _loss(logits: torch.Tensor, targets: torch.Tensor, label_smoothing: float) -> torch.Tensor:
    return F.cross_entropy(logits.flatten(0, -2).float(), targets.flatten(), label_smoothing=label_smoothing)


@torch.no_grad()
def evaluate(model: nn.Module, loader: BatchLoader, transform: Any, task: str) -> dict[str, float]:
    """Mean loss and accuracy (classification) or loss and bits per byte (language modelling)."""
    was_training = model.training
    model.eval()
    loss_sum, correct, count = 0.0, 0, 0
    for x, y in loader:
        x = transform(x) if transform is not None else x
        logits = _logits(model(x)).float()
        loss_sum += float(F.cross_entropy(logits.flatten(0, -2), y.flatten(), reduction="sum"))
        correct += int((logits.argmax(-1) == y).sum())
        count += y.numel()
    model.train(was_training)
    loss = loss_sum / max(count, 1)
    if task == "language_modeling":
        return {"val_loss": loss, "val_bits_per_byte": loss / math.log(2), "val_accuracy": correct / max(count, 1)}
    return {"val_loss": loss, "val_accuracy": correct / max(count, 1)}


class Trainer:
    """Trains one :class:`~sparseift.train.config.RunConfig`; ``fit()`` runs it to the end.

    ``resume`` is a checkpoint path (or ``True`` for ``<out_dir>/checkpoint.pt``).
    """

    def __init__(
        self, config: RunConfig, *, resume: str | Path | bool | None = None, callbacks: Sequence[Callback] = ()
    ) -> None:
        self.config = config.validate()
        train = config.train
        if train.threads is not None:
            torch.set_num_threads(train.threads)
        cuda = torch.cuda.is_available() if train.device == "auto" else train.device == "cuda"
        self.device = torch.device("cuda" if cuda else "cpu")
        self.dist: DistributedContext = init_distributed(self.device)
        self.out_dir = Path(train.out_dir) / config.name
        self.callbacks = list(callbacks)
        self.logger = RunLogger(self.out_dir, enabled=self.dist.is_main, tensorboard=train.tensorboard)
        self._build()
        self.resume_path = self.out_dir / CHECKPOINT if resume is True else resume
        if self.sparsifier is not None and (train.spectral_each_eval or train.spectral_every):
            self.callbacks.append(
                SpectralCallback(self.out_dir / SPECTRAL, train.spectral_every, train.spectral_each_eval)
            )

    # ----- set-up -------------------------------------------------------------------------
    def _build(self) -> None:
        cfg = self.config
        self.train_data = load_data(cfg.data, "train")
        self.val_data = load_data(cfg.data, "val")
        self.task = self.train_data.task
        self.train_loader = BatchLoader(
            self.train_data.dataset, cfg.data.batch_size, shuffle=True, drop_last=True, seed=cfg.train.seed,
            rank=self.dist.rank, world_size=self.dist.world_size, device=self.device,
        )  # fmt: skip
        self.val_loader = BatchLoader(
            self.val_data.dataset, cfg.data.eval_batch_size, shuffle=False, device=self.device
        )
        if len(self.train_loader) < cfg.train.grad_accum:
            raise ValueError(
                f"data.batch_size={cfg.data.batch_size} leaves {len(self.train_loader)} batches per epoch, fewer "
                f"than train.grad_accum={cfg.train.grad_accum}"
            )
        self.train_transform = self.train_data.batch_transform(augment=cfg.data.augment)
        self.val_transform = self.val_data.batch_transform(augment=False)
        example = example_batch(self.train_data)
        self.example_shape, self.example_dtype = tuple(example.shape), example.dtype
        self.run = build_run_model(cfg, example)
        self.model = self.run.model.to(self.device)
        self.steps_per_epoch = len(self.train_loader) // cfg.train.grad_accum
        epochs_steps = math.ceil(cfg.train.epochs * self.steps_per_epoch)
        self.total_steps = min(epochs_steps, cfg.train.max_steps) if cfg.train.max_steps else epochs_steps
        self.optimizer = build_optimizer(self.model, cfg.optim)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda step: lr_factor(cfg.schedule, step, self.total_steps)
        )
        example = example.to(self.device)
        self.sparsifier = build_sparsifier(
            cfg, self.run, self.optimizer, self.total_steps, example, self._prune_batches()
        )
        self.profile = profile_flops(self.model, example)
        self.forward_dense = float(self.profile.dense_macs())
        self._refresh_forward_macs()
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=cfg.train.amp == "fp16")
        self.autocast_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(cfg.train.amp)
        self.net: nn.Module = self.model
        if self.dist.enabled:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.net = nn.parallel.DistributedDataParallel(self.model, device_ids=ids)
        self.generator = torch.Generator(device=self.device).manual_seed(cfg.train.seed * 1000 + self.dist.rank)
        self.step, self.epoch, self.batch_in_epoch = 0, 0, 0
        self.macs, self.elapsed = 0.0, 0.0
        self.last_eval: dict[str, float] = {}

    def _prune_batches(self) -> list[tuple[torch.Tensor, torch.Tensor]] | None:
        """Training batches for pruning-at-initialisation scores (SNIP, GraSP, FORCE)."""
        if self.config.sparsity.method not in ("snip", "grasp", "force") or self.config.transform.family == "dense":
            return None
        loader = BatchLoader(
            self.train_data.dataset, self.config.data.batch_size, shuffle=True, seed=self.config.train.seed + 1,
            device=self.device,
        )  # fmt: skip
        batches = []
        for x, y in loader:
            batches.append((self.val_transform(x) if self.val_transform is not None else x, y))
            if len(batches) == self.config.sparsity.prune_batches:
                break
        return batches

    def _refresh_forward_macs(self) -> None:
        """Effective forward MACs per example of the current masks."""
        masks = get_masks(self.model)
        sparsities = {name: 1.0 - float(mask.sum()) / mask.numel() for name, mask in masks.items()}
        self.forward_sparse = self.profile.effective_macs(sparsities)

    # ----- checkpoints --------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue this run bit-exactly."""
        state = {
            "config": config_to_dict(self.config),
            "example": {"shape": list(self.example_shape), "dtype": str(self.example_dtype).removeprefix("torch.")},
            "sparse_targets": dict(self.sparsifier.targets) if self.sparsifier else {},
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "sparsifier": self.sparsifier.state_dict() if self.sparsifier else None,
            "rng": {"torch": torch.get_rng_state(), "generator": self.generator.get_state()},
            "position": {"step": self.step, "epoch": self.epoch, "batch_in_epoch": self.batch_in_epoch},
            "totals": {"macs": self.macs, "elapsed": self.elapsed},
            "last_eval": dict(self.last_eval),
        }
        if torch.cuda.is_available():
            state["rng"]["cuda"] = torch.cuda.get_rng_state_all()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from :meth:`state_dict` (the model must be built from the same config)."""
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        if self.sparsifier is not None:
            self.sparsifier.load_state_dict(state["sparsifier"])
        torch.set_rng_state(state["rng"]["torch"])
        self.generator.set_state(state["rng"]["generator"])
        if "cuda" in state["rng"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["rng"]["cuda"])
        position = state["position"]
        self.step, self.epoch, self.batch_in_epoch = position["step"], position["epoch"], position["batch_in_epoch"]
        self.macs, self.elapsed = state["totals"]["macs"], state["totals"]["elapsed"]
        self.last_eval = dict(state["last_eval"])
        self._refresh_forward_macs()

    def save(self) -> Path | None:
        """Write ``<out_dir>/checkpoint.pt`` atomically (main process only)."""
        if not self.dist.is_main:
            return None
        return save_checkpoint(self.state_dict(), self.out_dir / CHECKPOINT)

    # ----- the loop -----------------------------------------------------------------------
    def _is_dense_gradient_step(self) -> bool:
        s = self.sparsifier
        return s is not None and s.uses_dense_gradient and s.is_update_step(s.step_count + 1)

    def _micro_step(self, x: torch.Tensor, y: torch.Tensor, sync: bool) -> tuple[float, int, int]:
        if self.train_transform is not None:
            x = self.train_transform(x, self.generator)
        context = self.net.no_sync() if (self.dist.enabled and not sync) else nullcontext()
        with context:
            with torch.autocast(self.device.type, dtype=self.autocast_dtype, enabled=self.autocast_dtype is not None):
                logits = _logits(self.net(x))
                loss = _loss(logits, y, self.config.train.label_smoothing)
            self.scaler.scale(loss / self.config.train.grad_accum).backward()
        correct = int((logits.detach().argmax(-1) == y).sum())
        return float(loss.detach()), correct, y.numel()

    def _optimizer_step(self) -> None:
        if self.config.train.grad_clip is not None:
            self.scaler.unscale_(self.optimizer)
            nn.utils.clip_grad_norm_(self.model.parameters(), self.config.train.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        if self.sparsifier is not None:
            self.sparsifier.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)

    def fit(self) -> TrainResult:
        """Train to ``total_steps``, evaluating and checkpointing on the way; returns the result."""
        if self.resume_path is not None:
            self.load_state_dict(load_checkpoint(self.resume_path))
            self.logger.truncate_after(self.step)
            self.logger.progress(f"resumed {self.resume_path} at step {self.step}")
        cfg = self.config.train
        global_batch = self.config.data.batch_size * self.dist.world_size
        eval_every = max(1, round(cfg.eval_every_epochs * self.steps_per_epoch))
        self.model.train()
        start = time.perf_counter() - self.elapsed
        window = {"loss": 0.0, "correct": 0, "count": 0, "batches": 0, "time": time.perf_counter()}
        while self.step < self.total_steps:
            self.train_loader.set_epoch(self.epoch)
            batches = self.train_loader.epoch_batches(self.epoch, self.batch_in_epoch)
            for x, y in batches:
                self.batch_in_epoch += 1
                accumulated = self.batch_in_epoch % cfg.grad_accum == 0
                loss, correct, count = self._micro_step(x, y, sync=accumulated)
                window["loss"] += loss
                window["correct"] += correct
                window["count"] += count
                window["batches"] += 1
                if not accumulated:
                    continue
                dense_gradient = self._is_dense_gradient_step()
                step_macs = training_macs(self.forward_sparse, self.forward_dense, dense_weight_gradient=dense_gradient)
                self._optimizer_step()
                self.step += 1
                self.macs += step_macs * global_batch * cfg.grad_accum
                if dense_gradient:
                    self._refresh_forward_macs()
                if self.step % cfg.log_every == 0 or self.step == self.total_steps:
                    self.elapsed = time.perf_counter() - start
                    self._log_train(window, global_batch)
                    window = {"loss": 0.0, "correct": 0, "count": 0, "batches": 0, "time": time.perf_counter()}
                for callback in self.callbacks:
                    if self.dist.is_main and hasattr(callback, "on_step"):
                        callback.on_step(self.model, self.step, self._epoch_progress(), dict(self.last_eval))
                end_of_run = self.step == self.total_steps
                if self.step % eval_every == 0 or end_of_run:
                    self.elapsed = time.perf_counter() - start
                    self._eval_and_save()
                elif cfg.checkpoint_every and self.step % cfg.checkpoint_every == 0:
                    self.elapsed = time.perf_counter() - start
                    self.save()
                if end_of_run:
                    break
            else:
                self.epoch += 1
                self.batch_in_epoch = 0
                continue
            break
        self.elapsed = time.perf_counter() - start
        self.logger.close()
        return self._result()

    def _epoch_progress(self) -> float:
        return self.step / self.steps_per_epoch

    def _log_train(self, window: dict[str, float], global_batch: int) -> None:
        seconds = max(time.perf_counter() - window["time"], 1e-9)
        rate = window["batches"] * global_batch / seconds
        lr = self.optimizer.param_groups[0]["lr"]
        row = {
            "kind": "train",
            "step": self.step,
            "epoch": round(self._epoch_progress(), 4),
            "loss": window["loss"] / max(window["batches"], 1),
            "accuracy": window["correct"] / max(window["count"], 1),
            "lr": lr,
            "samples_per_s": rate,
            "training_macs": self.macs,
            "elapsed_s": self.elapsed,
        }
        self.logger.log(row)
        if self.config.train.progress:
            remaining = (self.total_steps - self.step) * self.elapsed / max(self.step, 1)
            self.logger.progress(
                f"[{self.config.name}] step {self.step}/{self.total_steps} epoch {row['epoch']:.2f} "
                f"loss {row['loss']:.4f} acc {row['accuracy']:.3f} lr {lr:.4g} {rate:.0f} samples/s "
                f"ETA {format_duration(remaining)}"
            )

    def _eval_and_save(self) -> None:
        metrics = evaluate(self.model, self.val_loader, self.val_transform, self.task)
        self.last_eval = metrics
        row = {"kind": "eval", "step": self.step, "epoch": round(self._epoch_progress(), 4), **metrics}
        row.update(training_macs=self.macs, elapsed_s=self.elapsed)
        self.logger.log(row)
        summary = " ".join(f"{k} {v:.4f}" for k, v in metrics.items())
        self.logger.progress(f"[{self.config.name}] eval at step {self.step}: {summary}")
        for callback in self.callbacks:
            if self.dist.is_main and hasattr(callback, "on_epoch_end"):
                callback.on_epoch_end(self.model, self._epoch_progress(), dict(metrics))
        self.save()

    def _result(self) -> TrainResult:
        params = sum(p.numel() for p in self.model.parameters())
        masks = get_masks(self.model)
        zeros = sum(int(mask.numel() - mask.sum()) for mask in masks.values())
        return TrainResult(
            dict(self.last_eval), self.macs, self.elapsed, params, params - zeros, self.step, self.out_dir
        )
