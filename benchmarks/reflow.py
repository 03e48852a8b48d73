"""Reflow costs: pair generation against the teacher's bare forward passes, and minibatch OT
couplings against POT and torchcfm.

1. Pair generation. ``flowkit.reflow.generate_pairs`` (float32 shards written to a temporary
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

2. Minibatch OT on 3072-dimensional data (CIFAR-sized): ``x0`` standard normal, ``x1`` from a
   fixed mixture of 10 Gaussians (centres drawn N(0, I), component std 0.5). Every method
   computes its own cost matrix (inside the timing):

       flowkit exact          MinibatchOT("exact"): scipy linear_sum_assignment
       flowkit exact (pot)    MinibatchOT("exact", backend="pot"): ot.emd, then the permutation
       flowkit sinkhorn       MinibatchOT("sinkhorn", reg=--reg): entropic plan + perturb-and-MAP
       POT emd (bare)         ot.dist + ot.emd(a, a, M) (POT defaults) + argmax of each column
       torchcfm exact         OTPlanSampler("exact").sample_plan(x0, x1) (samples the plan
                              with replacement)
       cost matrix only       flowkit's squared_distances alone (the part of every
                              flowkit row that is not the solver; no pairing)
       independent            the pairing as given (a cost reference, not timed)

   The table gives the median seconds over interleaved rounds, the time relative to flowkit
   exact, the transport cost of the pairing returned (mean squared distance of the pairs)
   relative to flowkit exact's (the optimum), how many x0 / x1 rows the returned batch
   repeats, and whether the solver warned that it stopped early (numItermax reached).

Every round runs each method once in a shuffled order, so machine noise hits all alike;
tables show medians. Torch, BLAS and OpenMP are limited to ``--threads`` threads.

    python benchmarks/reflow.py                          # full run (about 5 min on 2 idle cores)
    python benchmarks/reflow.py --quick                  # NFE 4, OT up to batch 1024
    python benchmarks/reflow.py --max-batch 1024 --threads 2
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
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import ot
import scipy
import torch
import torchcfm
from safetensors.torch import load_file
from threadpoolctl import threadpool_limits
from torch import Tensor
from torchcfm.optimal_transport import OTPlanSampler

from flowkit.couplings import MinibatchOT
from flowkit.couplings.minibatch_ot import squared_distances
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
OT_REPS = {128: 21, 256: 15, 512: 9, 1024: 5, 2048: 3, 4096: 3}
DIM = 3072


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


def ot_batch(n: int, seed: int) -> tuple[Tensor, Tensor]:
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(10, DIM, generator=g)
    x1 = centres[torch.randint(10, (n,), generator=g)] + 0.5 * torch.randn(n, DIM, generator=g)
    return torch.randn(n, DIM, generator=g), x1


def bare_pot(x0: Tensor, x1: Tensor) -> tuple[Tensor, Tensor]:
    a, b = x0.double().numpy(), x1.double().numpy()
    weights = np.full(len(a), 1.0 / len(a))
    plan = ot.emd(weights, weights, ot.dist(a, b))  # ot.dist: squared Euclidean
    return x0[torch.from_numpy(plan.argmax(axis=0))], x1


def ot_methods(reg: float) -> dict[str, Callable[[Tensor, Tensor], tuple[Tensor, ...]]]:
    cfm = OTPlanSampler(method="exact")
    return {
        "flowkit exact": MinibatchOT("exact"),
        "flowkit exact (pot)": MinibatchOT("exact", backend="pot"),
        f"flowkit sinkhorn reg={reg:g}": MinibatchOT("sinkhorn", reg=reg),
        "POT emd (bare)": bare_pot,
        "torchcfm exact": cfm.sample_plan,
        "cost matrix only": lambda x0, x1: (squared_distances(x0, x1), x1),
    }


def duplicates(x: Tensor) -> int:
    """Rows of ``x`` that repeat an earlier row (by a random projection: the rows are
    continuous draws, so distinct rows never collide)."""
    key = x.double() @ torch.randn(x.shape[1], dtype=torch.float64)
    return x.shape[0] - torch.unique(key).numel()


def measure_ot(n: int, reps: int, reg: float, seed: int) -> list[dict]:
    x0, x1 = ot_batch(n, seed)
    methods = ot_methods(reg)
    torch.manual_seed(seed)
    np.random.seed(seed)
    rng = random.Random(seed)
    times: dict[str, list[float]] = {m: [] for m in methods}
    outputs: dict[str, tuple[Tensor, ...]] = {}
    early: dict[str, bool] = dict.fromkeys(methods, False)
    for r in range(reps + (1 if n <= 1024 else 0)):  # an untimed warm-up round when cheap
        order = list(methods)
        rng.shuffle(order)
        for m in order:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                tic = time.perf_counter()
                out = methods[m](x0, x1)
                elapsed = time.perf_counter() - tic
            early[m] |= any("numItermax" in str(w.message) for w in caught)
            outputs.setdefault(m, out)
            if r > 0 or n > 1024:
                times[m].append(elapsed)
    outputs["cost matrix only"] = (x0, x1)  # no pairing: its cost and duplicates are the input's
    cost = {m: ((a - b) ** 2).sum(1).mean().item() for m, (a, b, *_) in outputs.items()}
    best = cost["flowkit exact"]
    rows = [
        dict(
            batch=n,
            method=m,
            reps=reps,
            med=statistics.median(times[m]),
            cost=cost[m] / best,
            dup0=duplicates(outputs[m][0]),
            dup1=duplicates(outputs[m][1]),
            early=early[m],
        )
        for m in methods
    ]
    independent = ((x0 - x1) ** 2).sum(1).mean().item() / best
    rows.append(
        dict(
            batch=n,
            method="independent",
            reps=0,
            med=None,
            cost=independent,
            dup0=0,
            dup1=0,
            early=False,
        )
    )
    for row in rows:
        med = "-" if row["med"] is None else f"{row['med']:.4f} s"
        print(f"OT batch {n} {row['method']:28s} {med:>12s} cost x{row['cost']:.5f}", flush=True)
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


def ot_table(rows: list[dict]) -> list[str]:
    lines = [
        "| batch | method | rounds | median s | time / flowkit exact | cost / flowkit exact "
        "| dup. x0 rows | dup. x1 rows | early stop |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    exact = {r["batch"]: r["med"] for r in rows if r["method"] == "flowkit exact"}
    for r in rows:
        med = r["med"]
        seconds = "-" if med is None else f"{med:.4g}"
        ratio = "-" if med is None else f"{med / exact[r['batch']]:.3f}"
        rounds = "-" if med is None else r["reps"]
        lines.append(
            f"| {r['batch']} | {r['method']} | {rounds} | {seconds} | {ratio} | {r['cost']:.5f} "
            f"| {r['dup0']} | {r['dup1']} | {'yes' if r['early'] else 'no'} |"
        )
    return lines


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--teachers", nargs="+", default=list(TEACHERS), choices=list(TEACHERS))
    parser.add_argument("--nfes", nargs="+", type=int, default=[4, 32])
    parser.add_argument("--seconds", type=float, default=3.0, help="target seconds of a bare run")
    parser.add_argument("--rounds", type=int, default=5, help="rounds of pair generation")
    parser.add_argument("--batches", nargs="+", type=int, default=[128, 256, 1024, 4096])
    parser.add_argument("--max-batch", type=int, default=4096, help="largest OT batch to run")
    parser.add_argument("--reg", type=float, default=0.05, help="Sinkhorn reg (normalised cost)")
    parser.add_argument("--skip", choices=["pairs", "ot"], help="leave one part out")
    parser.add_argument("--quick", action="store_true", help="NFE 4, 2 rounds, OT batch <= 1024")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="benchmarks/results/reflow.md")
    args = parser.parse_args()
    if args.quick:
        args.nfes, args.rounds, args.seconds = [4], 2, 2.0
        args.max_batch = min(args.max_batch, 1024)
    torch.set_num_threads(args.threads)
    tic = time.perf_counter()
    pair_rows: list[dict] = []
    ot_rows: list[dict] = []
    with threadpool_limits(limits=args.threads):
        if args.skip != "pairs":
            for case in args.teachers:
                pair_rows += measure_pairs(case, args.nfes, args.seconds, args.rounds, args.seed)
        if args.skip != "ot":
            for n in (b for b in args.batches if b <= args.max_batch):
                reps = OT_REPS.get(n, 3) if not args.quick else max(2, OT_REPS.get(n, 3) // 2)
                ot_rows += measure_ot(n, reps, args.reg, args.seed)
    total = time.perf_counter() - tic
    command = shlex.join(["python", "benchmarks/reflow.py", *sys.argv[1:]])
    lines = [
        "# Reflow: pair generation vs bare forward passes; minibatch OT vs POT and torchcfm",
        "",
        f"Machine: a {os.cpu_count()}-core CPU ({cpu_name()}), shared with other jobs; "
        f"{torch.get_num_threads()} torch thread(s), BLAS limited to {args.threads}; "
        f"torch {torch.__version__}, POT {ot.__version__}, torchcfm {torchcfm.__version__}, "
        f"scipy {scipy.__version__}, numpy {np.__version__}; python {platform.python_version()}.",
        f"Command: `{command}` ({total / 60:.1f} min).",
    ]
    if pair_rows:
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
    if ot_rows:
        lines += [
            "",
            f"## Minibatch OT on {DIM}-dimensional data",
            "",
            "x0 standard normal, x1 a fixed 10-component Gaussian mixture (std 0.5). Each row is "
            "one coupling of the same batch, cost matrix included: `flowkit exact` = "
            '`MinibatchOT("exact")` (scipy `linear_sum_assignment`), `(pot)` = its POT '
            f'`ot.emd` backend, `flowkit sinkhorn` = `MinibatchOT("sinkhorn", reg={args.reg:g})`'
            ", `POT emd (bare)` = `ot.dist` + `ot.emd` with POT's defaults + argmax per column, "
            '`torchcfm exact` = `OTPlanSampler("exact").sample_plan` (draws pairs from the plan '
            "with replacement), `cost matrix only` = flowkit's `squared_distances` "
            "(float32 product, float64 result) "
            "alone (no pairing: its cost column is the input's), `independent` = the batch as "
            "given (cost reference, untimed). "
            "Median seconds over interleaved rounds (an untimed warm-up round for batch <= 1024); "
            "`cost` = mean squared distance of the returned pairs over flowkit exact's (the "
            "optimum: 1.00000; above it = a worse pairing); `dup.` = rows of the returned "
            "x0 / x1 that repeat another (0 for a permutation); `early stop` = the solver warned "
            "that it hit numItermax and returned a non-optimal plan. torchcfm's cost can fall "
            "below 1 only because it repeats some pairs of the optimal plan and drops others "
            "(it is not a permutation of the batch), not because it pairs better.",
            "",
            *ot_table(ot_rows),
        ]
    text = "\n".join(lines) + "\n"
    print(text)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(out)


if __name__ == "__main__":
    main()
