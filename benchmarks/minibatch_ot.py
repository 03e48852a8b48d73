"""Minibatch OT (exact assignment) on 3072-dimensional data: flowkit's backends against scipy,
POT and torchcfm, and the torch auction's time and gap to the optimum.

``x0`` standard normal, ``x1`` a fixed mixture of 10 Gaussians (centres N(0, I), std 0.5),
batch ``B`` of each. Every method computes its own cost matrix inside the timing:

    flowkit exact (auto)     MinibatchOT("exact"): float32 cost, LAPJV (lap.lapjv) if installed
    flowkit exact (scipy)    MinibatchOT("exact", backend="scipy")
    flowkit auction          MinibatchOT("auction"): torch epsilon-scaling auction (this CPU)
    scipy LSA (bare)         torch.cdist(x0, x1) ** 2 then scipy linear_sum_assignment
    POT emd (bare, float32)  ot.dist + ot.emd on float32 arrays (POT defaults) + argmax
    torchcfm exact           OTPlanSampler("exact").sample_plan (if torchcfm is installed)
    cost matrix only         flowkit's squared_distances in float32 (no pairing)

Rounds are interleaved (each round runs every method once, in a rotated order); the table
gives the median process CPU time (robust to other jobs on the machine; BLAS and torch are
limited to ``--threads``) and wall time, the CPU time relative to scipy LSA (bare), the
pairing's total cost over the optimum (flowkit exact's; 1 = optimal), rows of x0 repeated
(0 for a permutation) and, for the auction, its certified duality gap and a-priori bound as a
fraction of the optimal total cost.

    python benchmarks/minibatch_ot.py                                   # B = 256, 1024, 4096
    python benchmarks/minibatch_ot.py --batches 256 1024 --out benchmarks/results/ot.md
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import statistics
import sys
import time
import warnings

import numpy as np
import ot
import scipy
import torch
from bench_common import cpu_name, write_result
from scipy.optimize import linear_sum_assignment
from threadpoolctl import threadpool_limits

from flowkit.couplings import MinibatchOT
from flowkit.couplings.assignment import resolve_backend
from flowkit.couplings.minibatch_ot import squared_distances

DIM = 3072
ROUNDS = {256: 7, 1024: 3, 4096: 2}


def ot_batch(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(10, DIM, generator=g)
    x0 = torch.randn(n, DIM, generator=g)
    x1 = centres[torch.randint(0, 10, (n,), generator=g)] + 0.5 * torch.randn(n, DIM, generator=g)
    return x0, x1


def bare_scipy(x0, x1):
    cost = torch.cdist(x0, x1) ** 2
    rows, cols = linear_sum_assignment(cost.numpy())
    return x0[torch.as_tensor(rows[np.argsort(cols)])], x1


def bare_pot(x0, x1):
    a, b = x0.numpy(), x1.numpy()
    m = ot.dist(a, b)  # float32 in, float32 out
    w = np.full(len(a), 1.0 / len(a), dtype=np.float32)
    plan = ot.emd(w, w, m)
    return x0[torch.as_tensor(plan.argmax(0))], x1


def methods() -> dict:
    auction = MinibatchOT("auction")
    out = {
        "flowkit exact (auto)": MinibatchOT("exact"),
        "flowkit exact (scipy)": MinibatchOT("exact", backend="scipy"),
        "flowkit auction": auction,
        "scipy LSA (bare)": bare_scipy,
        "POT emd (bare, float32)": bare_pot,
        "cost matrix only": lambda x0, x1: (squared_distances(x0, x1, None), x1),
    }
    try:
        from torchcfm.optimal_transport import OTPlanSampler

        out["torchcfm exact"] = OTPlanSampler(method="exact").sample_plan
    except ImportError:
        pass
    return out


def duplicates(x: torch.Tensor) -> int:
    key = x.double() @ torch.randn(x.shape[1], dtype=torch.float64)
    return x.shape[0] - torch.unique(key).numel()


def measure(n: int, rounds: int, seed: int) -> list[dict]:
    x0, x1 = ot_batch(n, seed)
    fns = methods()
    names = list(fns)
    cpu = {m: [] for m in names}
    wall = {m: [] for m in names}
    outputs, early, auction = {}, dict.fromkeys(names, False), None
    for r in range(rounds):
        for m in names[r % len(names) :] + names[: r % len(names)]:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                t0, w0 = time.process_time(), time.perf_counter()
                out = fns[m](x0, x1)
                cpu[m].append(time.process_time() - t0)
                wall[m].append(time.perf_counter() - w0)
            early[m] |= any("numItermax" in str(w.message) for w in caught)
            outputs.setdefault(m, out)
            if m == "flowkit auction":
                auction = fns[m].last_auction
    outputs["cost matrix only"] = (x0, x1)
    total = {m: ((a.double() - b.double()) ** 2).sum().item() for m, (a, b, *_) in outputs.items()}
    best = total["flowkit exact (auto)"]
    base = statistics.median(cpu["scipy LSA (bare)"])
    rows = []
    for m in names:
        med = statistics.median(cpu[m])
        note = "stopped early (numItermax)" if early[m] else ""
        if m == "flowkit auction":
            note = (
                f"gap: true {total[m] / best - 1:.1e}, certified {auction.gap / best:.1e}, "
                f"bound {auction.bound / best:.1e}; {auction.rounds} rounds, "
                f"{auction.phases} phases"
            )
        if m == "cost matrix only":
            note = "no pairing (cost column = the input's)"
        rows.append(
            dict(
                batch=n,
                method=m,
                rounds=rounds,
                cpu=med,
                wall=statistics.median(wall[m]),
                speed=base / med,
                cost=total[m] / best,
                dup=duplicates(outputs[m][0]),
                note=note,
            )
        )
        print(
            f"B={n} {m:26s} cpu {med:8.3f} s  x{base / med:5.2f} vs scipy  "
            f"cost x{total[m] / best:.6f} {note}",
            flush=True,
        )
    return rows


def table(rows: list[dict]) -> list[str]:
    lines = [
        "| B | method | rounds | CPU s | wall s | speed-up vs scipy LSA | cost / optimum "
        "| dup. x0 rows | note |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['batch']} | {r['method']} | {r['rounds']} | {r['cpu']:.4g} | {r['wall']:.4g} "
            f"| {r['speed']:.2f}x | {r['cost']:.6f} | {r['dup']} | {r['note']} |"
        )
    return lines



def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--batches", nargs="+", type=int, default=[256, 1024, 4096])
    parser.add_argument("--rounds", type=int, default=None, help="rounds for every batch")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="benchmarks/results/ot.md")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    load = os.getloadavg()
    tic = time.perf_counter()
    rows = []
    with threadpool_limits(limits=args.threads):
        for n in args.batches:
            rows += measure(n, args.rounds or ROUNDS.get(n, 2), args.seed)
    minutes = (time.perf_counter() - tic) / 60
    try:
        import torchcfm

        cfm = f"torchcfm {torchcfm.__version__}"
    except ImportError:
        cfm = "torchcfm not installed (its row is absent)"
    try:
        import lap

        lap_version = f"lap {lap.__version__}"
    except ImportError:
        lap_version = "lap not installed"
    command = shlex.join(["python", "benchmarks/minibatch_ot.py", *sys.argv[1:]])
    lines = [
        f"# Minibatch OT on {DIM}-dimensional data: exact assignment and the torch auction",
        "",
        f"Machine: a {os.cpu_count()}-core CPU ({cpu_name()}), shared with other jobs (load "
        f"average {load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f} at the start, "
        f"{os.getloadavg()[0]:.2f} at the end); {args.threads} torch / BLAS thread(s); torch "
        f"{torch.__version__}, {lap_version}, scipy {scipy.__version__}, POT {ot.__version__}, "
        f"{cfm}, numpy {np.__version__}; python {platform.python_version()}. flowkit's "
        f"`auto` backend here: `{resolve_backend('auto')}`.",
        f"Command: `{command}` ({minutes:.1f} min).",
        "",
        "Medians over interleaved rounds of process CPU time (and wall time); `speed-up` = "
        "scipy LSA (bare) CPU time over the method's (goal for flowkit exact: >= 3x); `cost` = "
        "total squared distance of the returned pairs over the optimum (flowkit exact's); the "
        "auction's gaps are fractions of the optimal total cost (true = measured against the "
        "optimum, certified = its duality gap, bound = B * eps_final).",
        "",
        *table(rows),
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    write_result(args.out, text)


if __name__ == "__main__":
    main()
