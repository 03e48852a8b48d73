"""Stopping a training loop without losing work: signals, wall-time checkpoints, and the
agreement of every rank on both.

SIGINT (Ctrl-C) and SIGTERM (``kill``, a scheduler's pre-emption) do not stop the loop in
the middle of a step. :class:`StopSignals` records the first one; the loop finishes its
step, writes a checkpoint and raises :class:`TrainingInterrupted`, and the command exits
with ``128 + signal`` (130 for SIGINT, 143 for SIGTERM). A second SIGINT at least
``GRACE_S`` after the first aborts at once with :class:`Interrupted`: checkpoints are
written under a temporary name and renamed into place, so the previous one stays whole.
Signals within ``GRACE_S`` of the first count as the same request — a terminal sends
Ctrl-C to ``torchrun`` and to every worker, and ``torchrun`` forwards it to them again.

Under ``torchrun`` every rank must stop (and checkpoint) at the same step, or the others
wait forever in the next collective. :func:`agree` takes the element-wise maximum of a few
integer flags over all ranks once per step, so a signal that reached one rank, or one
rank's clock saying a checkpoint is due, is acted on by all of them at the same step.

This module imports neither torch nor anything of flowkit at module level.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

GRACE_S = 1.0
SIGNALS = (signal.SIGINT, signal.SIGTERM)


def exit_code(signum: int) -> int:
    """The shell's convention for a process ended by signal ``signum``: ``128 + signum``."""
    return 128 + int(signum)


class Interrupted(KeyboardInterrupt):
    """Stopped by signal ``signum``; the process should exit with :attr:`exit_code`.

    A ``KeyboardInterrupt``, so that ``except Exception`` does not swallow it and code that
    does not know about it behaves as on a plain Ctrl-C.
    """

    def __init__(self, signum: int = signal.SIGINT, message: str = "") -> None:
        self.signum = int(signum)
        super().__init__(message or f"interrupted by {signal.Signals(self.signum).name}")

    @property
    def exit_code(self) -> int:
        return exit_code(self.signum)


class TrainingInterrupted(Interrupted):
    """Training stopped after step ``step`` on a signal, with that step saved in
    ``checkpoint``; the run continues with ``--resume``."""

    def __init__(self, signum: int, step: int, checkpoint: Path) -> None:
        self.step, self.checkpoint = step, Path(checkpoint)
        name = signal.Signals(int(signum)).name
        super().__init__(signum, f"{name}: stopped at step {step}; checkpoint {checkpoint}")


class StopSignals:
    """While active (a ``with`` block), SIGINT and SIGTERM request a stop instead of ending
    the process; the previous handlers come back on exit.

    ``signum`` is the first signal received (``None`` until then). With ``immediate`` set,
    any signal raises :class:`Interrupted` at once (for work that has no step to finish).
    Handlers can only be installed from the main thread; elsewhere this does nothing.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.signum: int | None = None
        self.immediate = False
        self._first_at = 0.0
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            for signum in SIGNALS:
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc_info: object) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, signal.SIG_DFL if handler is None else handler)
        self._previous.clear()

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.immediate:
            raise Interrupted(signum)
        now = self.clock()
        if self.signum is None:
            self.signum, self._first_at = int(signum), now
        elif signum == signal.SIGINT and now - self._first_at >= GRACE_S:
            raise Interrupted(signum, "interrupted again while stopping")


class CheckpointTimer:
    """Says when ``minutes`` of wall time have passed since :meth:`reset` (never when 0)."""

    def __init__(self, minutes: float, clock: Callable[[], float] = time.monotonic) -> None:
        if minutes < 0:
            raise ValueError(f"train.checkpoint_minutes must be >= 0 (0 disables), got {minutes}")
        self.seconds = 60.0 * minutes
        self.clock = clock
        self.reset()

    def reset(self) -> None:
        self.last = self.clock()

    def due(self) -> bool:
        return self.seconds > 0 and self.clock() - self.last >= self.seconds


def control_group() -> Any:
    """A process group for :func:`agree`: the default one under gloo, and beside NCCL a gloo
    group, so agreeing on CPU flags never waits for the GPU. Call it on every rank."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_backend() == "gloo":
        return None
    return dist.new_group(backend="gloo")


def agree(flags: list[int], group: Any = None) -> list[int]:
    """The element-wise maximum of small integer ``flags`` over all ranks of ``group``
    (CPU tensors: the group must be gloo); the flags themselves outside a process group."""
    import torch
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return list(flags)
    tensor = torch.tensor(flags, dtype=torch.int64)
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX, group=group)
    return [int(v) for v in tensor.tolist()]
