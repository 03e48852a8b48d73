"""``flowkit stats`` and ``flowkit fid``: reference statistics and FID."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

STATS_EXAMPLES = """examples:
  flowkit stats digits --out refs/digits.npz                 # 1797 digits, digits classifier
  flowkit stats mnist5k --out refs/mnist5k.npz --features mnist
  flowkit stats /data/cifar10/train --out refs/cifar10.npz --features inception
  torchrun --standalone --nproc_per_node=8 -m flowkit stats /data/cifar10/train --out ref.npz
"""
FID_EXAMPLES = """examples:
  flowkit fid runs/digits --nfe 4 --num 2000 --ref refs/digits.npz
  flowkit fid samples.safetensors --ref refs/digits.npz
  flowkit fid runs/digits --method dmcmc --estimator runs/digits_noise_level --nfe 10 \\
      --num 2000 --ref refs/digits.npz   # denoising MCMC: correlated chain outputs
  flowkit fid /data/generated_pngs --ref refs/cifar10.npz --features inception
  torchrun --standalone --nproc_per_node=8 -m flowkit fid runs/cifar10 --nfe 1 -n 50000 \\
      --ref refs/cifar10.npz   # -n: torchrun takes --num for its --numa-binding
"""
AUTOCAST = {"none": None, "bf16": "bfloat16", "fp16": "float16"}
FEATURES_HELP = (
    "feature network: auto (digits for 1x8x8, mnist for 1x28x28, inception "
    "otherwise; for fid, the reference's), digits, mnist, inception"
)


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--features", default="auto", help=FEATURES_HELP)
    parser.add_argument("--batch-size", type=int, default=250)
    parser.add_argument("--channels", type=int, default=3, help="image folders: 1 or 3")
    parser.add_argument("--image-size", type=int, default=None, help="image folders: resize")
    parser.add_argument(
        "--skip-corrupt",
        action="store_true",
        help="image folders: leave undecodable images out (with a warning and a count)",
    )
    parser.add_argument("--device", default="auto", help="'auto', 'cpu' or 'cuda[:k]'")
    parser.add_argument(
        "--autocast",
        choices=sorted(AUTOCAST),
        default="none",
        help="GPU only: run the feature network in bf16 or fp16",
    )
    parser.add_argument("--no-progress", action="store_true")


def add_parser(sub: argparse._SubParsersAction) -> None:
    stats = sub.add_parser(
        "stats",
        help="feature statistics of a data set (the FID reference)",
        description="Write the mean and covariance of a data set's features to a .npz "
        "(mu, sigma: the pytorch-fid / EDM layout, plus the extractor's name and the count). "
        "DATA is digits, mnist5k, a folder of images or a .safetensors with 'samples'.",
        epilog=STATS_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    stats.add_argument("data")
    stats.add_argument("--out", required=True, help="the .npz to write")
    stats.add_argument("--num", "-n", type=int, default=None, help="use only the first N images")
    _common(stats)
    stats.set_defaults(run=run_stats)

    fid = sub.add_parser(
        "fid",
        help="FID of samples or of a model against reference statistics",
        description="FID of a model (a run or model directory, sampled on the fly in batches: "
        "needs --nfe and --num), a folder of images or a .safetensors of samples, against "
        "REF.npz. Prints a JSON line with the score, the sample count, the extractor, the NFE "
        "and the seconds taken.",
        epilog=FID_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    fid.add_argument("source", help="model directory, image folder or .safetensors")
    fid.add_argument("--ref", required=True, help="reference statistics (.npz)")
    fid.add_argument("--nfe", type=int, default=None, help="models: network evaluations")
    fid.add_argument(
        "--num", "-n", type=int, default=None, help="number of samples (-n under torchrun)"
    )
    fid.add_argument(
        "--method",
        default=None,
        help="models: the sampler (default: euler; a multiplicative model's own sampler; "
        "dmcmc: denoising MCMC, --nfe counting chain steps + integrator calls per sample)",
    )
    fid.add_argument("--seed", type=int, default=0)
    fid.add_argument("--json", dest="json_out", default=None, help="also write the result here")
    _common(fid)
    from flowkit.cli.sample import add_dmcmc_arguments

    add_dmcmc_arguments(fid)
    fid.set_defaults(run=run_fid)


def run_stats(args: argparse.Namespace) -> int:
    from flowkit.distributed import init_distributed, shutdown_and_exit
    from flowkit.evaluation.fid import dataset_stats

    info = init_distributed(args.device)
    stats = dataset_stats(
        args.data,
        args.features,
        num=args.num,
        batch_size=args.batch_size,
        channels=args.channels,
        image_size=args.image_size,
        skip_corrupt=args.skip_corrupt,
        device=info.device,
        progress=not args.no_progress,
        autocast_dtype=_autocast(args),
    )
    if info.is_main:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        stats.save(args.out)
        print(json.dumps({"out": args.out, "num": stats.count, "features": stats.extractor}))
    shutdown_and_exit(0)
    return 0


def run_fid(args: argparse.Namespace) -> int:
    from flowkit.cli.sample import dmcmc_options
    from flowkit.distributed import init_distributed, shutdown_and_exit
    from flowkit.evaluation.fid import fid
    from flowkit.files import write_text

    info = init_distributed(args.device)
    options = dmcmc_options(args) if args.method == "dmcmc" else None
    result = fid(
        args.source,
        args.ref,
        args.features,
        nfe=args.nfe,
        num=args.num,
        method=args.method,
        seed=args.seed,
        batch_size=args.batch_size,
        channels=args.channels,
        image_size=args.image_size,
        skip_corrupt=args.skip_corrupt,
        device=info.device,
        progress=not args.no_progress,
        autocast_dtype=_autocast(args),
        sampler_options=options,
    )
    if info.is_main:
        text = json.dumps(result.to_dict())
        print(text)
        if args.json_out:
            write_text(args.json_out, text + "\n")
    shutdown_and_exit(0)
    return 0


def _autocast(args: argparse.Namespace):
    import torch

    name = AUTOCAST[args.autocast]
    return None if name is None else getattr(torch, name)
