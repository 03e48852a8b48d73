"""Train a 2-rectified flow in one command: 1-RF -> teacher pairs -> 2-RF and 2-RF++ ->
quality at 1, 2 and 4 Euler steps beside the teacher at many steps.

    python scripts/train_2rf.py                              # digits, see README for the time
    python scripts/train_2rf.py --preset checkerboard --out runs/checkerboard_2rf
    python scripts/train_2rf.py --teacher runs/digits        # reuse a trained 1-RF
    torchrun --standalone --nproc_per_node=8 scripts/train_2rf.py --preset cifar10 \\
        --data-root /data/cifar10/train --out runs/cifar10_2rf

Stages (each one resumes where it stopped when the command is run again):
  1. 1-RF: `flowkit train` of the preset's config (skipped with --teacher);
  2. pairs: `flowkit reflow` of the 1-RF's EMA weights (OUT/pairs);
  3. 2-RF (Liu et al.: same loss on the pairs, initialised from the 1-RF) and 2-RF++ (Lee
     et al.: U-shaped time law, pseudo-Huber; LPIPS-Huber on CIFAR-10);
  4. report: FID (images; the preset's feature network) or sliced Wasserstein to held-out
     data (2-D), and straightness, at each NFE; OUT/report.md and OUT/report.png (sample
     grids at 1 NFE beside the teacher's, and quality against NFE).
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from flowkit.distributed import barrier, cpu_threads, init_distributed, shutdown_and_exit
from flowkit.experiments.stages import record_minutes, train_or_resume
from flowkit.reflow import SolverSpec, generate_pairs, load_teacher

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


@dataclass
class Preset:
    """What the chain trains and how it is judged."""

    teacher_config: str
    student_configs: dict[str, str]
    pairs: int
    teacher_solver: SolverSpec
    teacher_overrides: list[str] = field(default_factory=list)
    eval_num: int = 2000
    pair_dtype: str = "float32"
    reference: str | None = None  # data set the FID reference is computed from


PRESETS = {
    "digits": Preset(
        teacher_config="digits.yaml",
        student_configs={"2-RF": "digits_2rf.yaml", "2-RF++": "digits_2rfpp.yaml"},
        pairs=10_000,
        teacher_solver=SolverSpec("rk4", nfe=32),
        teacher_overrides=["train.steps=4000", "train.sample_every=0"],
        reference="digits",
    ),
    "checkerboard": Preset(
        teacher_config="checkerboard.yaml",
        student_configs={"2-RF": "checkerboard_2rf.yaml"},
        pairs=20_000,
        teacher_solver=SolverSpec("dopri5"),
        eval_num=5000,
    ),
    "cifar10": Preset(
        teacher_config="cifar10.yaml",
        student_configs={"2-RF": "cifar10_2rf.yaml", "2-RF++": "cifar10_2rfpp.yaml"},
        pairs=1_000_000,
        teacher_solver=SolverSpec("dopri5"),
        eval_num=50_000,
        pair_dtype="float16",
    ),
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--preset", default="digits", choices=sorted(PRESETS))
    parser.add_argument("--out", default=None, help="output folder (default runs/<preset>_2rf)")
    parser.add_argument("--teacher", default=None, help="an existing 1-RF run: skip stage 1")
    parser.add_argument("--data-root", default=None, help="image folder (cifar10 preset)")
    parser.add_argument("--pairs", type=int, default=None, help="number of teacher pairs")
    parser.add_argument("--eval-num", type=int, default=None, help="samples per FID / SW")
    parser.add_argument("--nfe", type=int, nargs="+", default=[1, 2, 4], help="Euler NFEs")
    parser.add_argument("--set-1rf", nargs="*", default=[], metavar="KEY=VALUE")
    parser.add_argument("--set-2rf", nargs="*", default=[], metavar="KEY=VALUE")
    parser.add_argument("--device", default="auto")
    parser.add_argument(
        "--threads", type=int, default=None, help="CPU threads (default: half the cores)"
    )
    parser.add_argument(
        "--straightness-num",
        type=int,
        default=None,
        help="samples for straightness (default: min(1000, eval-num); 0 skips it)",
    )
    parser.add_argument("--no-progress", action="store_true")
    return parser.parse_args(argv)


def report(
    out: Path,
    teacher_dir: Path,
    students: dict[str, Path],
    preset: Preset,
    nfes: list[int],
    num: int,
    device: torch.device,
    progress: bool,
    data_root: str | None,
    straightness_num: int,
) -> None:
    """Score every model at each Euler NFE (the teacher also with its pair solver) and write
    OUT/report.md, OUT/report.json and OUT/report.png (rank 0 writes; all ranks sample)."""
    from flowkit.experiments.nfe_report import Judge, evaluate_row, fid_judge, write_report

    if preset.reference or data_root:
        data = preset.reference or data_root
        judge = fid_judge(data, out / "reference.npz", num, device, progress)
    else:
        from flowkit.data import sample_toy
        from flowkit.training.config import load_config

        toy = load_config(teacher_dir / "config.yaml").data.name
        held_out = sample_toy(toy, num, seed=10_001)
        judge = Judge("sw", num, held_out=held_out, device=device, progress=progress)
    solver = preset.teacher_solver
    reference = (solver.method, solver.nfe)
    rows = [evaluate_row("1-RF (teacher)", teacher_dir, judge, nfes, reference, straightness_num)]
    rows += [
        evaluate_row(name, folder, judge, nfes, straightness_num=straightness_num)
        for name, folder in students.items()
    ]
    teacher = ("1-RF", teacher_dir, solver.method, solver.nfe)
    write_report(out, rows, judge, {"1-RF": teacher_dir, **students}, teacher)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    preset = PRESETS[args.preset]
    out = Path(args.out or f"runs/{args.preset}_2rf")
    dist = init_distributed(args.device)
    threads, why = cpu_threads(args.threads)
    torch.set_num_threads(threads)
    if dist.is_main and dist.device.type == "cpu":
        print(f"using {threads} CPU thread(s) per process ({why}; --threads to change)")
    progress = not args.no_progress
    data = [f"data.root={args.data_root}"] if args.data_root else []
    timings: dict[str, float] = {}

    tic = time.perf_counter()
    teacher_dir = Path(args.teacher) if args.teacher else out / "1rf"
    if args.teacher is None:
        overrides = [*preset.teacher_overrides, *data, *args.set_1rf]
        train_or_resume(CONFIGS / preset.teacher_config, overrides, teacher_dir, progress)
    timings["1-RF"] = time.perf_counter() - tic

    tic = time.perf_counter()
    teacher = load_teacher(teacher_dir).to(dist.device)
    generate_pairs(
        teacher,
        args.pairs or preset.pairs,
        out / "pairs",
        preset.teacher_solver,
        dtype=preset.pair_dtype,
        progress=progress,
    )
    timings["pairs"] = time.perf_counter() - tic

    students: dict[str, Path] = {}
    for name, config in preset.student_configs.items():
        tic = time.perf_counter()
        overrides = [f"data.root={out / 'pairs'}", f"model.init_from={teacher_dir}", *args.set_2rf]
        folder = out / name.lower().replace("+", "p").replace("-", "")
        students[name] = train_or_resume(CONFIGS / config, overrides, folder, progress)
        timings[name] = time.perf_counter() - tic

    tic = time.perf_counter()
    eval_num = args.eval_num or preset.eval_num
    report(
        out,
        teacher_dir,
        students,
        preset,
        nfes=args.nfe,
        num=eval_num,
        device=dist.device,
        progress=progress and dist.is_main,
        data_root=args.data_root,
        straightness_num=(
            min(1000, eval_num) if args.straightness_num is None else args.straightness_num
        ),
    )
    timings["report"] = time.perf_counter() - tic
    barrier()
    if dist.is_main:
        minutes = record_minutes(out / "timings.json", timings)
        print((out / "report.md").read_text())
        print(f"minutes per stage: {minutes}")
    shutdown_and_exit(0)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
