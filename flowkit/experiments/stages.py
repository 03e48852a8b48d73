"""Resumable stages of multi-step scripts (teacher, pairs, students, report)."""

from __future__ import annotations

import os
from pathlib import Path

from flowkit.files import read_json_object, write_json
from flowkit.training.config import load_config
from flowkit.training.trainer import Trainer


def train_or_resume(
    config: str | os.PathLike,
    overrides: list[str],
    run_dir: str | os.PathLike,
    progress: bool = True,
) -> Path:
    """Train ``config`` (with ``--set``-style ``overrides``) into ``run_dir``, continuing its
    latest checkpoint if there is one; a run that already saved its pipeline is left as is.
    Returns the pipeline folder."""
    run_dir = Path(run_dir)
    if (run_dir / "pipeline" / "model_index.json").is_file():
        return run_dir / "pipeline"
    return Trainer(load_config(config, overrides), run_dir, resume=True, progress=progress).fit()


def record_minutes(path: str | os.PathLike, seconds: dict[str, float]) -> dict[str, float]:
    """Merge this run's wall time per stage into the JSON file ``path`` (minutes, written
    atomically). A stage that took under a second was skipped (its output already existed),
    so the time recorded when it ran is kept. Returns the merged minutes."""
    path = Path(path)
    minutes = read_json_object(path, "stage times") if path.is_file() else {}
    minutes.update({k: round(v / 60, 2) for k, v in seconds.items() if v >= 1 or k not in minutes})
    write_json(path, minutes)
    return minutes
