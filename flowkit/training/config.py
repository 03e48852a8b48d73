"""Run configuration: typed sections, YAML presets, ``--set key=value`` overrides.

A config is YAML with the sections below; every key is checked, so a typo such as
``optim.lrr`` is an error that names the key and lists the valid ones.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, TypeVar

import yaml

from flowkit.files import read_yaml, write_text

Schema = TypeVar("Schema")


class ConfigError(ValueError):
    """A config file or override that cannot be used, with the key it concerns."""


@dataclass
class DataConfig:
    """What to train on: a built-in data set or a folder of images."""

    name: str = "checkerboard"
    root: str | None = None
    num_points: int = 100_000
    image_size: int | None = None
    channels: int = 3
    random_flip: bool | None = None
    seed: int = 0
    num_workers: int = 0
    kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass
class ModelConfig:
    """The network: ``mlp`` (vectors) or ``unet`` (images, a preset plus overrides)."""

    kind: str = "mlp"
    preset: str | None = None
    prediction: str = "velocity"
    class_conditional: bool = False
    kwargs: dict[str, Any] = field(default_factory=dict)
    init_from: str | None = None


@dataclass
class ObjectiveConfig:
    """The loss: its kind, path, time law, metric, coupling, and kind-specific ``kwargs``.

    ``kind`` is ``flow_matching`` (default), ``diffusion``, ``rectified_diffusion`` or
    ``multiplicative``; see :func:`flowkit.training.builders.build_objective`.
    """

    kind: str = "flow_matching"
    kwargs: dict[str, Any] = field(default_factory=dict)
    path: str = "rectified"
    path_kwargs: dict[str, Any] = field(default_factory=dict)
    time_sampler: str = "uniform"
    time_sampler_kwargs: dict[str, Any] = field(default_factory=dict)
    metric: str = "l2"
    metric_kwargs: dict[str, Any] = field(default_factory=dict)
    coupling: str = "independent"
    coupling_kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass
class OptimConfig:
    """AdamW with linear warm-up, then a constant rate (Liu et al.; Lee et al.)."""

    lr: float = 2e-4
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    warmup_steps: int = 0
    grad_clip: float | None = 1.0
    batch_size: int = 128


@dataclass
class TrainLoopConfig:
    """Length, precision, logging, checkpoints and snapshots of the run.

    A checkpoint is written every ``checkpoint_every`` steps and also once
    ``checkpoint_minutes`` of wall time have passed since the last one (0 turns the clock
    off), so a job killed without warning loses little; SIGINT / SIGTERM write one too.
    """

    steps: int = 10_000
    seed: int = 0
    ema_decay: float = 0.999
    device: str = "auto"
    precision: str = "fp32"
    compile: bool = False
    xformers: str = "auto"
    channels_last: bool | None = None
    log_every: int = 50
    checkpoint_every: int = 1000
    checkpoint_minutes: float = 10.0
    keep_checkpoints: int = 2
    sample_every: int = 0
    sample_num: int = 64
    sample_nfe: int = 50
    sample_method: str = "euler"


@dataclass
class RunConfig:
    """A whole training run."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    objective: ObjectiveConfig = field(default_factory=ObjectiveConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainLoopConfig = field(default_factory=TrainLoopConfig)

    def to_dict(self) -> dict[str, Any]:
        """A plain, YAML-ready dictionary (tuples become lists)."""
        return config_dict(self)


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _build(cls: type, values: dict[str, Any], where: str) -> Any:
    if not isinstance(values, dict):
        raise ConfigError(
            f"config section {where or 'top level'!r} must be a mapping, got {values!r}"
        )
    known = {f.name: f for f in fields(cls)}
    unknown = sorted(set(values) - set(known))
    if unknown:
        prefix = f"{where}." if where else ""
        raise ConfigError(
            f"unknown config key {prefix + unknown[0]!r}; valid keys in "
            f"{where or 'the top level'}: {sorted(known)}"
        )
    kwargs = {}
    for name, value in values.items():
        default = getattr(cls(), name)
        key = f"{where}.{name}".strip(".")
        if dataclasses.is_dataclass(default):
            kwargs[name] = _build(type(default), value or {}, key)
        else:
            kwargs[name] = _coerce(value, str(known[name].type), key)
    return cls(**kwargs)


_SCALARS = {"bool": bool, "int": int, "float": float, "str": str}


def _coerce(value: Any, annotation: str, key: str) -> Any:
    """Check a scalar against its annotation (e.g. ``"float | None"``), converting where
    YAML is ambiguous: ``1e-3`` reads as a string in YAML 1.1, ``1`` as an int."""
    options = [part.strip() for part in annotation.split("|")]
    if value is None:
        if "None" in options:
            return None
        raise ConfigError(f"config key {key!r} must be set (expected {annotation})")
    if options[0].startswith("tuple") and isinstance(value, (list, tuple)):
        return tuple(float(v) for v in value)
    for option in options:
        kind = _SCALARS.get(option)
        if kind is None:
            return value  # containers (dict, list): checked where they are used
        if isinstance(value, kind) and not (kind is int and isinstance(value, bool)):
            return value
        if kind is float and isinstance(value, (int, str)) and not isinstance(value, bool):
            try:
                return float(value)
            except ValueError:
                continue
    raise ConfigError(f"config key {key!r} expects {annotation}, got {value!r}")


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"optim.lr=1e-3"`` -> ``(["optim", "lr"], 0.001)``; the value is parsed as YAML."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} must look like key=value, e.g. optim.lr=1e-3")
    key, raw = text.split("=", 1)
    return key.strip().split("."), yaml.safe_load(raw)


def apply_overrides(values: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Set dotted keys in a nested dictionary (a copy); keys are validated later."""
    values = yaml.safe_load(yaml.safe_dump(values))
    for text in overrides:
        keys, value = parse_override(text)
        node = values
        for key in keys[:-1]:
            node = node.setdefault(key, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {text!r}: {key!r} is not a section")
        node[keys[-1]] = value
    return values


def config_from_dict(values: dict[str, Any], schema: type[Schema] = RunConfig) -> Schema:
    """Validate a nested dictionary into ``schema`` (a dataclass of dataclass sections:
    :class:`RunConfig`, or another loop's config built from the same sections)."""
    return _build(schema, values or {}, "")


def load_config(
    path: str | os.PathLike | None,
    overrides: list[str] | None = None,
    schema: type[Schema] = RunConfig,
) -> Schema:
    """Read a YAML preset (or start from defaults when ``path`` is None), apply overrides
    and validate the result into ``schema``."""
    values: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"config file {str(path)!r} does not exist")
        values = read_yaml(path, "config file") or {}
        if not isinstance(values, dict):
            raise ConfigError(f"config file {str(path)!r} must hold a mapping of sections")
    return config_from_dict(apply_overrides(values, overrides or []), schema)


def config_dict(config: Any) -> dict[str, Any]:
    """Any config dataclass as a plain, YAML-ready dictionary (tuples become lists)."""
    return _plain(dataclasses.asdict(config))


def save_config(config: Any, path: str | os.PathLike) -> None:
    """Write the resolved config (any config dataclass) as YAML, atomically."""
    write_text(path, yaml.safe_dump(config_dict(config), sort_keys=False))


def differing_keys(a: Any, b: Any, sections: tuple[str, ...]) -> list[str]:
    """Dotted keys whose values differ between two configs, within ``sections``."""
    da, db = config_dict(a), config_dict(b)
    return [
        f"{section}.{key}"
        for section in sections
        for key in da[section]
        if da[section][key] != db[section][key]
    ]
