"""``flowkit train CONFIG``: train a model from a YAML preset."""

from __future__ import annotations

import argparse
from pathlib import Path

EXAMPLES = """examples:
  flowkit train configs/checkerboard.yaml --out runs/checkerboard
  flowkit train configs/digits.yaml --set train.steps=2000 --set optim.lr=1e-3
  flowkit train configs/digits.yaml --out runs/digits --resume      # continue a killed run
  torchrun --standalone --nproc_per_node=2 -m flowkit train configs/cifar10.yaml \\
      --set data.root=/data/cifar10/train --out runs/cifar10
"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "train",
        help="train a model from a YAML config",
        description="Train a flow (or diffusion) model. Writes RUN/config.yaml, "
        "RUN/metrics.jsonl, RUN/checkpoints/, RUN/samples/*.png and RUN/model/.",
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
    from flowkit.training import Trainer, load_config
    from flowkit.training.distributed import shutdown_and_exit

    config = load_config(args.config, args.overrides)
    out = Path(args.out) if args.out else Path("runs") / Path(args.config).stem
    trainer = Trainer(config, out, resume=args.resume, progress=not args.no_progress)
    model_dir = trainer.fit()
    if trainer.dist.is_main:
        print(f"trained {trainer.step} steps; model saved to {model_dir}")
    shutdown_and_exit(0)
    return 0
