"""What a ``MODEL`` argument names, and which path a saved flowkit model was trained on.

A source is one of:

- a run directory ``RUN/`` (the trainer's ``RUN/pipeline/``);
- a flowkit pipeline directory (``model_index.json`` naming a flowkit pipeline): its
  ``model`` (or a one-step ``generator``) folder, or a multiplicative (GBM) pipeline;
- a flowkit model directory (``config.json`` naming a flowkit model class + safetensors);
- a diffusers pipeline directory or model folder (DDPM / DDIM / flow matching teachers).

A saved flowkit model describes itself: its ``config.json`` records ``prediction``,
``path`` and ``path_kwargs``. A model folder saved before flowkit recorded the path is read
only inside a pipeline whose scheduler records it; otherwise loading is an error that says
how to fix the folder, never a silent default.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flowkit.files import read_json
from flowkit.models.field_utils import MULTIPLICATIVE

FLOWKIT_MODEL_CLASSES = ("MLPField", "UNetField")
MULTIPLICATIVE_PIPELINE = "MultiplicativePipeline"


@dataclass(frozen=True)
class SavedModel:
    """Where a saved model's parts are.

    Attributes:
        kind: ``"flowkit"`` (a field on an affine path), ``"multiplicative"`` (a GBM
            pipeline) or ``"diffusers"`` (a diffusers teacher).
        source: the directory the user named.
        pipeline_dir: the pipeline directory (``model_index.json``), if any.
        model_dir: the flowkit model folder (``config.json`` + weights), if any.
    """

    kind: str
    source: Path
    pipeline_dir: Path | None = None
    model_dir: Path | None = None


def locate(source: str | os.PathLike) -> SavedModel:
    """Classify ``source`` (see the module docstring).

    Raises:
        FileNotFoundError: ``source`` does not exist or holds no saved model.
        ValueError: a ``model_index.json`` that names classes outside flowkit and diffusers.
    """
    from flowkit.pipelines.model_index import FLOWKIT_PIPELINES, check_model_index

    path = Path(source)
    if not path.exists():
        raise FileNotFoundError(f"model {str(path)!r} does not exist")
    for candidate in (path, path / "pipeline"):
        index_file = candidate / "model_index.json"
        if not index_file.is_file():
            continue
        index = read_json(index_file, "pipeline index")
        check_model_index(index, index_file)
        name = index.get("_class_name")
        if name == MULTIPLICATIVE_PIPELINE:
            return SavedModel("multiplicative", path, candidate, candidate / "model")
        if name in FLOWKIT_PIPELINES:
            component = "model" if "model" in index else "generator"
            return SavedModel("flowkit", path, candidate, candidate / component)
        return SavedModel("diffusers", path, candidate)
    config_file = path / "config.json"
    if config_file.is_file():
        config = read_json(config_file, "model config")
        if isinstance(config, dict) and config.get("_class_name") in FLOWKIT_MODEL_CLASSES:
            return SavedModel("flowkit", path, None, path)
        return SavedModel("diffusers", path)
    if any((path / name / "config.json").is_file() for name in ("unet", "transformer")):
        return SavedModel("diffusers", path)
    raise FileNotFoundError(
        f"{str(path)!r} is not a run directory, a pipeline directory (model_index.json), a "
        "model directory (config.json + safetensors) or a diffusers pipeline"
    )


def recorded_path(saved: SavedModel) -> tuple[str, dict[str, Any]]:
    """The path name and parameters a flowkit model was trained on.

    Read from the model's own ``config.json``; for a folder saved before models recorded
    it, from the enclosing pipeline's scheduler config. The two must agree when both exist.

    Raises:
        ValueError: neither records the path, or they disagree (the message says how to fix
            the folder).
    """
    assert saved.model_dir is not None
    config_file = saved.model_dir / "config.json"
    config = read_json(config_file, "model config")
    own = (config["path"], config.get("path_kwargs") or {}) if "path" in config else None
    pipeline_dir = saved.pipeline_dir
    if pipeline_dir is None and (saved.model_dir.parent / "model_index.json").is_file():
        pipeline_dir = saved.model_dir.parent
        index = read_json(pipeline_dir / "model_index.json", "pipeline index")
        if isinstance(index, dict) and index.get("_class_name") == MULTIPLICATIVE_PIPELINE:
            return MULTIPLICATIVE, {}
    scheduler = _scheduler_path(pipeline_dir) if pipeline_dir is not None else None
    if own is not None and scheduler is not None and own != scheduler:
        raise ValueError(
            f"{str(config_file)!r} records path {own[0]!r} {own[1]} but the scheduler of "
            f"{str(pipeline_dir)!r} records {scheduler[0]!r} {scheduler[1]}: the folder was "
            "edited by hand or assembled from two runs; make them agree"
        )
    found = own or scheduler
    if found is None:
        raise ValueError(
            f"{str(config_file)!r} does not record the path the model was trained on (saved "
            'by an older flowkit). Add it to that config.json, e.g. "path": "rectified", '
            '"path_kwargs": {} (or "vp", "subvp", "ve", "cosine" with the run\'s '
            "objective.path_kwargs from its config.yaml), or load the run's pipeline "
            "directory, whose scheduler records it"
        )
    return found


def _scheduler_path(pipeline_dir: Path) -> tuple[str, dict[str, Any]] | None:
    config_file = pipeline_dir / "scheduler" / "scheduler_config.json"
    if not config_file.is_file():
        return None
    config = read_json(config_file, "scheduler config")
    if not isinstance(config, dict) or "path" not in config:
        return None
    return config["path"], config.get("path_kwargs") or {}
