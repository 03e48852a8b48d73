"""The ``flowkit`` command: one sub-command per job."""

from __future__ import annotations

import argparse
import os
import sys

from flowkit import __version__
from flowkit.cli import distill as distill_command
from flowkit.cli import evaluate as evaluate_commands
from flowkit.cli import reflow as reflow_command
from flowkit.cli import reinflow as reinflow_command
from flowkit.cli import sample as sample_command
from flowkit.cli import train as train_command
from flowkit.files import FlowkitError, write_hint

COMMANDS = [
    train_command,
    sample_command,
    reflow_command,
    evaluate_commands,
    distill_command,
    reinflow_command,
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="flowkit",
        description="Rectified flow, flow matching and diffusion: train, sample, evaluate.",
        epilog=(
            "examples:\n"
            "  flowkit train configs/digits.yaml --out runs/digits\n"
            "  flowkit sample runs/digits --nfe 4 --num 64 --out digits.png\n"
            "  flowkit reflow runs/digits --num 20000 --out pairs/digits\n"
            "  flowkit stats digits --out refs/digits.npz\n"
            "  flowkit fid runs/digits --nfe 4 --num 2000 --ref refs/digits.npz\n"
            "  flowkit distill configs/distill_gaussians.yaml --out runs/distill_gaussians\n"
            "  flowkit reinflow configs/reinflow_pendulum.yaml --out runs/reinflow_pendulum\n"
            "run 'flowkit COMMAND --help' for each command's options."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"flowkit {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in COMMANDS:
        module.add_parser(sub)
    return parser


# What an interrupted command leaves behind, and how to continue. ``flowkit train`` prints
# its own line (the step, the checkpoint and the resume command); this is its fallback.
INTERRUPTED = {
    "train": "the last checkpoint is kept; continue with the same command and --resume",
    "reflow": "completed shards are kept; run the same command again to continue",
    "distill": "the last checkpoint is kept; continue with the same command and --resume",
    "reinflow": "the last checkpoint is kept; continue with the same command and --resume",
}
NOTHING_HALF_WRITTEN = "nothing half-written was left; run the same command again"


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.run(args) or 0)
    except (FlowkitError, ValueError, OSError, ImportError) as error:
        print(f"flowkit {args.command}: error: {describe(error)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as interrupt:  # Ctrl-C: one line, no traceback
        if os.environ.get("RANK", "0") == "0":  # under torchrun, one line, not one per rank
            hint = INTERRUPTED.get(args.command, NOTHING_HALF_WRITTEN)
            print(f"flowkit {args.command}: interrupted; {hint}", file=sys.stderr)
        return int(getattr(interrupt, "exit_code", 130))


def describe(error: BaseException) -> str:
    """One line for the user: the message, and for a bare operating-system error the file
    and what to do."""
    if isinstance(error, OSError) and not isinstance(error, FlowkitError) and error.strerror:
        where = f" ({error.filename!r})" if error.filename else ""
        return f"{error.strerror}{where}; {write_hint(error)}"
    return " ".join(str(error).split()) or type(error).__name__


if __name__ == "__main__":
    raise SystemExit(main())
