"""What a ``MODEL`` argument names: a run, a saved pipeline, or a model folder.

- a run directory ``RUN/`` (``RUN/pipeline/`` as the trainer writes it);
- a pipeline directory (``model_index.json``): its ``model`` (or one-step ``generator``)
  and the path recorded in its scheduler's config;
- a model directory (``config.json`` + safetensors): the rectified path, unless a run's
  ``config.yaml`` sits beside it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from torch import nn

from flowkit.paths import AffinePath, get_path


def _pipeline_dir(path: Path) -> Path | None:
    for candidate in (path, path / "pipeline"):
        if (candidate / "model_index.json").is_file():
            return candidate
    return None


def load_field(path: str | os.PathLike) -> tuple[nn.Module, AffinePath]:
    """The network saved at ``path`` and the path it was trained on.

    Raises:
        FileNotFoundError: ``path`` holds no run, pipeline or model.
    """
    from flowkit.models import load_model

    path = Path(path)
    pipeline = _pipeline_dir(path)
    if pipeline is not None:
        index = json.loads((pipeline / "model_index.json").read_text())
        if index.get("_class_name") == "MultiplicativePipeline":
            raise ValueError(
                f"{str(pipeline)!r} holds a multiplicative (GBM) model, not a field on an affine "
                "path: sample it with `flowkit sample` or MultiplicativePipeline"
            )
        component = "model" if "model" in index else "generator"
        scheduler_config = pipeline / "scheduler" / "scheduler_config.json"
        recorded = json.loads(scheduler_config.read_text()) if scheduler_config.is_file() else {}
        affine = get_path(recorded.get("path", "rectified"), **(recorded.get("path_kwargs") or {}))
        return load_model(pipeline / component), affine
    if not (path / "config.json").is_file():
        raise FileNotFoundError(
            f"{str(path)!r} is not a run directory, a pipeline directory (model_index.json) "
            "or a model directory (config.json + safetensors)"
        )
    run_config = path.parent / "config.yaml"
    if run_config.is_file():
        from flowkit.training.config import load_config

        objective = load_config(run_config).objective
        return load_model(path), get_path(objective.path, **objective.path_kwargs)
    return load_model(path), get_path("rectified")
