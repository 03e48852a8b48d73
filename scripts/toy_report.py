"""Quality of a trained 2-D flow against its NFE, per sampler: sliced Wasserstein and
straightness, and a picture of its trajectories.

    flowkit train configs/checkerboard.yaml --out runs/checkerboard
    python scripts/toy_report.py runs/checkerboard

Prints a markdown table (and writes it to benchmarks/results/<data>_1rf.md) of the
sliced-Wasserstein distance between 5000 samples and 5000 held-out data points for each
ODE and SDE sampler and NFE, beside the noise floor (the distance between two
independent data draws of the same size), and the straightness S(Z) of the flow.
Scatter plots of Euler samples at NFE 1, 4 and 100 and trajectories of 64 points under
Euler, Heun and two SDE samplers go to docs/.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from flowkit.data import sample_toy, save_scatter, save_trajectories
from flowkit.evaluation import sliced_wasserstein, straightness
from flowkit.loading import load
from flowkit.solvers import sample_ode, sample_sde, seeded_noise
from flowkit.training import load_config

ODE_RUNS = {
    "euler": (1, 2, 4, 8, 32, 100),
    "heun": (8, 32, 100),
    "rk4": (8, 32, 100),
    "dpm_solver_pp": (4, 8, 32),
}
SDE_RUNS = {"euler_maruyama": (32, 100), "flow_sde": (32, 100), "pc": (100,)}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("run", help="a run directory trained on a 2-D toy")
    parser.add_argument("--num", type=int, default=5000)
    parser.add_argument("--out", help="markdown file (default benchmarks/results/<data>_1rf.md)")
    parser.add_argument("--figures", default="docs")
    args = parser.parse_args()

    run = Path(args.run)
    name = load_config(run / "config.yaml").data.name
    model = load(run).field
    held_out = sample_toy(name, args.num, seed=10_001)
    floor = sliced_wasserstein(held_out, sample_toy(name, args.num, seed=10_002))
    x0 = seeded_noise((2,), range(args.num), seed=0)
    figures = Path(args.figures)
    rows = []
    for method, budgets in ODE_RUNS.items():
        for nfe in budgets:
            result = sample_ode(model, x0, nfe=nfe, method=method)
            rows.append(("ODE", method, result.nfe, sliced_wasserstein(result.x, held_out)))
            if method == "euler" and nfe in (1, 4, 100):
                save_scatter(result.x, figures / f"{name}_nfe{nfe}.png", reference=held_out)
    adaptive = sample_ode(model, x0, method="dopri5", rtol=1e-5, atol=1e-5)
    rows.append(
        ("ODE", "dopri5 (tol 1e-5)", adaptive.nfe, sliced_wasserstein(adaptive.x, held_out))
    )
    for method, budgets in SDE_RUNS.items():
        for nfe in budgets:
            result = sample_sde(model, x0, nfe=nfe, method=method, seed=1)
            rows.append(("SDE", method, result.nfe, sliced_wasserstein(result.x, held_out)))
    few = x0[:64]
    panels = {
        "Euler, 8 NFE": sample_ode(model, few, nfe=8, return_trajectory=True).trajectory,
        "Heun, 8 NFE": sample_ode(
            model, few, nfe=8, method="heun", return_trajectory=True
        ).trajectory,
        "reverse SDE, 100 NFE": sample_sde(
            model, few, nfe=100, method="euler_maruyama", return_trajectory=True
        ).trajectory,
        "flow SDE, 100 NFE": sample_sde(
            model, few, nfe=100, method="flow_sde", return_trajectory=True
        ).trajectory,
    }
    save_trajectories(panels, figures / f"{name}_trajectories.png", reference=held_out)
    s = straightness(model, x0[:2000], nfe=100)
    lines = [
        f"# 1-rectified flow on {name}: sample quality against NFE",
        "",
        f"Model: `{run}` ({load_config(run / 'config.yaml').train.steps} steps). "
        f"Command: `python scripts/toy_report.py {run}`",
        "",
        f"Sliced Wasserstein (512 projections) between {args.num} samples and {args.num} "
        f"held-out points; noise floor (two data draws): {floor:.4f}. "
        f"Straightness S(Z) (100 Euler steps): {s:.3f}.",
        "",
        "| kind | sampler | NFE | sliced W2 | / noise floor |",
        "|---|---|---:|---:|---:|",
        *[f"| {k} | {m} | {n} | {sw:.4f} | {sw / floor:.1f}x |" for k, m, n, sw in rows],
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    Path(args.out or f"benchmarks/results/{name}_1rf.md").write_text(text)


if __name__ == "__main__":
    main()
