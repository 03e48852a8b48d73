"""Throughput of one f-distill step against the bare network passes it must make.

One step of :class:`flowkit.distill.DistillTrainer` (JS divergence, discriminator and GAN
term on, one critic update) makes these network passes, each timed here on its own, bare:

- generator: forward + backward at batch B;
- teacher: forward at B, no gradient;
- fake network + head, generator update: forward at B and backward to the input only
  (its weights frozen);
- fake network + head, critic update: forward + backward at 2B (generator samples and
  real data in one pass).

The ratio ``step / sum of passes`` is the loop's overhead (noise and time draws, score
conversions, the three AdamW steps, gradient clipping, the EMA, bookkeeping); the target is
<= 1.1. Times are CPU thread time with one torch thread (the machines are shared), the
median over rounds that alternate the step and the passes; the networks are untrained (the
cost does not depend on the weights).

    python benchmarks/distill.py            # 2-D MLP (batch 512), tiny UNet on digits (batch 128)
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
from bench_common import cpu_name, write_result

from flowkit.distill import DistillConfig, DistillTrainer
from flowkit.distill.networks import generate
from flowkit.distill.step import frozen
from flowkit.models import MLPField, UNetField
from flowkit.models.unet import UNET_PRESETS
from flowkit.training import load_config

CASES: dict[str, tuple[Callable[[], torch.nn.Module], list[str]]] = {
    "mlp 3x128 (8 Gaussians, batch 512)": (
        lambda: MLPField(dim=2, hidden_dim=128, num_layers=3),
        ["data.name=8gaussians", "data.num_points=20000", "optim.batch_size=512"],
    ),
    "tiny unet (digits 8x8, batch 128)": (
        lambda: UNetField(**UNET_PRESETS["tiny"]),
        ["data.name=digits", "optim.batch_size=128"],
    ),
}


PASSES = (
    "generator fwd+bwd",
    "teacher fwd",
    "fake+head fwd+bwd (input)",
    "fake+head fwd+bwd (2B)",
)


def thread_time(fn: Callable[[], None], repeats: int) -> float:
    """Median CPU thread time of ``fn`` over ``repeats`` calls, in seconds."""
    times = []
    for _ in range(repeats):
        tic = time.thread_time()
        fn()
        times.append(time.thread_time() - tic)
    return statistics.median(times)


def bare_passes(trainer: DistillTrainer) -> dict[str, Callable[[], None]]:
    """Each network pass of one step, as a function (module docstring)."""
    batch = trainer.config.optim.batch_size
    shape = (batch, *trainer.shape)
    z, t = torch.randn(shape), torch.rand(batch) * 0.96 + 0.02
    x2, t2 = torch.randn((2 * batch, *trainer.shape)), torch.cat([t, t])
    gen, teacher, fake, head, hook = (trainer.generator, trainer.teacher, trainer.fake,
                                      trainer.head, trainer.hook)  # fmt: skip

    def generator() -> None:
        generate(gen, z).square().mean().backward()

    def teacher_forward() -> None:
        with torch.no_grad():
            teacher(z, t)

    def fake_generator_update() -> None:
        x = z.clone().requires_grad_(True)
        with frozen(fake), frozen(head):
            out = fake(x, t)
            (out.square().mean() + head(hook.take()).mean()).backward()

    def fake_critic_update() -> None:
        out = fake(x2, t2)
        (out.square().mean() + head(hook.take()).mean()).backward()

    return dict(zip(PASSES, (generator, teacher_forward, fake_generator_update,
                             fake_critic_update), strict=True))  # fmt: skip


def measure(name: str, make, overrides: list[str], rounds: int, repeats: int, tmp: Path):
    torch.manual_seed(0)
    teacher_dir = tmp / name.split()[0]
    make().save_pretrained(teacher_dir)
    config = load_config(
        None,
        [f"teacher.source={teacher_dir}", "distill.divergence=js", "train.device=cpu",
         "train.checkpoint_every=1000000", *overrides],
        schema=DistillConfig,
    )  # fmt: skip
    trainer = DistillTrainer(config, tmp / f"run-{teacher_dir.name}", progress=False)
    passes = bare_passes(trainer)
    trainer.train_step()  # warm-up
    for fn in passes.values():
        fn()
    steps, sums, parts = [], [], {k: [] for k in passes}
    for _ in range(rounds):
        steps.append(thread_time(trainer.train_step, repeats))
        for key, fn in passes.items():
            parts[key].append(thread_time(fn, repeats))
        sums.append(sum(parts[key][-1] for key in passes))
    step, total = statistics.median(steps), statistics.median(sums)
    detail = {key: statistics.median(v) for key, v in parts.items()}
    return step, total, detail


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--out", default="benchmarks/results/distill_step.md")
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows, details = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for name, (make, overrides) in CASES.items():
            step, total, detail = measure(name, make, overrides, args.rounds, args.repeats,
                                          Path(tmp))  # fmt: skip
            rows.append(f"| {name} | {step * 1e3:.2f} | {total * 1e3:.2f} | {step / total:.3f} |")
            details.append(f"| {name} | " + " | ".join(f"{v * 1e3:.2f}" for v in detail.values())
                           + " |")  # fmt: skip
            print(rows[-1], flush=True)
    keys = list(PASSES)
    lines = [
        "# f-distill: one step vs the sum of its networks' bare passes",
        "",
        f"Machine: {cpu_name()}, 1 torch thread, torch {torch.__version__}, CPU thread time "
        f"(median of {args.rounds} rounds x {args.repeats} calls).",
        f"Command: `python benchmarks/distill.py --rounds {args.rounds} --repeats "
        f"{args.repeats}`. Target: ratio <= 1.1.",
        "",
        "| case | step ms | sum of bare passes ms | ratio |",
        "|---|---:|---:|---:|",
        *rows,
        "",
        "The bare passes (ms):",
        "",
        "| case | " + " | ".join(keys) + " |",
        "|---|" + "---:|" * len(keys),
        *details,
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    write_result(args.out, text)


if __name__ == "__main__":
    main()
