"""Share of SDE sampling time spent making seeded per-sample noise.

``sample_sde(field, x, nfe=steps, method="euler_maruyama", seed=0)`` on ``batch`` samples
with a small ``MLPField`` (``hidden_dim=128``, default depth); every call of
:meth:`flowkit.solvers.PerSampleNoise.next` (the counter-based SplitMix64 words, the
float64 Box-Muller pair, the cast to the field's dtype) is timed inside the run. The share
is noise time / whole run time (median over rounds); a second line times the noise alone
(``steps`` draws of a fresh ``PerSampleNoise``) next to the bare field calls.

    python benchmarks/noise.py                                   # dim 2 and 64, 10k x 100
    python benchmarks/noise.py --dims 64 --batch 10000 --steps 100 --rounds 3 --threads 1
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import torch
from bench_common import cpu_name, write_result

from flowkit.models import MLPField
from flowkit.solvers import sample_sde
from flowkit.solvers.increments import PerSampleNoise

GOAL = 0.10


class NoiseTimer:
    """Wraps ``PerSampleNoise.next`` to add up the seconds it takes."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.calls = 0
        self._next = PerSampleNoise.next

    def __enter__(self) -> NoiseTimer:
        original = self._next

        def timed(noise: PerSampleNoise) -> torch.Tensor:
            tic = time.perf_counter()
            out = original(noise)
            self.seconds += time.perf_counter() - tic
            self.calls += 1
            return out

        PerSampleNoise.next = timed  # type: ignore[method-assign]
        return self

    def __exit__(self, *exc: object) -> None:
        PerSampleNoise.next = self._next  # type: ignore[method-assign]


def measure(dim: int, batch: int, steps: int, rounds: int) -> dict:
    torch.manual_seed(0)
    field = MLPField(dim=dim, hidden_dim=128).eval()
    x0 = torch.randn(batch, dim, generator=torch.Generator().manual_seed(1))
    runs, shares, noise_alone, field_alone = [], [], [], []
    sample_sde(field, x0[:64], nfe=4, seed=0)  # warm-up
    t = torch.full((batch,), 0.5)
    for _ in range(rounds):
        with NoiseTimer() as timer:
            tic = time.perf_counter()
            out = sample_sde(field, x0, nfe=steps, method="euler_maruyama", seed=0)
            total = time.perf_counter() - tic
        runs.append(total)
        shares.append(timer.seconds / total)
        draws = timer.calls
        noise = PerSampleNoise((dim,), range(batch), seed=0)
        tic = time.perf_counter()
        for _ in range(draws):
            noise.next()
        noise_alone.append(time.perf_counter() - tic)
        with torch.no_grad():
            tic = time.perf_counter()
            for _ in range(steps):
                field(x0, t)
            field_alone.append(time.perf_counter() - tic)
    return dict(
        dim=dim,
        batch=batch,
        steps=steps,
        nfe=out.nfe,
        draws=draws,
        rounds=rounds,
        total=statistics.median(runs),
        share=statistics.median(shares),
        noise=statistics.median(noise_alone),
        field=statistics.median(field_alone),
    )



def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dims", nargs="+", type=int, default=[2, 64])
    parser.add_argument("--batch", type=int, default=10_000)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default="benchmarks/results/noise.md")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    load_before = os.getloadavg()
    rows = []
    for dim in args.dims:
        row = measure(dim, args.batch, args.steps, args.rounds)
        rows.append(row)
        print(
            f"dim {dim:3d}: run {row['total']:.3f} s, noise share {100 * row['share']:.1f}% "
            f"(noise alone {row['noise']:.3f} s for {row['draws']} draws, field alone "
            f"{row['field']:.3f} s)",
            flush=True,
        )
    load_after = os.getloadavg()
    command = "python benchmarks/noise.py " + " ".join(
        f"--{k.replace('_', '-')} {' '.join(map(str, v)) if isinstance(v, list) else v}"
        for k, v in vars(args).items()
    )
    lines = [
        "# Seeded per-sample noise: its share of SDE sampling time",
        "",
        f"Machine: {cpu_name()}, {os.cpu_count()} logical CPUs (shared), "
        f"{torch.get_num_threads()} torch thread(s); torch {torch.__version__}; python "
        f"{platform.python_version()}. Load average (1, 5, 15 min) before "
        f"{', '.join(f'{v:.2f}' for v in load_before)}, after "
        f"{', '.join(f'{v:.2f}' for v in load_after)}.",
        f"Command: `{command}`",
        "",
        "`sample_sde(MLPField(dim, hidden_dim=128), x, nfe=steps, method='euler_maruyama', "
        "seed=0)`; noise time is every `PerSampleNoise.next` call inside the run (median over "
        f"rounds). Goal: under {100 * GOAL:.0f}% of the run.",
        "",
        "| dim | batch x steps | run s | noise share | goal met | noise alone s (draws) "
        "| field alone s |",
        "|---:|---|---:|---:|---|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['dim']} | {r['batch']} x {r['steps']} | {r['total']:.3f} | "
            f"{100 * r['share']:.1f}% | {'yes' if r['share'] < GOAL else 'no'} | "
            f"{r['noise']:.3f} ({r['draws']}) | {r['field']:.3f} |"
        )
    text = "\n".join(lines) + "\n"
    print(text)
    write_result(args.out, text)


if __name__ == "__main__":
    main()
