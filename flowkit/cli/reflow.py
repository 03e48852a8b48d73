"""``flowkit reflow MODEL --num N --out DIR``: generate a teacher's (noise, sample) pairs."""

from __future__ import annotations

import argparse
import json
import time

EXAMPLES = """examples:
  flowkit reflow runs/digits --num 20000 --out pairs/digits            # dopri5, rtol=atol=1e-5
  flowkit reflow runs/digits --num 20000 --out pairs/digits_rk4 --method rk4 --nfe 40
  flowkit reflow runs/cifar10 --num 1000000 --out pairs/cifar10 --dtype float16
  flowkit reflow ddpm-pipeline/ --method ddim --nfe 50 --num 50000 --out pairs/ddpm
  torchrun --standalone --nproc_per_node=8 -m flowkit reflow runs/cifar10 \\
      -n 1000000 --out pairs/cifar10 --batch-size 1000             # same pairs as 1 process
Rerun the same command after an interruption: finished shards are kept, the rest written.
"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    from flowkit.reflow.layout import STORAGE_DTYPES
    from flowkit.solvers.names import GRIDS, ODE_METHODS

    parser = sub.add_parser(
        "reflow",
        help="generate a teacher's (noise, sample) pairs for reflow",
        description="Integrate MODEL's ODE from seeded noise and store (x0, x1) pairs in "
        "DIR/pairs-*.safetensors with DIR/manifest.json (teacher, solver, seed, counts, "
        "checksums). Pair i starts from noise seeded by (--seed, i) alone, so the set does not "
        "depend on the number of processes or on restarts. MODEL is a flowkit run, pipeline "
        "or model directory, or a diffusers DDPM/DDIM/flow-matching pipeline directory.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("model", help="the teacher: a run, pipeline or diffusers directory")
    parser.add_argument(
        "--num",
        "-n",
        type=int,
        required=True,
        help="number of pairs (under torchrun write -n: torchrun reads --num as its --numa-*)",
    )
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument(
        "--method",
        default="dopri5",
        choices=ODE_METHODS,
        help="ODE solver (default dopri5: adaptive, the authors' practice)",
    )
    parser.add_argument("--nfe", type=int, default=None, help="fixed-step methods' budget")
    parser.add_argument("--grid", default="uniform", choices=GRIDS, help="fixed-step grid")
    parser.add_argument("--rtol", type=float, default=1e-5, help="adaptive methods")
    parser.add_argument("--atol", type=float, default=1e-5, help="adaptive methods")
    parser.add_argument("--seed", type=int, default=0, help="base noise seed (default 0)")
    parser.add_argument("--batch-size", type=int, default=256, help="teacher batch (256)")
    parser.add_argument("--shard-size", type=int, default=8192, help="pairs per shard (8192)")
    parser.add_argument(
        "--dtype", default="float32", choices=STORAGE_DTYPES, help="storage dtype (float32)"
    )
    parser.add_argument("--device", default="auto", help="'auto', 'cpu' or 'cuda[:k]'")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from flowkit.distributed import init_distributed, shutdown_and_exit
    from flowkit.reflow import SolverSpec, generate_pairs, load_teacher
    from flowkit.solvers.ode import ADAPTIVE_METHODS

    if args.method not in ADAPTIVE_METHODS and args.nfe is None:
        raise ValueError(f"--method {args.method} is fixed-step: pass --nfe (e.g. --nfe 40)")
    dist = init_distributed(args.device)
    teacher = load_teacher(args.model).to(dist.device)
    solver = SolverSpec(args.method, args.nfe, args.grid, args.rtol, args.atol)
    tic = time.perf_counter()
    manifest = generate_pairs(
        teacher,
        args.num,
        args.out,
        solver,
        seed=args.seed,
        batch_size=args.batch_size,
        shard_size=args.shard_size,
        dtype=args.dtype,
        progress=not args.no_progress,
    )
    if dist.is_main:
        report = {
            "out": args.out,
            "num": manifest.num,
            "shards": len(manifest.shards),
            "nfe_per_pair": manifest.nfe_per_pair,
            "seconds": round(time.perf_counter() - tic, 2),
        }
        print(json.dumps(report))
    shutdown_and_exit(0)
    return 0
