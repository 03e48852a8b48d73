"""Config loading: presets parse, overrides apply, bad keys and values are named."""

from pathlib import Path

import pytest
import yaml

from flowkit.training.config import ConfigError, RunConfig, load_config

CONFIGS = sorted((Path(__file__).parents[2] / "configs").glob("*.yaml"))
# presets of the other loops, read with their own schemas
OTHER_LOOPS = ("distill_", "reinflow_")


def _schema(path: Path) -> type:
    if path.name.startswith("distill_"):
        from flowkit.distill.config import DistillConfig

        return DistillConfig
    if path.name.startswith("reinflow_"):
        from flowkit.rl.config import ReinFlowConfig
        from flowkit.rl.generator_config import GeneratorRewardConfig

        task = (yaml.safe_load(path.read_text()) or {}).get("task", "policy")
        return GeneratorRewardConfig if task == "generator" else ReinFlowConfig
    return RunConfig


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_presets_parse(path: Path) -> None:
    """Every preset validates against the schema of the loop that reads it."""
    config = load_config(path, schema=_schema(path))
    if not path.name.startswith(OTHER_LOOPS):
        assert config.train.steps > 0 and config.optim.lr > 0
        with pytest.raises(ConfigError, match="unknown config key"):
            load_config(path, ["train.stepz=1"])


def test_overrides_are_typed() -> None:
    config = load_config(
        None, ["optim.lr=1e-3", "optim.grad_clip=null", "model.kwargs.hidden_dim=64"]
    )
    assert config.optim.lr == 1e-3 and isinstance(config.optim.lr, float)
    assert config.optim.grad_clip is None
    assert config.model.kwargs == {"hidden_dim": 64}


@pytest.mark.parametrize(
    "override,message",
    [
        ("optim.lrr=1", "unknown config key 'optim.lrr'"),
        ("trian.steps=1", "unknown config key 'trian'"),
        ("optim.lr=fast", "config key 'optim.lr' expects float, got 'fast'"),
        ("train.steps=1.5", "config key 'train.steps' expects int"),
        ("optim.lr", "must look like key=value"),
    ],
)
def test_bad_keys_and_values_are_named(override: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        load_config(None, [override])


def test_missing_config_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nope.yaml"):
        load_config(tmp_path / "nope.yaml")
