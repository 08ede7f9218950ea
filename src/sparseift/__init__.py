"""sparseift: Sparse Iso-FLOP Transformations (Sparse-IFT, Thangarasa et al., ICML 2024) for PyTorch.

Quick start::

    import torch, torchvision, sparseift
    dense = torchvision.models.resnet18()
    x = torch.randn(1, 3, 224, 224)
    result = sparseift.transform(dense, "wide", 0.75, example_inputs=x)
    cal = sparseift.calibrate_model(result.model, result.sparse_params, dense, x)   # iso-FLOP to 1e-6
"""

from sparseift import sparsity
from sparseift.flops import Calibration, FlopProfile, calibrate_iso_flop, calibrate_model, profile_flops
from sparseift.sparsity import FORCE, SET, SNIP, FlopBudget, GraNet, GraSP, RigL, StaticSparsifier
from sparseift.transforms import FAMILIES, Transformed, transform

__version__ = "0.1.0"

__all__ = [
    "FAMILIES",
    "Transformed",
    "transform",
    "FlopProfile",
    "profile_flops",
    "Calibration",
    "calibrate_iso_flop",
    "calibrate_model",
    "sparsity",
    "StaticSparsifier",
    "SNIP",
    "GraSP",
    "FORCE",
    "SET",
    "RigL",
    "GraNet",
    "FlopBudget",
    "__version__",
]
