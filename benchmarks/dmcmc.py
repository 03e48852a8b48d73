"""Denoising MCMC against plain solvers at equal NFE on a 2-D Gaussian mixture.

The "model" is the exact score of an 8-component Gaussian mixture (radius 2, std 0.2) on
each path, read as a velocity field (1-RF: rectified path) or an epsilon field (VP path), so
the numbers measure the samplers alone, not a network's error. For each NFE budget
(5, 10, 20, 50) it draws ``--num`` samples with euler, heun, dpm_solver_pp, EDM's
stochastic sampler (EDM grid) and DMCMC (``skip = max(1, nfe // 5)`` chain steps, EDM
integrator, training-free score-norm estimator, levels 0.3..50, ``eta = 0.1 s^2``, warm start
of 10 NFE and 10 burn-in steps, excluded from the per-sample NFE and reported), and scores
sliced Wasserstein (512 projections) against ``--num`` fresh data points; the noise floor is
two data draws. DMCMC outputs of one chain are correlated: ``--chains`` chains give
``num / chains`` outputs each.

Chain-step overhead: one chain step (score through the path conversion, Langevin update,
seeded per-chain noise) against one bare call of a small MLP field, per batch of
``--chains``.

    python benchmarks/dmcmc.py                          # writes benchmarks/results/dmcmc.md
    python benchmarks/dmcmc.py --num 2000 --nfe 5 10
"""

from __future__ import annotations

import argparse
import math
import platform
import time
from pathlib import Path

import torch

from flowkit.evaluation import sliced_wasserstein
from flowkit.mcmc import LangevinGibbs, level_grid, sample_dmcmc
from flowkit.paths import rectified, vp
from flowkit.solvers import sample_ode, sample_sde, seeded_noise


class MixtureField:
    """Exact field of ``x1 ~ (1/8) sum N(mu_i, 0.2^2 I)``, as ``prediction`` on ``path``."""

    def __init__(self, path, prediction: str, std: float = 0.2) -> None:
        angles = torch.arange(8, dtype=torch.float64) * 2 * math.pi / 8
        self.means = torch.stack([2 * angles.cos(), 2 * angles.sin()], 1)
        self.path, self.prediction, self.std = path, prediction, std

    def __call__(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        alpha, sigma, _, _ = self.path.coefficients(t.to(torch.float64))
        a = alpha.to(x.dtype)[:, None]
        var = (alpha**2 * self.std**2 + sigma**2).to(x.dtype)[:, None]
        diff = x[:, None, :] - a[:, None, :] * self.means.to(x)[None]
        resp = torch.softmax(-(diff**2).sum(-1) / (2 * var), dim=1)
        score = -(resp[..., None] * diff).sum(1) / var
        return self.path.convert(score, x, t, "score", self.prediction)

    def data(self, n: int, seed: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(seed)
        pick = torch.randint(0, 8, (n,), generator=g)
        return self.means[pick] + self.std * torch.randn(n, 2, generator=g, dtype=torch.float64)


def _baselines(field, path, x0, nfe):
    yield "euler", sample_ode(field, x0, nfe, "euler", path=path)
    if nfe >= 2:
        yield "heun", sample_ode(field, x0, nfe, "heun", path=path)
    yield "dpm_solver_pp", sample_ode(field, x0, nfe, "dpm_solver_pp", path=path)
    yield "edm", sample_sde(field, x0, nfe, "edm", grid="edm", path=path)


def quality(args) -> list[str]:
    rows = []
    for name, path, prediction in (("1-RF (velocity)", rectified(), "velocity"),
                                   ("VP (epsilon)", vp(), "epsilon")):  # fmt: skip
        field = MixtureField(path, prediction)
        ref = field.data(args.num, 1)
        floor = sliced_wasserstein(field.data(args.num, 2), ref)
        rows.append(f"| {name} | data (noise floor) | - | {floor:.4f} | - |")
        x0 = seeded_noise((2,), range(args.num), 7, torch.float64) * path.prior_std
        for nfe in args.nfe:
            for method, out in _baselines(field, path, x0, nfe):
                sw = sliced_wasserstein(out.x, ref)
                rows.append(f"| {name} | {method} | {out.nfe} | {sw:.4f} | - |")
            skip = max(1, nfe // 5)
            tic = time.perf_counter()
            out = sample_dmcmc(
                field, (2,), args.num, nfe, skip=skip, path=path, num_chains=args.chains,
                levels=level_grid(1000, 0.3, 50.0), step_size=0.1, step_rule="level",
                burn_in=10, warm_start_nfe=10, dtype=torch.float64, seed=7,
            )  # fmt: skip
            seconds = time.perf_counter() - tic
            sw = sliced_wasserstein(out.x, ref)
            rows.append(
                f"| {name} | dmcmc (skip {skip}) | {out.nfe} = {out.chain_nfe} + "
                f"{out.integrator_nfe} | {sw:.4f} | burn-in {out.burn_in_nfe} NFE once; "
                f"{seconds:.1f} s |"
            )
            print(rows[-1], flush=True)
    return rows


def overhead(args) -> str:
    """One chain step against its bare limit: one network call plus the Langevin arithmetic
    ``y + (eta / 2) a score + sqrt(eta) z`` written by hand (``z`` from ``torch.randn``)."""
    from flowkit.models.mlp import MLPField

    torch.manual_seed(0)
    net = MLPField(dim=2, hidden_dim=256, prediction="velocity").eval()
    path = rectified()
    chains = LangevinGibbs(net, (2,), num_chains=args.chains, seed=0)
    chains.initialize(0)
    k, ids = chains.k, list(range(args.chains))
    y = chains.y
    t = chains.times[k].to(torch.float32)
    alpha = path.coefficients(t)[0][:, None]
    eta = torch.full((args.chains, 1), 0.5)

    def bare() -> None:
        with torch.no_grad():
            net(alpha * y, t)

    def bare_langevin() -> None:
        with torch.no_grad():
            score = path.convert(net(alpha * y, t), alpha * y, t, "velocity", "score")
            _ = y + eta / 2 * (alpha * score) + eta.sqrt() * torch.randn_like(y)

    def chain_step() -> None:
        with torch.no_grad():
            chains.step(y, k, ids, 0, gibbs=False)

    def chain_gibbs() -> None:
        with torch.no_grad():
            chains.step(y, k, ids, 0, gibbs=True)

    def timed(fn, reps: int = 20) -> float:
        tic = time.perf_counter()
        for _ in range(reps):
            fn()
        return (time.perf_counter() - tic) / reps

    # interleaved rounds, best of each: a load that comes and goes hits all four alike
    fns = (bare, bare_langevin, chain_step, chain_gibbs)
    for fn in fns:
        fn()
    rounds = [[timed(fn) for fn in fns] for _ in range(15)]
    b, limit, c, g = (min(column) for column in zip(*rounds, strict=True))
    return (
        f"Chain-step overhead (MLP hidden 256, batch {args.chains}, best of 15 interleaved "
        f"rounds of 20): bare "
        f"network call {b * 1e3:.3f} ms; bare limit (call + score conversion + Langevin "
        f"arithmetic with torch.randn) {limit * 1e3:.3f} ms; flowkit chain step (seeded per-chain "
        f"noise) {c * 1e3:.3f} ms = {c / limit:.3f}x the limit; with the score-norm Gibbs step "
        f"{g * 1e3:.3f} ms = {g / limit:.3f}x."
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num", type=int, default=4000)
    parser.add_argument("--chains", type=int, default=500)
    parser.add_argument("--nfe", type=int, nargs="+", default=[5, 10, 20, 50])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default="benchmarks/results/dmcmc.md")
    parser.add_argument("--overhead-only", action="store_true",
                        help="measure the chain-step overhead alone and print it")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.overhead_only:
        print(overhead(args))
        return
    rows = quality(args)
    cost = overhead(args)
    text = "\n".join([
        "# Denoising MCMC vs solvers at equal NFE (2-D mixture, exact field)",
        "",
        f"Command: `python benchmarks/dmcmc.py --num {args.num} --chains {args.chains} "
        f"--nfe {' '.join(map(str, args.nfe))}` ({platform.machine()}, torch "
        f"{torch.__version__}, {args.threads} thread(s)).",
        "",
        f"Sliced W2 (512 projections), {args.num} samples vs {args.num} data points. NFE is "
        "counted at the field; for DMCMC it is chain steps + integrator per sample, and "
        f"{args.chains} chains give {math.ceil(args.num / args.chains)} correlated outputs "
        "each.",
        "",
        "| model | sampler | NFE | sliced W2 | note |",
        "|---|---|---:|---:|---|",
        *rows,
        "",
        cost,
        "",
    ])  # fmt: skip
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
