"""Before/after report of ``flowkit reinflow configs/reinflow_digits_reward.yaml``.

For the pretrained model and the fine-tuned run: the mean probability of the target class
over ``--num`` noise-free K-step Euler samples (sample ``i`` from the seeded noise of
``(0, i)``, the same noise for both), the share of samples the classifier assigns to each
class (the diversity), digits-feature FID against ``--ref`` on the same samples
(``flowkit.evaluation.fid.fid``) and a picture of 64 samples of each, side by side.

    python scripts/reinflow_digits_reward.py --base runs/digits --run runs/reinflow_digits \
        --ref ref.npz --out benchmarks/results/reinflow_digits_reward.md \
        --figure docs/reinflow_digits_reward.png
"""

from __future__ import annotations

import argparse
import json
import math
import warnings
from pathlib import Path

import torch
from PIL import Image, ImageDraw

import flowkit
from flowkit.data.builtin_images import load_digits
from flowkit.data.plots import image_grid
from flowkit.evaluation.classifiers import load_classifier
from flowkit.evaluation.features import get_extractor, shipped_weights
from flowkit.evaluation.fid import fid
from flowkit.evaluation.frechet import frechet_distance
from flowkit.evaluation.stats import FeatureStats
from flowkit.files import write_text
from flowkit.training.config import load_config


def samples(source: str, num: int, nfe: int) -> torch.Tensor:
    """``num`` noise-free Euler samples with ``nfe`` steps, clamped to [-1, 1]."""
    model = flowkit.load(source)
    out = [model.sample(range(s, min(num, s + 500)), 0, nfe, "euler").x
           for s in range(0, num, 500)]  # fmt: skip
    return torch.cat(out).clamp(-1, 1)


@torch.no_grad()
def judge(x: torch.Tensor, target: int) -> dict:
    """Mean p(target), class shares (classifier argmax) and their entropy in bits."""
    classifier = load_classifier(shipped_weights("digits")).eval()
    probs = torch.softmax(classifier(x), dim=1)
    shares = torch.bincount(probs.argmax(1), minlength=probs.shape[1]).float() / len(x)
    entropy = -sum(float(p) * math.log2(float(p)) for p in shares if p > 0)
    return {"reward": float(probs[:, target].mean()), "shares": shares.tolist(),
            "class_entropy_bits": entropy}  # fmt: skip


@torch.no_grad()
def fid_to_class(x: torch.Tensor, target: int) -> float:
    """Digits-feature FID of samples ``x`` against the real digits of class ``target`` (183
    images for class 3): low only for realistic and varied digits of that class."""
    extractor = get_extractor("digits")
    real, labels = load_digits()
    a = FeatureStats.from_features(extractor(real[labels == target]).double())
    b = FeatureStats.from_features(extractor(x).double())
    return frechet_distance(a.mean, a.covariance, b.mean, b.covariance)


def side_by_side(panels: list[tuple[str, Image.Image]], path: Path) -> None:
    """Titled pictures in a row, saved as PNG."""
    pad, title = 10, 24
    width = sum(p.width for _, p in panels) + pad * (len(panels) + 1)
    height = max(p.height for _, p in panels) + title + 2 * pad
    figure = Image.new("RGB", (width, height), "white")
    draw, x = ImageDraw.Draw(figure), pad
    for name, picture in panels:
        draw.text((x, pad), name, fill="black")
        figure.paste(picture.convert("RGB"), (x, pad + title))
        x += picture.width + pad
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.save(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", required=True, help="the pretrained model (run or pipeline)")
    parser.add_argument(
        "--run",
        required=True,
        action="append",
        help="a flowkit reinflow generator run (repeat for several)",
    )
    parser.add_argument("--ref", required=True, help="digits statistics (flowkit stats digits)")
    parser.add_argument("--num", type=int, default=2000)
    parser.add_argument("--out", default="benchmarks/results/reinflow_digits_reward.md")
    parser.add_argument("--figure", default="docs/reinflow_digits_reward.png")
    args = parser.parse_args()
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore", message="FID from")  # the count is stated in the report
    from flowkit.rl.generator_config import GeneratorRewardConfig

    configs = {run: load_config(Path(run) / "config.yaml", schema=GeneratorRewardConfig)
               for run in args.run}  # fmt: skip
    first = configs[args.run[0]]
    k, target = first.generator.steps, first.reward.target
    sources = [("pretrained", args.base)]
    sources += [(f"fine-tuned, kl_coef={c.ppo.kl_coef:g}", run) for run, c in configs.items()]
    rows, pictures = {}, []
    for name, source in sources:
        x = samples(source, args.num, k)
        rows[name] = judge(x, target)
        rows[name]["fid"] = fid(source, args.ref, nfe=k, num=args.num, method="euler",
                                progress=False).fid  # fmt: skip
        rows[name]["fid_target"] = fid_to_class(x, target)
        if name == "pretrained":  # its own samples of the target class: a quality baseline
            classifier = load_classifier(shipped_weights("digits")).eval()
            with torch.no_grad():
                own = x[classifier(x).argmax(1) == target]
            baseline = (len(own), fid_to_class(own, target))
        pictures.append((name, image_grid(x[:64], nrow=8)))
        print(name, rows[name], flush=True)
    side_by_side(pictures, Path(args.figure))
    lines = [
        "# ReinFlow: a digits 1-RF fine-tuned against a classifier reward",
        "",
        f"Reward: the shipped digits classifier's p(class {target}). K = {k} noise-free Euler "
        f"steps, {args.num} samples (the same seeded noise for every row); FID with the "
        f"digits features against `flowkit stats digits` (1797 images) on {args.num} "
        f"samples; FID to real {target}s: the same features against the {target}s of the "
        "digits set (a class-conditional quality/diversity check). Base model: `"
        + args.base
        + "`.",
        "",
        "| model | mean p(target) | samples classed as target | class entropy (bits) "
        f"| FID (digits) | FID to real {target}s |",
        "|---|---|---|---|---|---|",
    ]
    for name, row in rows.items():
        cells = [f"{row['reward']:.3f}", f"{row['shares'][target]:.1%}",
                 f"{row['class_entropy_bits']:.2f}", f"{row['fid']:.2f}",
                 f"{row['fid_target']:.2f}"]  # fmt: skip
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += [
        "",
        f"Baseline for the last column: the pretrained model's own samples classed as "
        f"{target} ({baseline[0]} of {args.num}) score {baseline[1]:.2f} against the real "
        f"{target}s (fewer samples bias FID upward).",
        "",
        "Runs (CPU, shared with other jobs):",
        "",
    ]
    for run, config in configs.items():
        records = [json.loads(line) for line in (Path(run) / "metrics.jsonl").open()]
        last = records[-1]
        curve = ", ".join(f"{r['step']}: {r['eval_reward']:.3f}" for r in records
                          if "eval_reward" in r)  # fmt: skip
        lines.append(
            f"- kl_coef={config.ppo.kl_coef:g}: {last['step']} PPO iterations, "
            f"{last['samples']} chains, {last['wall_s']:.0f} s; last iteration: chain KL to "
            f"the pretrained model {last.get('kl', float('nan')):.2f} nats, noise sigma mean "
            f"{last.get('sigma_mean', 0):.3f}; eval reward (512 noise-free samples) by "
            f"iteration: {curve}"
        )
    lines += ["", "Class shares (classifier argmax), classes 0..9:", ""]
    for name, row in rows.items():
        lines.append(f"- {name}: " + ", ".join(f"{s:.1%}" for s in row["shares"]))
    write_text(args.out, "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
