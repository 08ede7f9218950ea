import math

import pytest

from sparseift.sparsity import UpdateSchedule, cosine_drop_fraction, cubic_sparsity


def test_cosine_drop_fraction_values() -> None:
    assert cosine_drop_fraction(0.3, 0.0) == pytest.approx(0.3)
    assert cosine_drop_fraction(0.3, 0.5) == pytest.approx(0.15)
    assert cosine_drop_fraction(0.3, 0.25) == pytest.approx(0.15 * (1 + math.sqrt(0.5)))
    assert cosine_drop_fraction(0.3, 1.0) == pytest.approx(0.0, abs=1e-15)


def test_update_schedule_steps_and_end() -> None:
    s = UpdateSchedule(100, 0, 750)  # 1000 steps, stop at 75%
    assert list(s.update_steps()) == [100, 200, 300, 400, 500, 600, 700]
    assert s.is_update(700) and not s.is_update(800) and not s.is_update(0) and not s.is_update(150)
    assert s.progress(375) == 0.5 and s.progress(2000) == 1.0


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"delta_t": 0, "begin": 0, "end": 10}, "delta_t must be >= 1"),
        ({"delta_t": 5, "begin": 10, "end": 10}, "end_step must be an int > begin_step=10"),
        ({"delta_t": 5, "begin": -1, "end": 10}, "begin_step must be an int >= 0"),
        ({"delta_t": 50, "begin": 0, "end": 10}, "delta_t=50 must be <= end_step - begin_step = 10"),
    ],
)
def test_bad_schedules(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        UpdateSchedule(**kwargs)


def test_cubic_sparsity_zhu_gupta() -> None:
    # s_t = s_f + (s_i - s_f)(1 - (t - t0)/(n dT))^3, t0 = 0, n dT = 100 (end 105 rounds down)
    assert cubic_sparsity(0.0, 0.9, 0, 0, 105, 10) == 0.0
    assert cubic_sparsity(0.0, 0.9, 50, 0, 105, 10) == pytest.approx(0.9 - 0.9 * 0.125)
    assert cubic_sparsity(0.2, 0.9, 30, 0, 105, 10) == pytest.approx(0.9 - 0.7 * 0.7**3)
    assert cubic_sparsity(0.0, 0.9, 100, 0, 105, 10) == pytest.approx(0.9)
    assert cubic_sparsity(0.0, 0.9, 500, 0, 105, 10) == pytest.approx(0.9)
