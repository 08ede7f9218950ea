"""FLOP accounting and Iso-FLOP calibration (section 2.1, appendix A.2)."""

from sparseift.flops.calibrate import Calibration, calibrate_iso_flop, calibrate_model, scale_sparsities
from sparseift.flops.counter import FlopProfile, OpRecord, active_count, profile_flops, training_macs

__all__ = [
    "Calibration",
    "calibrate_iso_flop",
    "calibrate_model",
    "scale_sparsities",
    "FlopProfile",
    "OpRecord",
    "active_count",
    "profile_flops",
    "training_macs",
]
