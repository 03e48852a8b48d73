"""f-distill on the 2-D mixture of 8 Gaussians: one-step generators by reverse KL, forward KL
and Jensen-Shannon against their 1-RF teacher at high NFE and at 1 NFE.

For each model, ``--num`` samples from the noise of ``(seed, i)``; scored against as many
fresh data points by the sliced Wasserstein distance (``flowkit.evaluation.sliced_wasserstein``,
512 directions) and by mode coverage: a mode (centre ``0.8 (cos k pi/4, sin k pi/4)``, std
0.05) is covered when at least a quarter of its expected share ``num / 8`` of the samples lie
within 3 std (0.15) of it; "in modes" is the share of all samples within 3 std of some centre.
Writes a markdown table and a picture of scatter panels.

    python scripts/distill_report.py                       # trains what is missing under runs/
    python scripts/distill_report.py --teacher runs/gaussians --steps 1000 --num 10000
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import torch
from PIL import Image, ImageDraw, ImageFont

from flowkit.data.plots import save_image, scatter_image
from flowkit.data.toys import sample_toy
from flowkit.evaluation import sliced_wasserstein
from flowkit.files import write_text
from flowkit.loading import load

DIVERGENCES = ("reverse_kl", "forward_kl", "js")
CENTRES = 0.8 * torch.tensor(
    [[math.cos(k * math.pi / 4), math.sin(k * math.pi / 4)] for k in range(8)]
)


def mode_scores(x: torch.Tensor) -> tuple[int, float]:
    """(modes covered out of 8, share of samples within 3 std of a centre)."""
    distance = torch.cdist(x.double(), CENTRES.double())  # (N, 8)
    near = distance < 0.15
    counts = near.sum(0)
    covered = int((counts >= 0.25 * len(x) / 8).sum())
    return covered, float(near.any(1).double().mean())


def train_teacher(run: Path, steps: int) -> None:
    from flowkit.training import Trainer, load_config

    overrides = [f"train.steps={steps}", "train.sample_every=0", "train.checkpoint_every=1000"]
    Trainer(load_config("configs/gaussians.yaml", overrides), run, progress=False).fit()


def train_2rf(teacher: Path, work: Path, steps: int) -> Path:
    """Reflow pairs of the teacher (RK4, 40 evaluations; 20k pairs), then a 2-RF initialised
    from it (``configs/checkerboard_2rf.yaml``'s recipe on these pairs)."""
    from flowkit.cli.main import main as flowkit
    from flowkit.training import Trainer, load_config

    run, pairs = work / "2rf", work / "pairs"
    if (run / "pipeline").is_dir():
        return run
    if not (pairs / "manifest.json").is_file():
        argv = ["reflow", str(teacher), "--num", "20000", "--out", str(pairs), "--method", "rk4"]
        if flowkit([*argv, "--nfe", "40", "--no-progress"]) != 0:
            raise RuntimeError("flowkit reflow failed")
    overrides = [f"data.root={pairs}", f"model.init_from={teacher}", f"train.steps={steps}",
                 "model.kwargs={hidden_dim: 128, num_layers: 3}"]  # fmt: skip
    Trainer(load_config("configs/checkerboard_2rf.yaml", overrides), run, progress=False).fit()
    return run


def distill(teacher: Path, divergence: str, run: Path, overrides: list[str]) -> float:
    """Distil (unless ``run`` already holds a pipeline); returns the seconds it took."""
    from flowkit.distill import DistillConfig, DistillTrainer
    from flowkit.training import load_config

    if (run / "pipeline").is_dir():
        return float("nan")
    tic = time.perf_counter()
    config = load_config(
        "configs/distill_gaussians.yaml",
        [f"teacher.source={teacher}", f"distill.divergence={divergence}", *overrides],
        schema=DistillConfig,
    )
    DistillTrainer(config, run, progress=False).fit()
    return time.perf_counter() - tic


def panel_row(panels: list[tuple[str, Image.Image]], size: int = 320) -> Image.Image:
    """Titled pictures side by side."""
    font = ImageFont.load_default(size=18)
    margin, title = 12, 30
    pictures = [(t, p.resize((size, size))) for t, p in panels]
    canvas = Image.new("RGB", (len(pictures) * (size + margin) + margin, size + title + 2 * margin),
                       "white")  # fmt: skip
    draw = ImageDraw.Draw(canvas)
    for k, (text, picture) in enumerate(pictures):
        left = margin + k * (size + margin)
        draw.text((left, margin // 2), text, fill="black", font=font)
        canvas.paste(picture, (left, margin + title))
    return canvas


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--teacher", default="runs/gaussians", help="a 1-RF run (trained if absent)"
    )
    parser.add_argument("--teacher-steps", type=int, default=4000)
    parser.add_argument("--work", default="runs/distill_report", help="where the runs go")
    parser.add_argument("--steps", type=int, default=None, help="distillation steps (preset's)")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        help="override a key of configs/distill_gaussians.yaml")  # fmt: skip
    parser.add_argument("--num", type=int, default=10_000)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--teacher-nfe", type=int, default=100)
    parser.add_argument("--rf2-steps", type=int, default=2000, help="2-RF steps (0: no 2-RF)")
    parser.add_argument("--table", default="benchmarks/results/distill_gaussians.md")
    parser.add_argument("--figure", default="docs/distill_gaussians.png")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)  # small networks: threads only contend
    teacher, work = Path(args.teacher), Path(args.work)
    if not teacher.exists():
        train_teacher(teacher, args.teacher_steps)
    overrides = list(args.overrides)
    if args.steps is not None:
        overrides.append(f"train.steps={args.steps}")
    reference = sample_toy("8gaussians", args.num, seed=args.seed + 1000)
    rows, panels = [], []

    def score(name: str, x: torch.Tensor, nfe: int, seconds: float = float("nan")) -> None:
        covered, inside = mode_scores(x)
        sw = sliced_wasserstein(x, reference)
        rows.append((name, nfe, covered, inside, sw, seconds))
        panels.append((f"{name} ({nfe} NFE)", scatter_image(x[:4000], reference[:4000])))
        print(f"{name:>28} nfe={nfe:<4} modes={covered}/8 in-modes={inside:.3f} SW={sw:.4f}",
              flush=True)  # fmt: skip

    model = load(teacher)
    for nfe in (args.teacher_nfe, 1):
        score("1-RF teacher", model.sample(range(args.num), args.seed, nfe=nfe).x, nfe)
    if args.rf2_steps > 0:
        rf2 = train_2rf(teacher, work, args.rf2_steps)
        score("2-RF", load(rf2).sample(range(args.num), args.seed, nfe=1).x, 1)
    for divergence in DIVERGENCES:
        run = work / divergence
        seconds = distill(teacher, divergence, run, overrides)
        x = load(run).sample(range(args.num), args.seed, nfe=1).x
        score(f"f-distill {divergence}", x, 1, seconds)
    lines = [
        "# f-distill on the 8-Gaussian mixture (2-D)",
        "",
        f"Teacher: 1-RF MLP (`configs/gaussians.yaml`, {args.teacher}). Students: "
        "`configs/distill_gaussians.yaml` with `distill.divergence` set"
        + (f" and {overrides}" if overrides else "")
        + ". "
        f"{args.num} samples (seed {args.seed}) against {args.num} fresh data points; SW: "
        "sliced Wasserstein-2, 512 directions; a mode is covered when a quarter of its share "
        "of samples lie within 3 std of it.",
        "",
        "Command: `python scripts/distill_report.py` (CPU).",
        "",
        "| model | NFE | modes covered (/8) | in modes | sliced W2 | distill time s |",
        "|---|---:|---:|---:|---:|---:|",
        *[f"| {n} | {nfe} | {c} | {i:.3f} | {sw:.4f} | {s:.0f} |" for n, nfe, c, i, sw, s in rows],
    ]
    write_text(args.table, "\n".join(lines).replace("| nan |", "| - |") + "\n")
    save_image(panel_row(panels), args.figure)
    print(f"wrote {args.table} and {args.figure}")


if __name__ == "__main__":
    main()
