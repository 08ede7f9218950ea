"""The packaged recipes (``src/sparseift/recipes/*.yaml``): the paper's experiments and CPU proxies."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

__all__ = ["list_recipes", "recipe_path"]


def _folder() -> Path:
    return Path(str(resources.files("sparseift") / "recipes"))


def list_recipes() -> list[str]:
    """Names of the packaged recipes."""
    return sorted(p.stem for p in _folder().glob("*.yaml"))


def recipe_path(name_or_path: str | Path) -> Path:
    """A config file path: an existing path as given, else a packaged recipe by name."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    packaged = _folder() / f"{name_or_path}.yaml"
    if packaged.is_file():
        return packaged
    raise FileNotFoundError(
        f"config {str(name_or_path)!r} is neither a file nor a packaged recipe; recipes: {', '.join(list_recipes())}"
    )
