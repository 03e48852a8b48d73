"""``flowkit distill CONFIG``: distil a teacher into a one-step generator (f-distill)."""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from pathlib import Path

from flowkit.cli.train import PREFIX, _latest_checkpoint

EXAMPLES = """examples:
  flowkit train configs/gaussians.yaml --out runs/gaussians          # the teacher
  flowkit distill configs/distill_gaussians.yaml --out runs/distill_gaussians
  flowkit distill configs/distill_gaussians.yaml --set distill.divergence=forward_kl
  flowkit distill configs/distill_digits.yaml --set teacher.source=runs/digits --resume
  flowkit sample runs/distill_gaussians --nfe 1 --num 2000 --out samples.png
divergences: reverse_kl, softened_rkl, js, squared_hellinger, forward_kl, jeffreys.
Ctrl-C or SIGTERM finishes the current step, saves a checkpoint and prints the command
that resumes it (exit code 130 / 143).
"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "distill",
        help="distil a teacher into a one-step generator (f-divergence matching)",
        description="Train a one-step generator by f-divergence distribution matching "
        "(f-distill) against a frozen teacher (a flowkit run or a diffusers pipeline "
        "directory). Writes RUN/config.yaml, RUN/metrics.jsonl, RUN/checkpoints/, "
        "RUN/samples/*.png and RUN/pipeline/ (a OneStepPipeline: flowkit sample RUN --nfe 1).",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("config", help="a YAML preset, e.g. configs/distill_gaussians.yaml")
    parser.add_argument("--out", help="run directory (default: runs/<config name>)")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config key, e.g. distill.divergence=js",
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
        from flowkit.distill import DistillConfig, DistillTrainer
        from flowkit.training import load_config

        config = load_config(args.config, args.overrides, schema=DistillConfig)
        trainer = DistillTrainer(config, out, resume=args.resume, progress=not args.no_progress)
        model_dir = trainer.fit()
    except KeyboardInterrupt as interrupt:
        return _interrupted(args, out, trainer, interrupt)
    from flowkit.distributed import shutdown_and_exit

    if trainer.dist.is_main:
        print(f"distilled {trainer.step} steps; one-step generator saved to {model_dir}")
    shutdown_and_exit(0)  # under torchrun: leave together (a no-op in one process)
    return 0


def _interrupted(args: argparse.Namespace, out: Path, trainer, interrupt: KeyboardInterrupt) -> int:
    """Where the work is and the command that continues it; exit code ``128 + signal``."""
    code = getattr(interrupt, "exit_code", 130)
    checkpoint = getattr(interrupt, "checkpoint", None)
    latest = _latest_checkpoint(out)
    if checkpoint is not None:
        where = f"interrupted at step {interrupt.step}; checkpoint saved to {checkpoint}"
    elif latest is not None:
        where = f"interrupted; the last checkpoint is {latest} (step {latest.name[len(PREFIX) :]})"
    else:
        where = "interrupted before the first checkpoint"
    rank = trainer.dist.rank if trainer is not None else int(os.environ.get("RANK", "0"))
    if rank == 0:
        words = ["distill", args.config, "--out", str(out)]
        for override in args.overrides:
            words += ["--set", override]
        words += ["--resume"] if latest is not None else []
        again = "resume with" if latest is not None else "start again with"
        print(f"flowkit distill: {where}; {again}: flowkit {shlex.join(words)}",
              file=sys.stderr, flush=True)  # fmt: skip
    if checkpoint is not None:  # every rank stopped at this same step: leave together
        from flowkit.distributed import shutdown_and_exit

        shutdown_and_exit(code)
    return code
