"""The iteration loop that the ReinFlow trainers share.

:class:`IterationLoop` holds what :class:`flowkit.rl.trainer.ReinFlowTrainer` and
:class:`flowkit.rl.generator_trainer.GeneratorRewardTrainer` do alike: the run directory
and :class:`CheckpointManager`, the two seeded generators (``noise``, ``shuffle``), the
metrics log, the checkpoint state at iteration boundaries and its restore, and :meth:`fit`:

    while iteration < ppo.iterations:
        record = _iterate() ;  iteration += 1 ;  evaluate every ``ppo.eval_every`` and last ;
        write the record (with ``wall_s``) ;  checkpoint every ``train.checkpoint_every``,
        at the end, when the wall-time timer is due or on SIGINT / SIGTERM ;
    _final_save()

A trainer names its counter (:attr:`IterationLoop.counter`, e.g. ``"env_steps"``) and
supplies :meth:`_named`, :meth:`_start`, :meth:`_iterate`, :meth:`_evaluate`,
:meth:`_postfix`, :meth:`_description` and :meth:`_final_save`; optionally
:meth:`_extra_state` / :meth:`_load_extra_state` for more checkpointed state.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from flowkit.training.checkpoint import CheckpointManager, decode_rng, encode_rng
from flowkit.training.interrupts import CheckpointTimer, StopSignals, TrainingInterrupted
from flowkit.training.metrics_log import MetricsLog
from flowkit.training.run_dir import prepare_run_dir

__all__ = ["IterationLoop", "torch_threads"]


@contextmanager
def torch_threads(count: int) -> Iterator[None]:
    """Run with ``count`` torch threads (0: unchanged), then restore the previous count."""
    before = torch.get_num_threads()
    if count > 0:
        torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


class IterationLoop:
    """Base of the ReinFlow trainers: state, checkpoints and the loop (module docstring).

    ``config`` must have ``ppo.iterations``, ``ppo.eval_every`` and ``train.seed``,
    ``train.keep_checkpoints``, ``train.checkpoint_every``, ``train.checkpoint_minutes``,
    ``train.threads``.
    """

    counter: str = "steps"
    """The name of the attribute that counts the work done (checkpointed first)."""

    config: Any
    run_dir: Path
    progress: bool
    checkpoints: CheckpointManager
    iteration: int
    wall_s: float

    # -- set-up ----------------------------------------------------------------------------
    def _open_run(self, config: Any, run_dir: str | os.PathLike, resume: bool, progress: bool,
                  frozen: Any) -> None:  # fmt: skip
        """Keep the config; make (or check, on resume) the run directory; seed torch."""
        self.config, self.run_dir, self.progress = config, Path(run_dir), progress
        self.checkpoints = CheckpointManager(self.run_dir, config.train.keep_checkpoints)
        prepare_run_dir(self.run_dir, config, resume, self.checkpoints, frozen)
        torch.manual_seed(config.train.seed)

    def _open_loop(self, resume: bool) -> None:
        """Make the generators, metrics log and timer; resume, or start (record 0)."""
        seed = self.config.train.seed
        self.noise = torch.Generator().manual_seed(seed * 1_000_003 + 1)
        self.shuffle = torch.Generator().manual_seed(seed * 1_000_003 + 2)
        self.metrics = MetricsLog(self.run_dir / "metrics.jsonl")
        self.timer = CheckpointTimer(self.config.train.checkpoint_minutes)
        self.iteration, self.wall_s = 0, 0.0
        setattr(self, self.counter, 0)
        latest = self.checkpoints.latest() if resume else None
        if latest is not None:
            self._restore(latest)
        else:
            with torch_threads(self.config.train.threads):
                self.metrics.truncate_after(-1)
                self.metrics.write(self._start())
                self.save_checkpoint()

    # -- state -----------------------------------------------------------------------------
    def save_checkpoint(self) -> Path:
        """Checkpoint the state at the current iteration boundary."""
        modules, optimizers = self._named()
        state = {
            self.counter: getattr(self, self.counter),
            "wall_s": self.wall_s,
            "noise": encode_rng(self.noise.get_state()),
            "shuffle": encode_rng(self.shuffle.get_state()),
            **self._extra_state(),
        }
        path = self.checkpoints.save_named(self.iteration, modules, optimizers, state)
        self.timer.reset()
        return path

    def _restore(self, latest: Path) -> None:
        modules, optimizers = self._named()
        ckpt = self.checkpoints.load_named(latest, modules, optimizers)
        self.iteration = ckpt.step
        setattr(self, self.counter, int(ckpt.state[self.counter]))
        self.wall_s = float(ckpt.state["wall_s"])
        self.noise.set_state(decode_rng(ckpt.state["noise"]))
        self.shuffle.set_state(decode_rng(ckpt.state["shuffle"]))
        self._load_extra_state(ckpt.state)
        self.metrics.truncate_after(self.iteration)

    # -- the loop --------------------------------------------------------------------------
    def fit(self) -> Path:
        """Run to ``ppo.iterations``; save the final artifact and return its path.

        Raises:
            TrainingInterrupted: SIGINT / SIGTERM; the iteration in progress finished and
                was checkpointed.
        """
        cfg = self.config
        total = cfg.ppo.iterations
        bar = tqdm(total=total, initial=min(self.iteration, total), unit="it",
                   dynamic_ncols=True, disable=not self.progress,
                   desc=self._description())  # fmt: skip
        self.timer.reset()
        saved = None
        with StopSignals() as stop, torch_threads(cfg.train.threads):
            try:
                while self.iteration < total:
                    tic = time.perf_counter()
                    record = self._iterate()
                    self.iteration += 1
                    every = cfg.ppo.eval_every
                    if (every and self.iteration % every == 0) or self.iteration == total:
                        record.update(self._evaluate())
                    self.wall_s += time.perf_counter() - tic
                    record["wall_s"] = self.wall_s
                    self.metrics.write(record)
                    bar.update(1)
                    postfix = self._postfix(record)
                    if postfix is not None:
                        bar.set_postfix(**postfix)
                    due = self.iteration % cfg.train.checkpoint_every == 0
                    if due or self.iteration == total or self.timer.due() or stop.signum:
                        saved = self.save_checkpoint()
                    if stop.signum:
                        raise TrainingInterrupted(stop.signum, self.iteration, saved)
            finally:
                bar.close()
            stop.immediate = True
            return self._final_save()

    # -- what a trainer supplies -----------------------------------------------------------
    def _named(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """The checkpointed modules and optimizers, by name."""
        raise NotImplementedError

    def _extra_state(self) -> dict[str, Any]:
        """More checkpointed state (after the counter, ``wall_s`` and the generators)."""
        return {}

    def _load_extra_state(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`_extra_state` saved (and anything set after a restore)."""

    def _start(self) -> dict[str, Any]:
        """Prepare a fresh run; return metrics record 0 (``wall_s`` included)."""
        raise NotImplementedError

    def _iterate(self) -> dict[str, Any]:
        """One iteration from ``self.iteration``; return its metrics record."""
        raise NotImplementedError

    def _evaluate(self) -> dict[str, Any]:
        """The evaluation merged into the record (empty: none)."""
        raise NotImplementedError

    def _postfix(self, record: dict[str, Any]) -> dict[str, str] | None:
        """The progress bar's postfix after ``record`` (None: leave it)."""
        return None

    def _description(self) -> str:
        """The progress bar's description."""
        raise NotImplementedError

    def _final_save(self) -> Path:
        """Save the trained artifact after the last iteration; return its path."""
        raise NotImplementedError
