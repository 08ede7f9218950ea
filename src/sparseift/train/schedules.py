"""Learning-rate schedules of the paper's recipes, as pure functions of training progress.

CIFAR (section 8): lr divided by 5 at epochs 60, 120, 160 of 200 (``multistep`` at 0.3, 0.6,
0.8 with gamma 0.2). ImageNet: cosine. GPT-3 Small: linear warm-up (375M of 2.5B tokens)
then cosine decay to 10% of the peak (``warmup_cosine``, final fraction 0.1).
"""

from __future__ import annotations

import bisect
import math

from sparseift.train.config import ScheduleConfig

__all__ = ["lr_factor"]


def lr_factor(schedule: ScheduleConfig, step: int, total_steps: int) -> float:
    """Multiplier of the peak learning rate at optimizer step ``step`` of ``total_steps``."""
    progress = min(max(step / max(total_steps, 1), 0.0), 1.0)
    if schedule.name == "constant":
        return 1.0
    if schedule.name == "multistep":
        return schedule.gamma ** bisect.bisect_right(schedule.milestones, progress)
    warmup = schedule.warmup_fraction if schedule.name == "warmup_cosine" else 0.0
    if progress < warmup:
        return (step + 1) / max(warmup * total_steps, 1.0)
    decay = (progress - warmup) / max(1.0 - warmup, 1e-12)
    final = schedule.final_fraction
    return final + (1.0 - final) * 0.5 * (1.0 + math.cos(math.pi * decay))
