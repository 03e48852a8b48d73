"""Reflow cost: pair generation against the teacher's bare forward passes (minibatch OT
couplings are measured by ``benchmarks/minibatch_ot.py``).

Pair generation. ``flowkit.reflow.generate_pairs`` (float32 shards written to a temporary
   directory, fixed-step Euler at ``NFE`` evaluations, seeded per-sample noise, manifest,
   checksums; ``progress=False``) against a bare loop of the same forward passes: one batch
   of noise drawn once, then for every batch ``x = x + h * model(x, t_k)`` for ``k < NFE``,
   over the same number of pairs at the same batch size, and nothing else. The teachers are
   ``unet("tiny")`` on 1x8x8 (digits-sized) and ``unet("small", in_channels=3,
   out_channels=3)`` on 3x32x32 (CIFAR-sized). The number of pairs is sized from a timed
   forward pass so that one bare run takes about ``--seconds``. A third timed job,
   ``flowkit.solvers.seeded_noise`` alone over the same pairs (counter-based, vectorised over
   the batch), shows how much of flowkit's time goes to the noise; "other" is what remains of
   flowkit's time above the bare loop and the noise (ODE wrapper, shard write, checksums;
   negative when it is below the measurement noise). Before timing, the first shard's pairs
   are checked against the bare loop run on the same noise.

Every round runs each job once in a shuffled order, so machine noise hits all alike;
tables show medians. Torch, BLAS and OpenMP are limited to ``--threads`` threads.

    python benchmarks/reflow.py                          # both teachers, NFE 4 and 32
    python benchmarks/reflow.py --quick                  # NFE 4, 2 rounds
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import shlex
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from bench_common import cpu_name, write_result
from safetensors.torch import load_file
from threadpoolctl import threadpool_limits
from torch import Tensor

from flowkit.models import unet
from flowkit.paths import rectified
from flowkit.reflow import LoadedTeacher, SolverSpec, generate_pairs
from flowkit.solvers import seeded_noise

# name -> (description, preset, overrides, sample shape, batch size)
TEACHERS = {
    "tiny": ('unet("tiny"), 1x8x8', "tiny", {}, (1, 8, 8), 256),
    "small": (
        'unet("small", in/out_channels=3), 3x32x32',
        "small",
        {"in_channels": 3, "out_channels": 3},
        (3, 32, 32),
        16,
    ),
}


def median_time(fn: Callable[[], object], rounds: int = 3) -> float:
    times = []
    for _ in range(rounds):
        tic = time.perf_counter()
        fn()
        times.append(time.perf_counter() - tic)
    return statistics.median(times)


def measure_pairs(case: str, nfes: list[int], seconds: float, rounds: int, seed: int) -> list[dict]:
    desc, preset, overrides, shape, batch = TEACHERS[case]
    torch.manual_seed(seed)
    model = unet(preset, **overrides).eval()
    teacher = LoadedTeacher(
        field=model,
        path=rectified(),
        prediction=model.prediction,
        sample_shape=shape,
        num_classes=None,
        source=f"benchmark:{case}",
        kind="flowkit",
    )
    x_bare = torch.randn(batch, *shape, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        forward = median_time(lambda: model(x_bare, torch.full((batch,), 0.5)))
    rows, rng = [], random.Random(seed)
    for nfe in nfes:
        batches = max(1, round(seconds / (nfe * forward)))
        num = batches * batch
        spec = SolverSpec(method="euler", nfe=nfe)

        @torch.no_grad()
        def euler(x: Tensor, nfe: int = nfe) -> Tensor:
            for k in range(nfe):
                x = x + (1.0 / nfe) * model(x, torch.full((x.shape[0],), k / nfe))
            return x

        def bare(batches: int = batches) -> None:
            for _ in range(batches):
                euler(x_bare)

        def flowkit(num: int = num, spec: SolverSpec = spec) -> None:
            with tempfile.TemporaryDirectory() as out:
                generate_pairs(teacher, num, out, spec, batch_size=batch, progress=False)

        def noise(num: int = num) -> None:
            for lo in range(0, num, batch):
                seeded_noise(shape, range(lo, min(lo + batch, num)), seed)

        with tempfile.TemporaryDirectory() as out:  # warm-up and agreement check
            manifest = generate_pairs(teacher, batch, out, spec, batch_size=batch, progress=False)
            pairs = load_file(str(Path(out) / manifest.shard_file(0)))
        worst = (pairs["x1"] - euler(pairs["x0"])).abs().max().item()
        if worst > 1e-4 * max(1.0, pairs["x1"].abs().max().item()):
            raise AssertionError(f"{case} NFE {nfe}: generate_pairs and bare differ by {worst:.3g}")
        jobs = {"bare": bare, "flowkit": flowkit, "noise": noise}
        times: dict[str, list[float]] = {m: [] for m in jobs}
        for _ in range(rounds):
            order = list(jobs)
            rng.shuffle(order)
            for m in order:
                tic = time.perf_counter()
                jobs[m]()
                times[m].append(time.perf_counter() - tic)
        med = {m: statistics.median(v) for m, v in times.items()}
        row = dict(case=desc, nfe=nfe, batch=batch, num=num, rounds=rounds, med=med)
        rows.append(row)
        print(
            f"{desc} NFE {nfe}: {num} pairs, bare {num / med['bare']:.1f} pairs/s, flowkit "
            f"{num / med['flowkit']:.1f} pairs/s, noise {med['noise'] * 1e3:.1f} ms",
            flush=True,
        )
    return rows


def pair_table(rows: list[dict]) -> list[str]:
    lines = [
        "| teacher | NFE | batch | pairs | rounds | bare pairs/s | flowkit pairs/s "
        "| flowkit / bare | noise share | other share |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        med, n = r["med"], r["num"]
        noise, other = (
            med["noise"] / med["flowkit"],
            1 - (med["bare"] + med["noise"]) / med["flowkit"],
        )
        lines.append(
            f"| {r['case']} | {r['nfe']} | {r['batch']} | {n} | {r['rounds']} "
            f"| {n / med['bare']:.1f} | {n / med['flowkit']:.1f} "
            f"| {med['bare'] / med['flowkit']:.3f} "
            f"| {100 * noise:.1f}% | {100 * other:.1f}% |"
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--teachers", nargs="+", default=list(TEACHERS), choices=list(TEACHERS))
    parser.add_argument("--nfes", nargs="+", type=int, default=[4, 32])
    parser.add_argument("--seconds", type=float, default=3.0, help="target seconds of a bare run")
    parser.add_argument("--rounds", type=int, default=5, help="rounds of pair generation")
    parser.add_argument("--quick", action="store_true", help="NFE 4, 2 rounds")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="benchmarks/results/reflow.md")
    args = parser.parse_args()
    if args.quick:
        args.nfes, args.rounds, args.seconds = [4], 2, 2.0
    torch.set_num_threads(args.threads)
    tic = time.perf_counter()
    pair_rows: list[dict] = []
    with threadpool_limits(limits=args.threads):
        for case in args.teachers:
            pair_rows += measure_pairs(case, args.nfes, args.seconds, args.rounds, args.seed)
    total = time.perf_counter() - tic
    command = shlex.join(["python", "benchmarks/reflow.py", *sys.argv[1:]])
    lines = [
        "# Reflow: pair generation vs bare forward passes",
        "",
        f"Machine: a {os.cpu_count()}-core CPU ({cpu_name()}), shared with other jobs; "
        f"{torch.get_num_threads()} torch thread(s), BLAS limited to {args.threads}; "
        f"torch {torch.__version__}, numpy {np.__version__}; python {platform.python_version()}.",
        f"Command: `{command}` ({total / 60:.1f} min).",
    ]
    lines += [
        "",
        "## Pair generation (fixed-step Euler, float32 shards)",
        "",
        "`flowkit` = `generate_pairs` into a temporary directory (noise, ODE, shard write, "
        "manifest, checksums); `bare` = the same forward passes and Euler updates on one "
        "pre-drawn batch, nothing else. Pairs/s from the median over interleaved rounds; "
        "`flowkit / bare` is the throughput ratio (target >= 0.9). `noise share` is the "
        "time of `seeded_noise` alone for the same pairs, as a share of flowkit's time; "
        "`other share` is the rest of flowkit's time above the bare loop and the noise "
        "(within the noise of the machine when near 0).",
        "",
        *pair_table(pair_rows),
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    write_result(args.out, text)


if __name__ == "__main__":
    main()
