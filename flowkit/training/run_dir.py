"""A run directory's start: refuse to overwrite a run, refuse to resume with a changed
config, and write the resolved ``RUN/config.yaml`` (every training loop does this)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from flowkit.distributed import barrier
from flowkit.training.checkpoint import CheckpointManager
from flowkit.training.config import ConfigError, differing_keys, load_config, save_config


def prepare_run_dir(
    run_dir: Path,
    config: Any,
    resume: bool,
    checkpoints: CheckpointManager,
    frozen: tuple[str, ...],
    is_main: bool = True,
) -> None:
    """Check ``run_dir`` against ``config`` and save the config there.

    Args:
        run_dir: the run's folder (created when missing).
        config: the resolved config dataclass of this loop.
        resume: whether the run continues its latest checkpoint.
        checkpoints: the run's checkpoint manager.
        frozen: config sections that may not change on resume (e.g. ``("data", "model")``);
            the others (optimizer, loop length) may.
        is_main: only the main process writes; every process waits for it.

    Raises:
        FileExistsError: checkpoints exist and ``resume`` is False.
        ConfigError: resuming with a change in a frozen section (the keys are named).
    """
    saved = run_dir / "config.yaml"
    if not resume and checkpoints.latest() is not None:
        raise FileExistsError(
            f"run directory {str(run_dir)!r} already has checkpoints; pass --resume "
            "to continue it or choose another --out"
        )
    if resume and saved.is_file():
        changed = differing_keys(load_config(saved, schema=type(config)), config, frozen)
        if changed:
            allowed = sorted(set(vars(config)) - set(frozen))
            raise ConfigError(
                f"cannot resume {str(run_dir)!r} with a different {', '.join(changed)}; "
                f"only {', '.join(f'{name}.*' for name in allowed)} may change on resume"
            )
    if is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        save_config(config, saved)
    barrier()
