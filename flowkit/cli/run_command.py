"""What the three training-loop commands share (``flowkit train``, ``distill``,
``reinflow``): their arguments, the default run directory, and the one line an interrupted
run prints -- where the work is and the command that continues it. Torch-free, so
``--help`` stays fast."""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from pathlib import Path

PREFIX = "step-"  # checkpoint folders, as flowkit.training.checkpoint names them


def add_run_arguments(
    parser: argparse.ArgumentParser, config_example: str, set_example: str
) -> None:
    """``CONFIG [--out RUN] [--set KEY=VALUE ...] [--resume] [--no-progress]``."""
    parser.add_argument("config", help=f"a YAML preset, e.g. {config_example}")
    parser.add_argument("--out", help="run directory (default: runs/<config name>)")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help=f"override a config key, e.g. {set_example}",
    )
    parser.add_argument(
        "--resume", action="store_true", help="continue from the run directory's latest checkpoint"
    )
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def run_dir(args: argparse.Namespace) -> Path:
    """``--out``, or ``runs/<config name>``."""
    return Path(args.out) if args.out else Path("runs") / Path(args.config).stem


def latest_checkpoint(out: Path) -> Path | None:
    """The newest complete ``RUN/checkpoints/step-*`` folder (found without torch)."""
    found = [
        path
        for path in (out / "checkpoints").glob(f"{PREFIX}*")
        if path.is_dir() and path.name[len(PREFIX) :].isdigit()
    ]
    return max(found, key=lambda path: int(path.name[len(PREFIX) :]), default=None)


def continue_command(
    command: str, args: argparse.Namespace, out: Path, ranks: int, resume: bool
) -> str:
    """The command that continues this run: the same config and overrides."""
    words = [command, args.config, "--out", str(out)]
    for override in args.overrides:
        words += ["--set", override]
    words += ["--resume"] if resume else []
    if ranks > 1:
        return f"torchrun [the same options, {ranks} processes] -m flowkit {shlex.join(words)}"
    return f"flowkit {shlex.join(words)}"


def report_interrupt(
    command: str,
    args: argparse.Namespace,
    out: Path,
    interrupt: KeyboardInterrupt,
    dist=None,
    unit: str = "step",
) -> int:
    """Print (on rank 0) one line saying where the work is and the command that continues
    it; return the exit code ``128 + signal`` (130 for Ctrl-C, 143 for SIGTERM).

    ``interrupt`` is the loop's :class:`~flowkit.training.TrainingInterrupted` (a clean stop
    after a whole ``unit``, with ``.step`` and ``.checkpoint``) or a bare
    ``KeyboardInterrupt``; ``dist`` the loop's process group info, when it got that far.
    After a clean stop every rank stopped at the same step, and they leave together.
    """
    code = getattr(interrupt, "exit_code", 130)
    checkpoint = getattr(interrupt, "checkpoint", None)
    latest = latest_checkpoint(out)
    if checkpoint is not None:
        where = f"interrupted at {unit} {interrupt.step}; checkpoint saved to {checkpoint}"
    elif latest is not None:
        where = (
            f"interrupted; the last checkpoint is {latest} "
            f"({unit} {int(latest.name[len(PREFIX) :])})"
        )
    else:
        where = "interrupted before the first checkpoint"
    ranks, rank = (
        (dist.world_size, dist.rank)
        if dist is not None
        else (int(os.environ.get("WORLD_SIZE", "1")), int(os.environ.get("RANK", "0")))
    )
    if rank == 0:
        again = "resume with" if latest is not None else "start again with"
        line = continue_command(command, args, out, ranks, resume=latest is not None)
        print(f"flowkit {command}: {where}; {again}: {line}", file=sys.stderr, flush=True)
    if checkpoint is not None:
        from flowkit.distributed import shutdown_and_exit

        shutdown_and_exit(code)  # under torchrun; a no-op in one process
    return code
