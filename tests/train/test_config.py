"""Run configs: YAML/TOML loading, overrides, validation that names the key, packaged recipes."""

from __future__ import annotations

import pytest

from sparseift.train import ConfigError, RunConfig, config_from_dict, list_recipes, load_config, recipe_path
from sparseift.train.config import config_to_dict


def test_round_trip_through_dict() -> None:
    config = load_config(None, ["optim.name=adamw", "optim.betas=[0.9, 0.95]", "transform.family=wide",
                                "transform.sparsity=0.5"])  # fmt: skip
    assert config_from_dict(config_to_dict(config)) == config
    assert config.optim.betas == (0.9, 0.95)


def test_yaml_and_toml_files(tmp_path) -> None:  # noqa: ANN001
    (tmp_path / "a.yaml").write_text("name: a\noptim: {lr: 1e-3, eps: 1e-8}\ntrain: {epochs: 2}\n")
    (tmp_path / "b.toml").write_text('name = "b"\n[optim]\nlr = 0.001\n[train]\nepochs = 2\n')
    a, b = load_config(tmp_path / "a.yaml"), load_config(tmp_path / "b.toml")
    assert a.optim.lr == b.optim.lr == 0.001 and a.optim.eps == 1e-8 and a.train.epochs == 2.0


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("optim.lr=-1", "optim.lr must be > 0"),
        ("optim.lrr=0.1", "unknown config key optim.lrr"),
        ("colour=red", "unknown config key colour"),
        ("transform.family=deep", "transform.family must be one of"),
        ("transform.sparsity=1.0", r"transform.sparsity must lie in \[0, 1\)"),
        ("data.batch_size=1.5", "data.batch_size must be int"),
        ("sparsity.delta_t=0", "sparsity.delta_t must be > 0"),
        ("schedule.milestones=[0.6, 0.3]", "schedule.milestones must be increasing"),
        ("train.amp=fp8", "train.amp must be one of"),
        ("optim.lr", "must look like key=value"),
    ],
)
def test_bad_values_name_the_key(override: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(None, [override])


def test_dense_family_with_sparsity_is_rejected() -> None:
    with pytest.raises(ConfigError, match="must be 0 when transform.family is 'dense'"):
        load_config(None, ["transform.sparsity=0.5"])


@pytest.mark.parametrize("name", list_recipes())
def test_packaged_recipes_are_valid(name: str) -> None:
    config = load_config(recipe_path(name))
    assert isinstance(config, RunConfig)


def test_missing_recipe() -> None:
    with pytest.raises(FileNotFoundError, match="neither a file nor a packaged recipe"):
        recipe_path("no_such_recipe")
