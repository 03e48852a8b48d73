"""``flowkit train CONFIG``: train a model from a YAML preset."""

from __future__ import annotations

import argparse

from flowkit.cli.run_command import add_run_arguments, report_interrupt, run_dir

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
    add_run_arguments(parser, "configs/digits.yaml", "optim.lr=1e-3")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    out = run_dir(args)
    trainer = None
    try:
        from flowkit.training import Trainer, load_config

        config = load_config(args.config, args.overrides)
        trainer = Trainer(config, out, resume=args.resume, progress=not args.no_progress)
        model_dir = trainer.fit()
    except KeyboardInterrupt as interrupt:
        return report_interrupt("train", args, out, interrupt, getattr(trainer, "dist", None))
    from flowkit.distributed import shutdown_and_exit

    if trainer.dist.is_main:
        print(f"trained {trainer.step} steps; model saved to {model_dir}")
    shutdown_and_exit(0)
    return 0
