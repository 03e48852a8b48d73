"""Rectified Diffusion (Wang et al. 2024) in one command: a VP epsilon diffusion teacher ->
its deterministic DDIM (noise, sample) pairs -> the same model retrained on them -> FID at 1, 2
and 4 DDIM steps beside the teacher.

    python scripts/rectified_diffusion.py                   # digits, ~9 min on a 2-core CPU
    python scripts/rectified_diffusion.py --teacher runs/digits_vp    # reuse a VP model
    python scripts/rectified_diffusion.py --phases 2        # also the phased variant
    python scripts/rectified_diffusion.py --pairs 20000 --pair-nfe 50 --out runs/rd_big \\
        --set-rd train.steps=4000

Stages (each one resumes where it stopped when the command is run again):
  1. teacher: `flowkit train configs/digits_vp.yaml` (VP, epsilon; skipped with --teacher);
  2. pairs: DDIM (eta = 0) with --pair-nfe steps of the teacher's EMA weights from pure noise
     (t = 0) to the data end (t = 1), storing the states at the --phases boundaries (OUT/pairs);
  3. rectified diffusion (configs/digits_rectified_diffusion.yaml: same path and prediction,
     paired noise, pseudo-Huber on x̂1, c = 1e-3, initialised from the teacher) and, with
     --phases K > 0, its phased variant on the same pairs (K equal phases of [0, 1]; each
     phase straightened towards the teacher's state at its end);
  4. report: FID (digits feature network, --eval-num samples) at each DDIM step count
     ("trailing": uniform from t = 0 to t = 1), the teacher also at its pair NFE;
     OUT/report.md, OUT/report.json, OUT/report.png.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from flowkit.distributed import barrier, cpu_threads, init_distributed, shutdown_and_exit
from flowkit.experiments.stages import record_minutes, train_or_resume
from flowkit.objectives.rectified_diffusion import phase_boundaries
from flowkit.reflow import SolverSpec, generate_pairs, load_teacher

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
TEACHER_CONFIG = "digits_vp.yaml"
STUDENT_CONFIGS = {
    "rectified diffusion": "digits_rectified_diffusion.yaml",
    "phased": "digits_rectified_diffusion_phased.yaml",
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", default="runs/digits_rectified_diffusion", help="output folder")
    parser.add_argument("--teacher", default=None, help="a trained VP run: skip stage 1")
    parser.add_argument("--pairs", type=int, default=10_000, help="number of teacher pairs")
    parser.add_argument("--pair-nfe", type=int, default=40, help="teacher DDIM steps per pair")
    parser.add_argument(
        "--phases", type=int, default=0, help="phases of the phased variant (0: leave it out)"
    )
    parser.add_argument("--eval-num", type=int, default=2000, help="samples per FID")
    parser.add_argument("--nfe", type=int, nargs="+", default=[1, 2, 4], help="DDIM steps")
    parser.add_argument("--reference", default=None, help="FID statistics (default: computed)")
    parser.add_argument("--set-teacher", nargs="*", default=[], metavar="KEY=VALUE")
    parser.add_argument("--set-rd", nargs="*", default=[], metavar="KEY=VALUE")
    parser.add_argument("--device", default="auto")
    parser.add_argument(
        "--threads", type=int, default=None, help="CPU threads (default: half the cores)"
    )
    parser.add_argument("--no-progress", action="store_true")
    return parser.parse_args(argv)


def report(
    out: Path,
    teacher_dir: Path,
    students: dict[str, Path],
    pair_nfe: int,
    nfes: list[int],
    num: int,
    reference: Path,
    device: torch.device,
    progress: bool,
) -> None:
    """Score every model at each DDIM step count (the teacher also at its pair NFE) and write
    OUT/report.md, OUT/report.json and OUT/report.png (rank 0 writes; all ranks sample)."""
    from flowkit.experiments.nfe_report import evaluate_row, fid_judge, write_report

    judge = fid_judge("digits", reference, num, device, progress)
    # no straightness: along Euler on VP it is dominated by the velocity's blow-up at t -> 1
    options = dict(straightness_num=0, method="ddim")
    rows = [evaluate_row("VP teacher", teacher_dir, judge, nfes, ("ddim", pair_nfe), **options)]
    rows += [evaluate_row(name, model, judge, nfes, **options) for name, model in students.items()]
    note = (
        f"DDIM (eta = 0, trailing: uniform from t = 0 to t = 1) at each NFE; the teacher's "
        f"pairs came from its {pair_nfe}-step DDIM ODE.\n\n"
    )
    teacher = ("teacher", teacher_dir, "ddim", pair_nfe)
    models = {"teacher": teacher_dir, **students}
    write_report(out, rows, judge, models, teacher, method="ddim", note=note)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    out = Path(args.out)
    dist = init_distributed(args.device)
    threads, why = cpu_threads(args.threads)
    torch.set_num_threads(threads)
    if dist.is_main and dist.device.type == "cpu":
        print(f"using {threads} CPU thread(s) per process ({why}; --threads to change)")
    progress = not args.no_progress
    timings: dict[str, float] = {}

    tic = time.perf_counter()
    teacher_dir = Path(args.teacher) if args.teacher else out / "teacher"
    if args.teacher is None:
        overrides = ["train.sample_every=0", *args.set_teacher]
        train_or_resume(CONFIGS / TEACHER_CONFIG, overrides, teacher_dir, progress)
    timings["teacher"] = time.perf_counter() - tic

    tic = time.perf_counter()
    # the loss's own boundaries (K equal phases of [0, 1]), so pairs and loss agree exactly
    boundaries = phase_boundaries(args.phases).tolist() if args.phases > 0 else None
    generate_pairs(
        load_teacher(teacher_dir).to(dist.device),
        args.pairs,
        out / "pairs",
        SolverSpec("ddim", nfe=args.pair_nfe),
        boundaries=boundaries,
        progress=progress,
    )
    timings["pairs"] = time.perf_counter() - tic

    students: dict[str, Path] = {}
    for name, config in STUDENT_CONFIGS.items():
        if name == "phased" and boundaries is None:
            continue
        tic = time.perf_counter()
        overrides = [f"data.root={out / 'pairs'}", f"model.init_from={teacher_dir}"]
        if name == "phased":
            name = f"phased ({args.phases} phases)"
            overrides.append(f"objective.kwargs.phases={args.phases}")
        folder = out / config.removeprefix("digits_").removesuffix(".yaml")
        students[name] = train_or_resume(
            CONFIGS / config, [*overrides, *args.set_rd], folder, progress
        )
        timings[name] = time.perf_counter() - tic

    tic = time.perf_counter()
    report(
        out,
        teacher_dir,
        students,
        pair_nfe=args.pair_nfe,
        nfes=args.nfe,
        num=args.eval_num,
        reference=Path(args.reference) if args.reference else out / "reference.npz",
        device=dist.device,
        progress=progress and dist.is_main,
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
