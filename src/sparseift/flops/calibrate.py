"""Iso-FLOP calibration: the binary search of appendix A.2.

Keeping the first and last layer dense, rounding widths/branches/ranks to integers, or
giving layers non-uniform sparsities moves a Sparse-IFT model off its dense model's FLOPs.
The paper compensates by searching the sparsity of the sparse layers until the model's
FLOPs are within 1e-6 relative (0.0001%) of the dense model's.

The search variable is a common density scale ``c``: every sparse parameter ``p`` with
target sparsity ``s_p`` gets ``s_p(c) = 1 - min(1, c * (1 - s_p))``. For uniform sparsity
this raises (or lowers) the one sparsity of all sparse layers; for per-layer targets (ERK,
Sparse Wide's depthwise convs) it keeps their ratios, as a distribution's global
re-normalisation does. Effective FLOPs grow monotonically with ``c``, and they are
evaluated exactly (mask sizes rounded by :func:`~sparseift.flops.counter.active_count`)
from one profile of the network, since a layer's effective FLOPs are its dense FLOPs
times its density.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from torch import nn

from sparseift._checks import check_sparsity
from sparseift._model_io import ExampleInputs
from sparseift.flops.counter import FlopProfile, active_count, profile_flops

__all__ = ["Calibration", "calibrate_iso_flop", "calibrate_model", "bisect_increasing", "scale_sparsities"]


@dataclass(frozen=True)
class Calibration:
    """Result of :func:`calibrate_iso_flop`."""

    sparse_params: dict[str, float]
    scale: float
    target_macs: float
    macs_before: float
    macs_after: float
    iterations: int

    @property
    def ratio_before(self) -> float:
        """Effective / target MACs at the nominal sparsities."""
        return self.macs_before / self.target_macs

    @property
    def ratio(self) -> float:
        """Effective / target MACs after calibration (1 within ``rtol``)."""
        return self.macs_after / self.target_macs


def scale_sparsities(sparsities: Mapping[str, float], scale: float) -> dict[str, float]:
    """``s_p(c) = 1 - min(1, c (1 - s_p))`` for every parameter (densities scaled by ``c``)."""
    return {name: 1.0 - min(1.0, scale * (1.0 - s)) for name, s in sparsities.items()}


def bisect_increasing(
    f: Callable[[float], float], target: float, lo: float, hi: float, *, rtol: float, max_iter: int = 200
) -> tuple[float, int]:
    """Find ``x`` in ``[lo, hi]`` with ``|f(x) - target| <= rtol * |target|`` for increasing ``f``.

    Returns ``(x, iterations)``; the best ``x`` seen if the tolerance is not reachable
    (a step function can jump over it).
    """
    best, best_err = lo, abs(f(lo) - target)
    for iteration in range(1, max_iter + 1):
        mid = 0.5 * (lo + hi)
        value = f(mid)
        err = abs(value - target)
        if err < best_err:
            best, best_err = mid, err
        if err <= rtol * abs(target):
            return mid, iteration
        if value < target:
            lo = mid
        else:
            hi = mid
        if hi - lo <= 1e-15 * max(1.0, abs(hi)):
            return best, iteration
    return best, max_iter


def calibrate_iso_flop(
    profile: FlopProfile,
    sparse_params: Mapping[str, float],
    target_macs: float,
    *,
    rtol: float = 1e-6,
) -> Calibration:
    """Calibrate the sparsities of ``sparse_params`` so effective MACs equal ``target_macs``.

    ``profile`` is the FLOP profile of the Sparse-IFT model (:func:`profile_flops`) and
    ``target_macs`` usually the dense model's ``profile_flops(dense, x).dense_macs()`` on
    the same inputs. The result is within ``rtol``, or, for layers so small that one
    weight costs more than ``rtol`` of the model, within half of the cheapest weight's MACs
    (masks hold whole weights). Raises ``ValueError`` when no sparsity in [0, 1) can reach
    the target.
    """
    if not sparse_params:
        raise ValueError("sparse_params is empty: there is no sparse layer to calibrate")
    for name, s in sparse_params.items():
        check_sparsity(s, f"sparse_params[{name!r}]")
    if not target_macs > 0:
        raise ValueError(f"target_macs must be > 0, got {target_macs!r}")

    def macs(scale: float) -> float:
        return profile.effective_macs(scale_sparsities(sparse_params, scale))

    before = macs(1.0)
    floor, ceiling = macs(0.0), macs(max(1.0 / (1.0 - s) for s in sparse_params.values()))
    if floor > target_macs * (1 + rtol):
        raise ValueError(
            f"cannot reach target_macs={target_macs:.6g}: the dense layers alone cost {floor:.6g} MACs "
            "even with every sparse layer at one weight; keep fewer layers dense"
        )
    if ceiling < target_macs * (1 - rtol):
        raise ValueError(
            f"cannot reach target_macs={target_macs:.6g}: the model costs only {ceiling:.6g} MACs fully dense"
        )
    if abs(before - target_macs) <= rtol * target_macs:
        return Calibration(dict(sparse_params), 1.0, target_macs, before, before, 0)
    hi = max(1.0 / (1.0 - s) for s in sparse_params.values())
    scale, iterations = bisect_increasing(macs, target_macs, 0.0, hi, rtol=rtol)
    calibrated = _settle(profile, scale_sparsities(sparse_params, scale), target_macs)
    after = profile.effective_macs(calibrated)
    if abs(after - target_macs) > max(rtol * target_macs, _half_finest_weight(profile, sparse_params)):
        raise ValueError(
            f"Iso-FLOP calibration reached only {after / target_macs - 1:+.2e} relative error (rtol={rtol:g})"
        )
    return Calibration(calibrated, scale, target_macs, before, after, iterations)


def _half_finest_weight(profile: FlopProfile, sparse_params: Mapping[str, float]) -> float:
    """Half the MACs of the cheapest single weight: the best any mask can get to a target."""
    macs = profile.param_macs()
    return 0.5 * min(macs[p] / profile.param_numel[p] for p in sparse_params)


def _settle(profile: FlopProfile, sparsities: dict[str, float], target_macs: float) -> dict[str, float]:
    """Close the last gap left by whole-weight steps with the finest-grained parameter.

    Masks hold whole weights, and one common scale moves every layer's count at once, so
    the search can step over a 1e-6 window. The parameter whose single weight costs the
    fewest MACs then gets the few weights more or fewer that close the gap, to within half
    of one of its weights (about 1e-8 of a ResNet-18).
    """
    gap = target_macs - profile.effective_macs(sparsities)
    macs = profile.param_macs()
    name = min(sparsities, key=lambda p: macs[p] / profile.param_numel[p])
    numel = profile.param_numel[name]
    per_weight = macs[name] / numel
    count = active_count(numel, sparsities[name]) + round(gap / per_weight)
    settled = dict(sparsities)
    settled[name] = 1.0 - min(max(count, 1), numel) / numel
    return settled


def calibrate_model(
    model: nn.Module,
    sparse_params: Mapping[str, float],
    dense_model: nn.Module,
    example_inputs: ExampleInputs,
    *,
    rtol: float = 1e-6,
) -> Calibration:
    """Profile ``model`` and ``dense_model`` on the same inputs and calibrate (A.2).

    ``model``/``sparse_params`` are usually ``sparseift.transform(...)``'s ``model`` and
    ``sparse_params``; the result's ``sparse_params`` are the targets to train with.
    """
    target = profile_flops(dense_model, example_inputs).dense_macs()
    return calibrate_iso_flop(profile_flops(model, example_inputs), sparse_params, target, rtol=rtol)
