"""Model zoo: a registry of model names (``build_model``) with matching example inputs."""

from sparseift.models.registry import ModelSpec, build_model, example_input, list_models, register_model

__all__ = ["ModelSpec", "build_model", "example_input", "list_models", "register_model"]
