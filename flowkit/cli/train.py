"""``flowkit train CONFIG``: train a model from a YAML preset."""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from pathlib import Path

PREFIX = "step-"  # checkpoint folders, as flowkit.training.checkpoint names them
EXAMPLES = """examples:
  flowkit train configs/checkerboard.yaml --out runs/checkerboard
  flowkit train configs/digits.yaml --set train.steps=2000 --set optim.lr=1e-3
  flowkit train configs/digits.yaml --out runs/digits --resume      # continue a killed run
  torchrun --standalone --nproc_per_node=2 -m flowkit train configs/cifar10.yaml \\
      --set data.root=/data/cifar10/train --out runs/cifar10
Ctrl-C or SIGTERM finishes the current step, saves a checkpoint and prints the command
that resumes it (exit code 130 / 143). Checkpoints also come every train.checkpoint_every
steps and every train.checkpoint_minutes of wall time (default 10).
"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "train",
        help="train a model from a YAML config",
        description="Train a flow (or diffusion) model. Writes RUN/config.yaml, "
        "RUN/metrics.jsonl, RUN/checkpoints/, RUN/samples/*.png and RUN/pipeline/ (the EMA "
        "model as a diffusers pipeline).",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("config", help="a YAML preset, e.g. configs/digits.yaml")
    parser.add_argument("--out", help="run directory (default: runs/<config name>)")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config key, e.g. optim.lr=1e-3",
    )
    parser.add_argument(
        "--resume", action="store_true", help="continue from the run directory's latest checkpoint"
    )
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    out = Path(args.out) if args.out else Path("runs") / Path(args.config).stem
    trainer = None
    try:
        from flowkit.training import Trainer, load_config

        config = load_config(args.config, args.overrides)
        trainer = Trainer(config, out, resume=args.resume, progress=not args.no_progress)
        model_dir = trainer.fit()
    except KeyboardInterrupt as interrupt:
        return _interrupted(args, out, trainer, interrupt)
    from flowkit.distributed import shutdown_and_exit

    if trainer.dist.is_main:
        print(f"trained {trainer.step} steps; model saved to {model_dir}")
    shutdown_and_exit(0)
    return 0


def _interrupted(args: argparse.Namespace, out: Path, trainer, interrupt: KeyboardInterrupt) -> int:
    """One line saying where the work is and the command that continues it; exit code
    ``128 + signal`` (130 for Ctrl-C, 143 for SIGTERM)."""
    code = getattr(interrupt, "exit_code", 130)
    checkpoint = getattr(interrupt, "checkpoint", None)  # a clean stop after a whole step
    latest = _latest_checkpoint(out)
    if checkpoint is not None:
        where = f"interrupted at step {interrupt.step}; checkpoint saved to {checkpoint}"
    elif latest is not None:
        step = int(latest.name[len(PREFIX) :])
        where = f"interrupted; the last checkpoint is {latest} (step {step})"
    else:
        where = "interrupted before the first checkpoint"
    ranks, rank = (
        (trainer.dist.world_size, trainer.dist.rank)
        if trainer is not None
        else (int(os.environ.get("WORLD_SIZE", "1")), int(os.environ.get("RANK", "0")))
    )
    if rank == 0:
        again = "resume with" if latest is not None else "start again with"
        command = _command(args, out, ranks, resume=latest is not None)
        print(f"flowkit train: {where}; {again}: {command}", file=sys.stderr, flush=True)
    if checkpoint is not None:  # every rank stopped at this same step: leave together
        from flowkit.distributed import shutdown_and_exit

        shutdown_and_exit(code)
    return code


def _latest_checkpoint(out: Path) -> Path | None:
    """The newest complete ``RUN/checkpoints/step-*`` folder (found without torch)."""
    found = [
        path
        for path in (out / "checkpoints").glob(f"{PREFIX}*")
        if path.is_dir() and path.name[len(PREFIX) :].isdigit()
    ]
    return max(found, key=lambda path: int(path.name[len(PREFIX) :]), default=None)


def _command(args: argparse.Namespace, out: Path, ranks: int, resume: bool) -> str:
    """The command that continues this run: the same config and overrides."""
    words = ["train", args.config, "--out", str(out)]
    for override in args.overrides:
        words += ["--set", override]
    words += ["--resume"] if resume else []
    if ranks > 1:
        return f"torchrun [the same options, {ranks} processes] -m flowkit {shlex.join(words)}"
    return f"flowkit {shlex.join(words)}"
