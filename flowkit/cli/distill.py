"""``flowkit distill CONFIG``: distil a teacher into a one-step generator (f-distill)."""

from __future__ import annotations

import argparse

from flowkit.cli.run_command import add_run_arguments, report_interrupt, run_dir

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
    add_run_arguments(parser, "configs/distill_gaussians.yaml", "distill.divergence=js")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    out = run_dir(args)
    trainer = None
    try:
        from flowkit.distill import DistillConfig, DistillTrainer
        from flowkit.training import load_config

        config = load_config(args.config, args.overrides, schema=DistillConfig)
        trainer = DistillTrainer(config, out, resume=args.resume, progress=not args.no_progress)
        model_dir = trainer.fit()
    except KeyboardInterrupt as interrupt:
        return report_interrupt("distill", args, out, interrupt, getattr(trainer, "dist", None))
    from flowkit.distributed import shutdown_and_exit

    if trainer.dist.is_main:
        print(f"distilled {trainer.step} steps; one-step generator saved to {model_dir}")
    shutdown_and_exit(0)  # under torchrun: leave together (a no-op in one process)
    return 0
