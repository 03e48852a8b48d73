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
"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    from flowkit.solvers.names import GBM_SAMPLERS, GRIDS, ODE_METHODS, SDE_METHODS

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
        choices=ODE_METHODS + SDE_METHODS + GBM_SAMPLERS,
        help="ODE or SDE sampler (default euler); for a multiplicative (GBM) model "
        "'multiplicative' or 'additive' (default: the one it was saved with)",
    )
    parser.add_argument(
        "--grid",
        default="uniform",
        choices=GRIDS,
        help="time grid of fixed-step methods (default uniform)",
    )
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


def run(args: argparse.Namespace) -> int:
    import torch
    from tqdm.auto import tqdm

    from flowkit.data import save_image_grid, save_scatter
    from flowkit.files import save_tensors
    from flowkit.pipelines.multiplicative import multiplicative_pipeline_dir
    from flowkit.pipelines.rectified_flow import sample_shape
    from flowkit.pipelines.runs import load_field
    from flowkit.solvers import GBM_SAMPLERS, SDE_METHODS, sample_ode, sample_sde, seeded_noise
    from flowkit.training.distributed import resolve_device

    out = Path(args.out)
    if out.suffix not in (".png", ".safetensors"):
        raise ValueError(f"--out must end in .png or .safetensors, got {str(out)!r}")
    if args.num < 1:
        raise ValueError(f"--num must be >= 1, got {args.num}")
    out.parent.mkdir(parents=True, exist_ok=True)  # a bad --out fails before the sampling
    device = resolve_device(args.device)
    gbm_dir = multiplicative_pipeline_dir(args.model)
    if gbm_dir is not None:
        pipe, levels = _load_gbm(gbm_dir, args.method, args.nfe)
        pipe.to(device)
        model, method = pipe.model.eval(), pipe.scheduler.config.sampler
    else:
        if args.method in GBM_SAMPLERS:
            raise ValueError(
                f"--method {args.method} needs a multiplicative (GBM) model; {args.model!r} "
                "holds a flow"
            )
        method, nfe = args.method or "euler", 100 if args.nfe is None else args.nfe
        model, path = load_field(args.model)
        model = model.to(device).eval()
    shape = sample_shape(model)
    samples, noises, used = [], [], 0
    tic = time.perf_counter()
    for start in tqdm(range(0, args.num, args.batch_size), desc="sample", unit="batch"):
        indices = range(start, min(start + args.batch_size, args.num))
        x0 = seeded_noise(shape, indices, args.seed)
        if gbm_dir is not None:  # x0 is the standard normal z of the log-normal start
            result = pipe.sample(indices, args.seed, levels)
            samples.append(result.x.cpu())
            noises.append(x0)
            used += result.nfe
            continue
        start_x = x0.to(device) * path.prior_std
        if method in SDE_METHODS:
            result = sample_sde(
                model,
                start_x,
                nfe=nfe,
                method=method,
                grid=args.grid,
                path=path,
                noise_scale=args.noise_scale,
                seed=args.seed,
                indices=list(indices),
            )
        else:
            result = sample_ode(
                model,
                start_x,
                nfe=nfe,
                method=method,
                grid=args.grid,
                path=path,
                rtol=args.rtol,
                atol=args.atol,
            )
        samples.append(result.x.cpu())
        noises.append(x0)
        used += result.nfe
    seconds = time.perf_counter() - tic
    x = torch.cat(samples)
    out.parent.mkdir(parents=True, exist_ok=True)
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
    batches = len(samples)
    report = {
        "out": str(out),
        "num": len(x),
        "method": method,
        "nfe": used // batches,
        "seconds": round(seconds, 3),
    }
    print(json.dumps(report))
    return 0


def _load_gbm(path, method: str | None, nfe: int | None):
    """The saved multiplicative pipeline (its sampler replaced by ``method`` when given) and
    its number of levels for a budget of ``nfe`` calls (None: the saved steps)."""
    from flowkit.pipelines.loading import load_pipeline
    from flowkit.pipelines.multiplicative import GBMScheduler
    from flowkit.solvers import GBM_SAMPLERS

    pipe = load_pipeline(path)
    if method is not None and method not in GBM_SAMPLERS:
        raise ValueError(
            f"{str(path)!r} is a multiplicative (GBM) model: --method must be one of "
            f"{list(GBM_SAMPLERS)}, got {method!r}"
        )
    if method is not None:
        pipe.scheduler = GBMScheduler.from_config(pipe.scheduler.config, sampler=method)
    inner = pipe.scheduler.config.inner_steps
    if nfe is not None and nfe < inner:
        raise ValueError(f"--nfe must be >= inner_steps={inner} for this model, got {nfe}")
    return pipe, None if nfe is None else nfe // inner
