"""``flowkit sample MODEL``: draw samples with an ODE or SDE solver (or, for a multiplicative
GBM model, its Dale-Langevin sampler) and save them."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

EXAMPLES = """examples:
  flowkit sample runs/digits --nfe 4 --num 64 --out digits.png
  flowkit sample runs/checkerboard --nfe 1 --num 5000 --out one_step.png
  flowkit sample runs/digits --method dopri5 --num 1000 --out samples.safetensors
  flowkit sample runs/digits --method heun --grid edm --nfe 8 --num 64 --out heun.png
  flowkit sample runs/checkerboard --method flow_sde --nfe 100 --num 5000 --out sde.png
  flowkit sample runs/digits_gbm --num 64 --out gbm.png    # GBM model: its saved sampler
  flowkit sample runs/checkerboard --method dmcmc --nfe 10 --num 5000 --out dmcmc.png
  flowkit sample runs/digits --method dmcmc --estimator runs/digits_noise_level \
      --nfe 20 --skip 5 --chains 256 --num 1000 --out dmcmc.safetensors
"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    from flowkit.solvers.names import (
        GBM_SAMPLERS,
        GRIDS,
        MCMC_METHODS,
        ODE_METHODS,
        SDE_METHODS,
    )

    parser = sub.add_parser(
        "sample",
        help="sample a trained model",
        description="Sample a run directory (or a saved model directory). --out FILE.png "
        "writes an image grid or a 2-D scatter plot; FILE.safetensors writes the tensors "
        "'samples' and 'x0'. Sample i always starts from noise seeded by (--seed, i), and its "
        "SDE increments come from (--seed, i) too: results do not depend on --batch-size.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("model", help="a run, pipeline or model directory")
    parser.add_argument(
        "--nfe",
        type=int,
        default=None,
        help="network evaluations (fixed-step methods); default 100, or for a multiplicative "
        "(GBM) model its saved steps x inner_steps",
    )
    parser.add_argument("--num", "-n", type=int, default=64, help="number of samples (default 64)")
    parser.add_argument("--out", required=True, help="output .png or .safetensors file")
    parser.add_argument(
        "--method",
        default=None,
        choices=ODE_METHODS + SDE_METHODS + GBM_SAMPLERS + MCMC_METHODS,
        help="ODE or SDE sampler (default euler); for a multiplicative (GBM) model "
        "'multiplicative' or 'additive' (default: the one it was saved with); 'dmcmc': "
        "denoising MCMC (Kim & Ye 2022): Langevin-Gibbs chains, each round's least-noisy "
        "states integrated by --integrator; --nfe counts chain steps + integrator calls per "
        "sample. Samples of one chain are correlated.",
    )
    parser.add_argument(
        "--grid",
        default=None,
        choices=GRIDS,
        help="time grid of fixed-step methods (default uniform; edm for dmcmc's integrator)",
    )
    add_dmcmc_arguments(parser)
    parser.add_argument("--rtol", type=float, default=1e-5, help="adaptive methods")
    parser.add_argument("--atol", type=float, default=1e-5, help="adaptive methods")
    parser.add_argument(
        "--noise-scale",
        type=float,
        default=1.0,
        help="SDE methods: multiplies the diffusion (0 gives the ODE)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--device", default="auto", help="'auto', 'cpu' or 'cuda[:k]'")
    parser.set_defaults(run=run)


def add_dmcmc_arguments(parser: argparse.ArgumentParser) -> None:
    """The knobs of ``--method dmcmc`` (shared by ``flowkit sample`` and ``flowkit fid``)."""
    from flowkit.solvers.names import MCMC_INTEGRATORS

    mcmc = parser.add_argument_group("denoising MCMC (--method dmcmc)")
    mcmc.add_argument("--estimator", default=None,
                      help="a saved noise-level classifier: a run of objective.kind "
                      "noise_level, a directory with its config.json, or a pipeline holding "
                      "estimator/; default: the training-free score-norm estimator")  # fmt: skip
    mcmc.add_argument("--chains", type=int, default=64, help="parallel chains (default 64)")
    mcmc.add_argument("--skip", type=int, default=5, help="chain steps per sample (default 5)")
    mcmc.add_argument("--step-size", type=float, default=0.5, help="Langevin eta (default 0.5)")
    mcmc.add_argument("--step-rule", default="constant", choices=("constant", "level"),
                      help="eta constant, or eta * s^2 at level s (default constant)")  # fmt: skip
    mcmc.add_argument("--gibbs", default="map", choices=("map", "posterior"),
                      help="classifier Gibbs step: argmax or a posterior draw")  # fmt: skip
    mcmc.add_argument("--levels", type=int, default=1000, help="grid levels (default 1000)")
    mcmc.add_argument("--s-min", type=float, default=0.01, help="lowest level (default 0.01)")
    mcmc.add_argument("--s-max", type=float, default=50.0, help="highest level (default 50)")
    mcmc.add_argument("--integrator", default="edm", choices=MCMC_INTEGRATORS,
                      help="the solver that finishes each chain state (default edm)")  # fmt: skip
    mcmc.add_argument("--burn-in", type=int, default=20, help="chain steps before sampling")


def dmcmc_options(args: argparse.Namespace) -> dict:
    """``LoadedModel.sample(method="dmcmc", **options)`` from :func:`add_dmcmc_arguments`'s
    flags; chains share network calls ``--batch-size`` at a time (results do not depend on
    it)."""
    return {
        "estimator": args.estimator, "gibbs": args.gibbs, "chains": args.chains,
        "skip": args.skip, "step_size": args.step_size, "step_rule": args.step_rule,
        "num_levels": args.levels, "s_min": args.s_min, "s_max": args.s_max,
        "integrator": args.integrator, "burn_in": args.burn_in,
        "chain_batch_size": min(args.batch_size, args.chains),
    }  # fmt: skip


def run(args: argparse.Namespace) -> int:
    import torch
    from tqdm.auto import tqdm

    from flowkit.data import save_image_grid, save_scatter
    from flowkit.distributed import resolve_device
    from flowkit.files import save_tensors
    from flowkit.loading import load
    from flowkit.solvers.names import ADAPTIVE_METHODS, SDE_METHODS

    out = Path(args.out)
    if out.suffix not in (".png", ".safetensors"):
        raise ValueError(f"--out must end in .png or .safetensors, got {str(out)!r}")
    if args.num < 1:
        raise ValueError(f"--num must be >= 1, got {args.num}")
    out.parent.mkdir(parents=True, exist_ok=True)  # a bad --out fails before the sampling
    model = load(args.model).to(resolve_device(args.device))
    if args.method == "dmcmc":
        return _run_dmcmc(args, model, out)
    args.grid = args.grid or "uniform"
    gbm = model.kind == "multiplicative"
    method, nfe, options = args.method, args.nfe, {}
    if not gbm:
        method = method or "euler"
        if nfe is None and method not in ADAPTIVE_METHODS:
            nfe = 100
        options = {"grid": args.grid}
        if method in SDE_METHODS:
            options["noise_scale"] = args.noise_scale
        else:
            options.update(rtol=args.rtol, atol=args.atol)
    samples, noises, used = [], [], 0
    tic = time.perf_counter()
    for start in tqdm(range(0, args.num, args.batch_size), desc="sample", unit="batch"):
        indices = range(start, min(start + args.batch_size, args.num))
        result = model.sample(indices, args.seed, nfe, method, **options)
        samples.append(result.x.cpu())
        noises.append(model.noise(indices, args.seed))
        used += result.nfe
    seconds = time.perf_counter() - tic
    x = torch.cat(samples)
    if out.suffix == ".safetensors":
        save_tensors({"samples": x.contiguous(), "x0": torch.cat(noises).contiguous()}, out)
    elif x.dim() == 4:
        save_image_grid(x, out)
    elif x.shape[1:] == (2,):
        save_scatter(x, out)
    else:
        raise ValueError(
            f"cannot draw samples of shape {tuple(x.shape[1:])} as a PNG; "
            "use --out FILE.safetensors"
        )
    report = {
        "out": str(out),
        "num": len(x),
        "method": model.pipeline.scheduler.config.sampler if gbm else method,
        "nfe": used // len(samples),
        "seconds": round(seconds, 3),
    }
    print(json.dumps(report))
    return 0


def _run_dmcmc(args: argparse.Namespace, model, out: Path) -> int:
    """``--method dmcmc`` through :meth:`LoadedModel.sample`: chains persist across rounds;
    ``--batch-size`` chains share a network call (results do not depend on it)."""
    from flowkit.data import save_image_grid, save_scatter
    from flowkit.files import save_tensors

    nfe = 10 if args.nfe is None else args.nfe
    tic = time.perf_counter()
    result = model.sample(range(args.num), args.seed, nfe, "dmcmc", args.grid,
                          **dmcmc_options(args))  # fmt: skip
    seconds = time.perf_counter() - tic
    x = result.x.cpu()
    if out.suffix == ".safetensors":
        save_tensors({"samples": x.contiguous(), "levels": result.levels.contiguous()}, out)
    elif x.dim() == 4:
        save_image_grid(x, out)
    elif x.shape[1:] == (2,):
        save_scatter(x, out)
    else:
        raise ValueError(f"cannot draw samples of shape {tuple(x.shape[1:])} as a PNG; "
                         "use --out FILE.safetensors")  # fmt: skip
    report = {
        "out": str(out), "num": len(x), "method": "dmcmc", "integrator": args.integrator,
        "nfe": result.nfe, "chain_nfe": result.chain_nfe,
        "integrator_nfe": result.integrator_nfe, "estimator_calls": result.estimator_calls,
        "burn_in_nfe": result.burn_in_nfe, "chains": args.chains, "correlated": True,
        "seconds": round(seconds, 3),
    }  # fmt: skip
    print(json.dumps(report))
    return 0
