"""Training runs: typed recipes, one loop (DDP, AMP, atomic checkpoints, bit-exact resume), logs."""

from sparseift.train.build import restore_model
from sparseift.train.checkpoint import load_checkpoint, save_checkpoint
from sparseift.train.config import ConfigError, RunConfig, apply_overrides, config_from_dict, load_config
from sparseift.train.loop import Callback, Trainer, TrainResult, evaluate
from sparseift.train.recipes import list_recipes, recipe_path

__all__ = [
    "Trainer",
    "TrainResult",
    "Callback",
    "evaluate",
    "RunConfig",
    "ConfigError",
    "load_config",
    "config_from_dict",
    "apply_overrides",
    "load_checkpoint",
    "save_checkpoint",
    "restore_model",
    "list_recipes",
    "recipe_path",
]
