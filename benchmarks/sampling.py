"""Euler sampling loop overhead: flowkit against a bare loop, diffusers and torchdiffeq.

Five ways to take the same Euler steps on the same uniform grid ``t = 0, 1/n, ..., 1``:

    bare          ``for k: x = x + h * model(x, t_k)`` (what a careful user writes by hand)
    sample_ode    ``flowkit.solvers.sample_ode(field, x, nfe=n, method="euler")``
    diffusers     ``FlowMatchEulerDiscreteScheduler``: ``set_timesteps(sigmas=...)`` and the
                  pipeline loop ``x = sched.step(model(x, ts), ts, x).prev_sample``
    torchdiffeq   ``odeint(f, x, grid, method="euler")`` (fixed grid)
    FlowEuler     ``flowkit.pipelines.FlowEulerScheduler``: ``set_timesteps(n)`` and the same loop

The diffusers-convention model (timestep ``1000 (1 - t)``, output ``-v``) is the flowkit field
with its output layer negated (exact in floating point, no extra kernel) called at
``t = 1 - ts / 1000``. For the identity field it is the identity too (so it integrates
``v = -x``; only the two scheduler loops are checked against each other there). Every round
runs each method once, in a shuffled order, so machine noise hits all of them; the table
shows the median over rounds (as many as fit a time budget per case and NFE), per sample, and the
ratio to the bare loop. Before timing,
the five results are checked to agree.

    python benchmarks/sampling.py                       # identity, MLP, tiny UNet
    python benchmarks/sampling.py --cases identity mlp --budget 30 --threads 2
"""

from __future__ import annotations

import argparse
import copy
import os
import platform
import random
import statistics
import time
from collections.abc import Callable

import diffusers
import torch
import torchdiffeq
from bench_common import cpu_name, write_result
from diffusers import FlowMatchEulerDiscreteScheduler

from flowkit.models import MLPField, unet
from flowkit.pipelines import FlowEulerScheduler
from flowkit.solvers import sample_ode

NFES = (1, 2, 4, 8, 32)
METHODS = ("bare", "sample_ode", "diffusers", "torchdiffeq", "FlowEuler")


class Identity(torch.nn.Module):
    """A field that returns its input: the loop's own cost becomes visible."""

    def forward(self, x: torch.Tensor, t) -> torch.Tensor:
        return x


def negated(field: torch.nn.Module) -> torch.nn.Module:
    """A copy of ``field`` whose output is ``-field(x, t)`` exactly: its last layer negated."""
    out = copy.deepcopy(field)
    last = out.output[-1] if isinstance(out, MLPField) else out.unet.conv_out
    with torch.no_grad():
        last.weight.neg_()
        last.bias.neg_()
    return out


def make_case(name: str):
    """(field, diffusers-convention model, x0) for a case."""
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(1)
    if name.startswith("identity"):
        field = Identity()
        return field, (lambda x, ts: x), torch.randn(4096, 2, generator=g)
    if name.startswith("mlp"):
        field = MLPField(dim=2, hidden_dim=64, num_layers=2).eval()
        x0 = torch.randn(4096, 2, generator=g)
    else:
        field = unet("tiny").eval()
        x0 = torch.randn(256, 1, 8, 8, generator=g)
    flow = negated(field)
    return field, (lambda x, ts: flow(x, 1 - ts / 1000)), x0


def runners(field, model_d, nfe: int) -> dict[str, Callable[[torch.Tensor], torch.Tensor]]:
    grid = torch.linspace(0, 1, nfe + 1, dtype=torch.float64)
    times = grid.tolist()
    grid32 = grid.float()
    sigmas = (1 - grid[:-1]).tolist()
    theirs, ours = FlowMatchEulerDiscreteScheduler(), FlowEulerScheduler()

    def bare(x):
        for t, t_next in zip(times[:-1], times[1:], strict=True):
            x = x + (t_next - t) * field(x, torch.full((x.shape[0],), t))
        return x

    def flowkit_ode(x):
        return sample_ode(field, x, nfe=nfe, method="euler").x

    def diffusers_loop(x):
        theirs.set_timesteps(sigmas=sigmas)
        for ts in theirs.timesteps:
            x = theirs.step(model_d(x, ts), ts, x).prev_sample
        return x

    def torchdiffeq_loop(x):
        return torchdiffeq.odeint(lambda t, y: field(y, t), x, grid32, method="euler")[-1]

    def flowkit_scheduler(x):
        ours.set_timesteps(nfe)
        for ts in ours.timesteps:
            x = ours.step(model_d(x, ts), ts, x).prev_sample
        return x

    return dict(
        zip(
            METHODS,
            (bare, flowkit_ode, diffusers_loop, torchdiffeq_loop, flowkit_scheduler),
            strict=True,
        )
    )


def measure(case: str, budget: float, min_rounds: int, max_rounds: int, seed: int) -> list[dict]:
    field, model_d, x0 = make_case(case)
    rows, rng = [], random.Random(seed)
    with torch.no_grad():
        for nfe in NFES:
            run = runners(field, model_d, nfe)
            tic = time.perf_counter()
            results = {m: fn(x0) for m, fn in run.items()}  # warm-up and agreement check
            one_round = time.perf_counter() - tic
            rounds = max(min_rounds, min(max_rounds, int(budget / one_round)))
            if case.startswith("identity"):  # there the diffusers model is x, i.e. v = -x
                results["diffusers"] = results["diffusers"] - results["FlowEuler"] + results["bare"]
                results["FlowEuler"] = results["bare"]
            worst = max((results[m] - results["bare"]).abs().max().item() for m in METHODS)
            scale = results["bare"].abs().max().item()
            if worst > 1e-4 * max(1.0, scale):
                raise AssertionError(f"{case} NFE {nfe}: methods disagree by {worst:.3g}")
            times: dict[str, list[float]] = {m: [] for m in METHODS}
            for _ in range(rounds):
                order = list(METHODS)
                rng.shuffle(order)
                for m in order:
                    tic = time.perf_counter()
                    run[m](x0)
                    times[m].append(time.perf_counter() - tic)
            med = {m: statistics.median(v) for m, v in times.items()}
            rows.append(dict(case=case, nfe=nfe, batch=x0.shape[0], med=med, rounds=rounds))
            print(
                f"{case:32s} NFE {nfe:2d} ({rounds} rounds): "
                + "  ".join(f"{m} {med[m] * 1e3:8.3f} ms" for m in METHODS),
                flush=True,
            )
    return rows


FIXED_NFES = (1, 2, 3, 4)
FIXED_GOAL_US = 10.0


def fixed_cost(rounds: int, inner: int, seed: int) -> list[dict]:
    """``sample_ode``'s fixed cost per call against the bare loop: batch 1 x 2, identity field,
    NFE 1-4, CPU time of the calling thread over ``inner`` back-to-back calls, the two
    interleaved in a shuffled order every round; with autograd off (as in :func:`measure`)
    and on (then ``sample_ode`` pays for entering ``no_grad``)."""
    field, x0, rng = Identity(), torch.randn(1, 2), random.Random(seed)
    rows = []
    for grad in (False, True):
        with torch.set_grad_enabled(grad):
            for nfe in FIXED_NFES:
                run = runners(field, None, nfe)
                fns = {m: run[m] for m in ("bare", "sample_ode")}
                gap = (fns["bare"](x0) - fns["sample_ode"](x0)).abs().max().item()
                if gap > 1e-6:
                    raise AssertionError(f"fixed cost NFE {nfe}: sample_ode != bare loop")
                times: dict[str, list[float]] = {m: [] for m in fns}
                for _ in range(rounds):
                    order = list(fns)
                    rng.shuffle(order)
                    for m in order:
                        fn = fns[m]
                        tic = time.thread_time()
                        for _ in range(inner):
                            fn(x0)
                        times[m].append((time.thread_time() - tic) / inner)
                med = {m: 1e6 * statistics.median(v) for m, v in times.items()}
                rows.append(dict(grad=grad, nfe=nfe, **med))
                print(
                    f"fixed cost (grad {'on' if grad else 'off'}) NFE {nfe}: bare "
                    f"{med['bare']:.1f} us, sample_ode {med['sample_ode']:.1f} us "
                    f"({med['sample_ode'] - med['bare']:+.1f})",
                    flush=True,
                )
    return rows


def _fit(xs: list[float], ys: list[float]) -> tuple[float, float]:
    """Least-squares ``(intercept, slope)``."""
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sum(
        (x - mx) ** 2 for x in xs
    )
    return my - slope * mx, slope


def fixed_cost_lines(rows: list[dict], rounds: int, inner: int) -> list[str]:
    if not rows:
        return []
    out = [
        "",
        f"`sample_ode` fixed cost per call (batch 1 x 2, identity field, Euler; CPU time of "
        f"the thread, median of {rounds} interleaved rounds of {inner} calls each; goal: "
        f"<= bare + {FIXED_GOAL_US:.0f} µs):",
        "",
        "| autograd | NFE | bare µs | sample_ode µs | sample_ode - bare µs |",
        "|---|---:|---:|---:|---:|",
    ]
    for r in rows:
        out.append(
            f"| {'on' if r['grad'] else 'off'} | {r['nfe']} | {r['bare']:.1f} | "
            f"{r['sample_ode']:.1f} | {r['sample_ode'] - r['bare']:+.1f} |"
        )
    out += ["", "| autograd | fit `fixed + per_step * NFE` | bare | sample_ode | difference |"]
    out += ["|---|---|---:|---:|---:|"]
    for grad in (False, True):
        sel = [r for r in rows if r["grad"] == grad]
        xs = [float(r["nfe"]) for r in sel]
        (fb, sb), (fs, ss) = (
            _fit(xs, [r["bare"] for r in sel]),
            _fit(xs, [r["sample_ode"] for r in sel]),
        )
        mode = "on" if grad else "off"
        out.append(f"| {mode} | fixed µs | {fb:.1f} | {fs:.1f} | {fs - fb:+.1f} |")
        out.append(f"| {mode} | per step µs | {sb:.1f} | {ss:.1f} | {ss - sb:+.1f} |")
    return out



def table(rows: list[dict]) -> list[str]:
    head = (
        "| case | NFE | rounds | bare µs/sample | sample_ode | diffusers Euler "
        "| torchdiffeq euler | FlowEulerScheduler |"
    )
    lines = [head, "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        med, bare = r["med"], r["med"]["bare"]
        per_sample = 1e6 * bare / r["batch"]
        cells = [f"{med[m] / bare:.3f}" for m in METHODS[1:]]
        lines.append(
            f"| {r['case']} | {r['nfe']} | {r['rounds']} | {per_sample:.4g} | "
            + " | ".join(cells)
            + " |"
        )
    return lines


def overhead_lines(rows: list[dict]) -> list[str]:
    """Per-step and fixed loop cost from the identity field: a line fit over NFE."""
    ident = [r for r in rows if r["case"].startswith("identity")]
    if len(ident) < 2:
        return []
    out = [
        "",
        "Loop cost with the identity field (least-squares fit `fixed + per_step * NFE`):",
        "",
    ]
    out += ["| method | per step µs | fixed µs |", "|---|---:|---:|"]
    xs = [r["nfe"] for r in ident]
    mx = statistics.fmean(xs)
    for m in METHODS:
        ys = [1e6 * r["med"][m] for r in ident]
        my = statistics.fmean(ys)
        slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sum(
            (x - mx) ** 2 for x in xs
        )
        out.append(f"| {m} | {slope:.1f} | {my - slope * mx:.1f} |")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--budget", type=float, default=15.0, help="seconds per case and NFE")
    parser.add_argument("--min-rounds", type=int, default=5)
    parser.add_argument("--max-rounds", type=int, default=201)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--cases",
        nargs="+",
        default=["identity", "mlp", "unet"],
        choices=["identity", "mlp", "unet"],
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--fixed-rounds", type=int, default=100, help="rounds of the fixed-cost row (0: skip)"
    )
    parser.add_argument("--fixed-inner", type=int, default=200, help="calls per timed round")
    parser.add_argument("--out", default="benchmarks/results/sampling.md")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    names = {
        "identity": "identity field (2-D, batch 4096)",
        "mlp": "MLPField 64x2 (2-D, batch 4096)",
        "unet": 'unet("tiny") (1x8x8, batch 256)',
    }
    load_before = os.getloadavg()
    fixed = fixed_cost(args.fixed_rounds, args.fixed_inner, args.seed) if args.fixed_rounds else []
    rows = []
    for case in args.cases:
        rows += measure(names[case], args.budget, args.min_rounds, args.max_rounds, args.seed)
    command = "python benchmarks/sampling.py " + " ".join(
        f"--{k.replace('_', '-')} {' '.join(v) if isinstance(v, list) else v}"
        for k, v in vars(args).items()
    )
    lines = [
        "# Euler sampling: flowkit vs a bare loop, diffusers and torchdiffeq",
        "",
        f"Machine: {cpu_name()}, {os.cpu_count()} logical CPUs (shared), "
        f"{torch.get_num_threads()} torch thread(s); torch {torch.__version__}, "
        f"diffusers {diffusers.__version__}, torchdiffeq {torchdiffeq.__version__}; "
        f"python {platform.python_version()}. Load average (1, 5, 15 min) before "
        f"{', '.join(f'{v:.2f}' for v in load_before)}, after "
        f"{', '.join(f'{v:.2f}' for v in os.getloadavg())}.",
        f"Command: `{command}`",
        "",
        "Median wall time over interleaved rounds; the bare loop's time per sample, and every "
        "other method as a ratio to it (lower is faster). The five results were checked to agree "
        "to 1e-4 of their largest value.",
        "",
        *table(rows),
        *overhead_lines(rows),
        *fixed_cost_lines(fixed, args.fixed_rounds, args.fixed_inner),
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    write_result(args.out, text)


if __name__ == "__main__":
    main()
