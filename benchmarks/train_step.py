"""Training-step throughput: flowkit's Trainer against a bare PyTorch loop.

Both loops train the same network on the same in-memory data with the same rectified-flow
loss (``x_t = t x1 + (1 - t) x0``, MSE to ``x1 - x0``), AdamW, gradient clipping at 1.0 and
an EMA of the weights (``torch._foreach_lerp_``) — what a careful user writes by hand. The
trainer's number is its steady-state rate inside ``fit()`` as it logs it to
``metrics.jsonl`` (index stream, batch gather, loss, logging, NaN checks, progress
bookkeeping included; the one-off start-up and final save excluded, as they vanish over a
real run). Runs alternate between the two loops so that machine noise hits both; the
table reports the median of the rounds.

    python benchmarks/train_step.py            # MLP on the checkerboard, small UNet on 28 px
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch

import flowkit.training.trainer as trainer_module
from flowkit.data import InMemoryDataset
from flowkit.training import Trainer, load_config
from flowkit.training.builders import build_data

CASES = {
    "mlp (checkerboard, batch 512)": [
        "data.name=checkerboard",
        "data.num_points=20000",
        "model.kind=mlp",
        "model.kwargs={hidden_dim: 128, num_layers: 3}",
        "optim.batch_size=512",
    ],
    "small unet (28 px, batch 32)": [
        "data.name=digits",
        "model.kind=unet",
        "model.preset=small",
        "optim.batch_size=32",
    ],
}


def make_config(overrides: list[str], steps: int):
    return load_config(
        None,
        overrides
        + [
            f"train.steps={steps}",
            "train.log_every=50",
            f"train.checkpoint_every={steps}",
            "train.sample_every=0",
            "train.sample_num=16",
            "train.sample_nfe=1",
            "train.device=cpu",
            "optim.grad_clip=1.0",
            "train.ema_decay=0.999",
        ],
    )


def time_trainer(config, workdir: Path) -> float:
    run = workdir / f"run-{time.perf_counter_ns()}"
    Trainer(config, run, progress=False).fit()
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return statistics.median(r["steps_per_s"] for r in records[1:])  # the first has warm-up


def time_bare_loop(config, steps: int) -> float:
    trainer = Trainer(config, tempfile.mkdtemp(), progress=False)  # same model and data
    model, data = trainer.model, trainer.dataset.x
    ema = [p.detach().clone() for p in model.parameters()]
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.optim.lr)
    g = torch.Generator().manual_seed(0)
    tic = time.perf_counter()
    for _ in range(steps):
        x1 = data[torch.randint(len(data), (config.optim.batch_size,), generator=g)]
        x0 = torch.randn(x1.shape, generator=g)
        t = torch.rand(x1.shape[0], generator=g)
        tb = t.view(-1, *([1] * (x1.dim() - 1)))
        loss = (model((1 - tb) * x0 + tb * x1, t) - (x1 - x0)).pow(2).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        with torch.no_grad():
            torch._foreach_lerp_(ema, [p.detach() for p in model.parameters()], 0.001)
    return steps / (time.perf_counter() - tic)


def random_images(n: int = 1024, size: int = 28) -> InMemoryDataset:
    """In-memory 28 px images standing in for MNIST (the loop cost does not depend on
    what the pixels show)."""
    g = torch.Generator().manual_seed(0)
    return InMemoryDataset(torch.rand(n, 1, size, size, generator=g) * 2 - 1)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", default="benchmarks/results/train_step.md")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        for name, overrides in CASES.items():
            is_unet = "unet" in name
            steps = 60 if is_unet else 400
            # The UNet case trains on in-memory 28 px images (the digits are 8x8).
            trainer_module.build_data = (lambda cfg: random_images()) if is_unet else build_data
            config = make_config(overrides, steps)
            time_bare_loop(config, 5)  # warm-up
            flowkit_rates, bare_rates = [], []
            for _ in range(args.rounds):
                flowkit_rates.append(time_trainer(config, workdir))
                bare_rates.append(time_bare_loop(config, steps))
            f, b = statistics.median(flowkit_rates), statistics.median(bare_rates)
            rows.append((name, f, b, f / b))
    lines = [
        "# Training step: flowkit Trainer vs a bare PyTorch loop",
        "",
        f"Machine: {platform.processor() or platform.machine()}, "
        f"{torch.get_num_threads()} torch threads, torch {torch.__version__}, CPU.",
        "Command: `python benchmarks/train_step.py`",
        "",
        "| case | flowkit steps/s | bare loop steps/s | ratio |",
        "|---|---:|---:|---:|",
        *[f"| {n} | {f:.1f} | {b:.1f} | {r:.3f} |" for n, f, b, r in rows],
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    Path(args.out).write_text(text)


if __name__ == "__main__":
    main()
