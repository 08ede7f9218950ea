"""Learning-rate schedules against hand-computed values."""

from __future__ import annotations

import math

import pytest

from sparseift.train.config import ScheduleConfig
from sparseift.train.schedules import lr_factor


def test_multistep_divides_by_five_at_60_120_160_of_200() -> None:
    schedule = ScheduleConfig("multistep", [0.3, 0.6, 0.8], 0.2)
    total = 200
    assert [lr_factor(schedule, e, total) for e in (0, 59, 60, 119, 120, 160, 199)] == pytest.approx(
        [1, 1, 0.2, 0.2, 0.04, 0.008, 0.008]
    )


def test_cosine_to_final_fraction() -> None:
    schedule = ScheduleConfig("cosine", final_fraction=0.1)
    assert lr_factor(schedule, 0, 100) == pytest.approx(1.0)
    assert lr_factor(schedule, 50, 100) == pytest.approx(0.55)
    assert lr_factor(schedule, 100, 100) == pytest.approx(0.1)


def test_warmup_then_cosine() -> None:
    schedule = ScheduleConfig("warmup_cosine", warmup_fraction=0.1, final_fraction=0.1)
    assert lr_factor(schedule, 0, 1000) == pytest.approx(1 / 100)
    assert lr_factor(schedule, 99, 1000) == pytest.approx(1.0)
    mid = 100 + 450
    assert lr_factor(schedule, mid, 1000) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.5)))
    assert lr_factor(schedule, 1000, 1000) == pytest.approx(0.1)
