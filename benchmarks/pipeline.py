"""RectifiedFlowPipeline throughput against a bare Euler loop over the same model.

    bare      ``x = randn(...); for k: x = x + h * model(x, t_k)``; ``(x / 2 + 0.5).clamp(0, 1)``
    pipeline  ``RectifiedFlowPipeline(model, FlowEulerScheduler())(batch_size, nfe,
              generator=..., output_type="pt")`` (progress bar off)

Both draw the same noise from a seeded generator and map the result to ``[0, 1]``, so the
difference is the pipeline's own overhead (scheduler, time conversion, output dataclass).
Every round runs both once, in a shuffled order; the table shows the median images per
second over the rounds and the pipeline's throughput as a fraction of the bare loop's. Before
timing, the two outputs are checked to agree.

    python benchmarks/pipeline.py                               # unet("tiny"), batch 256
    python benchmarks/pipeline.py --preset small --batch-size 64 --budget 20
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import statistics
import time
from pathlib import Path

import diffusers
import torch
from bench_common import cpu_name, write_result

from flowkit.models import unet
from flowkit.pipelines import FlowEulerScheduler, RectifiedFlowPipeline


def bare_loop(model, shape, nfe: int, seed: int) -> torch.Tensor:
    x = torch.randn(shape, generator=torch.Generator().manual_seed(seed))
    h = 1.0 / nfe
    with torch.no_grad():
        for k in range(nfe):
            x = x + h * model(x, torch.full((shape[0],), k * h))
    return (x / 2 + 0.5).clamp(0, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--preset", default="tiny", choices=["tiny", "small"])
    parser.add_argument("--size", type=int, default=None, help="image size (small: 28)")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--nfe", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--budget", type=float, default=20.0, help="seconds per NFE")
    parser.add_argument("--min-rounds", type=int, default=5)
    parser.add_argument("--max-rounds", type=int, default=101)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None, help="write a markdown report")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    size = args.size or (8 if args.preset == "tiny" else 28)
    model = unet(args.preset, sample_size=size).eval()
    shape = (args.batch_size, model.config.in_channels, size, size)
    pipe = RectifiedFlowPipeline(model=model, scheduler=FlowEulerScheduler())
    pipe.set_progress_bar_config(disable=True)

    def run_pipeline(nfe: int) -> torch.Tensor:
        generator = torch.Generator().manual_seed(args.seed)
        return pipe(
            batch_size=args.batch_size,
            num_inference_steps=nfe,
            generator=generator,
            output_type="pt",
        ).images

    def run_bare(nfe: int) -> torch.Tensor:
        return bare_loop(model, shape, nfe, args.seed)

    methods = {"bare": run_bare, "pipeline": run_pipeline}
    rows = []
    rng = random.Random(args.seed)
    for nfe in args.nfe:
        outputs = {name: fn(nfe) for name, fn in methods.items()}  # warm-up and check
        torch.testing.assert_close(outputs["pipeline"], outputs["bare"], rtol=1e-4, atol=1e-4)
        times: dict[str, list[float]] = {name: [] for name in methods}
        start = time.perf_counter()
        rounds = 0
        while rounds < args.min_rounds or (
            rounds < args.max_rounds and time.perf_counter() - start < args.budget
        ):
            order = list(methods)
            rng.shuffle(order)
            for name in order:
                begin = time.perf_counter()
                methods[name](nfe)
                times[name].append(time.perf_counter() - begin)
            rounds += 1
        bare = args.batch_size / statistics.median(times["bare"])
        piped = args.batch_size / statistics.median(times["pipeline"])
        rows.append((nfe, rounds, bare, piped, piped / bare))
        print(f"NFE {nfe}: {rounds} rounds, bare {bare:.0f} img/s, pipeline {piped:.0f} img/s")

    case = f'unet("{args.preset}") ({shape[1]}x{size}x{size}, batch {args.batch_size})'
    lines = [
        "# RectifiedFlowPipeline vs a bare Euler loop",
        "",
        f"Machine: {cpu_name()}, {os.cpu_count()} logical CPUs (shared), "
        f"{args.threads} torch thread(s); torch {torch.__version__}, diffusers "
        f"{diffusers.__version__}; python {platform.python_version()}.",
        "Command: `python benchmarks/pipeline.py "
        f"--preset {args.preset} --size {size} --batch-size {args.batch_size} "
        f"--nfe {' '.join(map(str, args.nfe))} --budget {args.budget} "
        f"--min-rounds {args.min_rounds} --max-rounds {args.max_rounds} "
        f"--threads {args.threads} --seed {args.seed}"
        f"{' --out ' + str(args.out) if args.out else ''}`",
        "",
        "Median over interleaved rounds (shuffled order each round). Both draw the same seeded "
        "noise and return images in [0, 1] (checked to agree to 1e-4 before timing). "
        "Target: the pipeline within 5% of the bare loop (ratio >= 0.95).",
        "",
        "| case | NFE | rounds | bare img/s | pipeline img/s | pipeline / bare |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for nfe, rounds, bare, piped, ratio in rows:
        lines.append(f"| {case} | {nfe} | {rounds} | {bare:.0f} | {piped:.0f} | {ratio:.3f} |")
    report = "\n".join(lines) + "\n"
    print(report)
    if args.out:
        write_result(args.out, report)


if __name__ == "__main__":
    main()
