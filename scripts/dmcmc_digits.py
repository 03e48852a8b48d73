"""Denoising MCMC against plain solvers at equal NFE on digits: FID with the digits features.

    flowkit train configs/digits.yaml --out runs/digits                   # 1-RF (velocity)
    flowkit train configs/digits_vp.yaml --out runs/digits_vp             # VP (epsilon)
    flowkit train configs/digits_noise_level.yaml --out runs/digits_noise_level
    python scripts/dmcmc_digits.py --rf runs/digits --vp runs/digits_vp \\
        --estimator runs/digits_noise_level

For each model and NFE budget it scores ``--num`` samples (sample ``i`` seeded by
``(seed, i)``) drawn with euler, heun, dpm_solver_pp, EDM's stochastic Heun on the EDM grid,
and DMCMC with ``skip = max(1, nfe // 5)`` chain steps per output and the EDM integrator,
once with the trained noise-level classifier (MAP Gibbs step) and once with the
training-free score-norm estimator. DMCMC's NFE is chain steps + integrator calls per
output, counted at the network; the one-off burn-in and the classifier calls are apart.
Its outputs come from ``--chains`` persistent chains, so they are correlated.

Writes a markdown table (``--out``), the rows as JSON beside it, and a figure (``--figure``):
sample grids at 10 NFE over FID against NFE.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from flowkit.data.plots import image_grid
from flowkit.evaluation.fid import fid
from flowkit.experiments.figures import save_report_figure
from flowkit.experiments.nfe_report import fid_judge
from flowkit.files import write_text
from flowkit.loading import load

BASELINES = {
    "euler": {},
    "heun": {},
    "dpm_solver_pp": {},
    "edm": {"grid": "edm"},
}


def samplers(nfe: int, estimator: str, chains: int) -> dict[str, tuple[str, dict]]:
    """name -> (method, sampler options) at budget ``nfe``."""
    skip = max(1, nfe // 5)
    chain = {"chains": chains, "skip": skip, "burn_in": 20}
    out = {name: (name, dict(options)) for name, options in BASELINES.items()}
    out["dmcmc (classifier)"] = ("dmcmc", {**chain, "estimator": estimator})
    out["dmcmc (score norm)"] = ("dmcmc", dict(chain))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rf", required=True, help="a 1-RF run on digits")
    parser.add_argument("--vp", required=True, help="a VP (epsilon) run on digits")
    parser.add_argument("--estimator", required=True, help="a noise-level classifier run")
    parser.add_argument("--num", "-n", type=int, default=10_000)
    parser.add_argument("--nfe", type=int, nargs="+", default=[5, 10, 20])
    parser.add_argument("--chains", type=int, default=256)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--ref", default="refs/digits.npz", help="digits statistics (cached)")
    parser.add_argument("--out", default="benchmarks/results/dmcmc_digits.md")
    parser.add_argument("--figure", default="docs/dmcmc_digits.png")
    parser.add_argument("--only", choices=["rf", "vp"],
                        help="score one model (run two processes side by side, then --rows)")
    parser.add_argument("--rows", nargs="+", metavar="JSON",
                        help="skip scoring: build the table and figure from saved rows")
    args = parser.parse_args()

    Path(args.ref).parent.mkdir(parents=True, exist_ok=True)
    judge = fid_judge("digits", args.ref, args.num, progress=False)
    models = {"1-RF (velocity)": args.rf, "VP (epsilon)": args.vp}
    rows: list[dict] = []
    if args.rows:
        rows = [row for name in args.rows for row in json.loads(Path(name).read_text())]
    scored = {} if args.rows else models
    if args.only:
        scored = {name: run for name, run in models.items() if name.startswith(
            {"rf": "1-RF", "vp": "VP"}[args.only])}  # fmt: skip
    for model_name, run in scored.items():
        for nfe in args.nfe:
            for name, (method, options) in samplers(nfe, args.estimator, args.chains).items():
                tic = time.perf_counter()
                try:
                    result = fid(run, judge.reference, nfe=nfe, num=args.num, method=method,
                                 seed=args.seed, progress=False, sampler_options=options)
                except ValueError as error:  # a budget a sampler cannot take
                    print(f"{model_name} {name} nfe {nfe}: skipped ({error})", flush=True)
                    continue
                rows.append({"model": model_name, "sampler": name, "budget": nfe,
                             "nfe": result.nfe, "fid": result.fid,
                             "seconds": round(time.perf_counter() - tic, 1)})  # fmt: skip
                print(json.dumps(rows[-1]), flush=True)
    write_text(Path(args.out).with_suffix(".json"), json.dumps(rows, indent=1))
    if args.only:
        return
    write_text(args.out, table(rows, args))
    figure(rows, models, args)
    print(Path(args.out).read_text())


def table(rows: list[dict], args: argparse.Namespace) -> str:
    lines = [
        "# Denoising MCMC vs solvers at equal NFE (digits, trained models)",
        "",
        f"Command: `python scripts/dmcmc_digits.py --rf RUN --vp RUN --estimator RUN --num "
        f"{args.num} --nfe {' '.join(map(str, args.nfe))} --chains {args.chains}`.",
        "",
        f"FID with the digits features, {args.num} samples against the 1797 digits. NFE is "
        "counted at the network; for DMCMC it is chain steps + integrator calls per output "
        f"(skip = max(1, nfe // 5); {args.chains} persistent chains, so outputs are "
        "correlated; burn-in of 20 chain steps once, classifier calls not counted). Seconds: "
        "wall time on a shared 2-core CPU, one torch thread.",
        "",
        "| model | sampler | budget | NFE used | FID | seconds |",
        "|---|---|---:|---:|---:|---:|",
    ]
    models = list(dict.fromkeys(row["model"] for row in rows))
    samplers = list(dict.fromkeys(row["sampler"] for row in rows))
    order = sorted(rows, key=lambda row: (models.index(row["model"]), row["budget"],
                                          samplers.index(row["sampler"])))  # fmt: skip
    for row in order:
        lines.append(f"| {row['model']} | {row['sampler']} | {row['budget']} | {row['nfe']} | "
                     f"{row['fid']:.3f} | {row['seconds']} |")  # fmt: skip
    return "\n".join(lines) + "\n"


def figure(rows: list[dict], models: dict[str, str], args: argparse.Namespace) -> None:
    """Grids of 64 samples at 10 NFE (or the nearest budget), over FID against NFE."""
    budget = min(args.nfe, key=lambda n: abs(n - 10))
    panels = []
    for model_name, run in models.items():
        short = model_name.split()[0]
        model = load(run)
        for title, method, options in (
            ("euler", "euler", {}),
            ("dmcmc", "dmcmc", {"chains": 64, "skip": max(1, budget // 5)}),
        ):
            out = model.sample(range(64), args.seed, budget, method, **options)
            images = model.decode(out.x).clamp(-1, 1).cpu().to(torch.float32)
            panels.append((f"{short} {title} {budget}", image_grid(images, nrow=8)))
    curves: dict[str, list[tuple[float, float]]] = {}
    keep = {("1-RF (velocity)", "euler"), ("1-RF (velocity)", "dmcmc (classifier)"),
            ("VP (epsilon)", "dpm_solver_pp"), ("VP (epsilon)", "edm"),
            ("VP (epsilon)", "dmcmc (classifier)")}  # fmt: skip
    for row in rows:
        if (row["model"], row["sampler"]) in keep:
            name = f"{row['model'].split()[0]} {row['sampler']}"
            curves.setdefault(name, []).append((row["budget"], row["fid"]))
    save_report_figure(panels, curves, args.figure, ylabel="FID (digits features)")


if __name__ == "__main__":
    main()
