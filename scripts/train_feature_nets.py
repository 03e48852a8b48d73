"""Train the shipped feature networks: DigitClassifier on digits (8x8) and MNIST-5k (28x28).

Each network trains on a fixed stratified 80/20 split (``holdout_split``: within each class
every fifth image is held out) with a fixed seed, AdamW with a one-cycle learning rate,
label smoothing and small random integer shifts (no flips: digits are not mirror-symmetric).
The weights are written as float32 safetensors to ``flowkit/evaluation/weights/{name}.safetensors``
and the held-out accuracy, measured by reloading the written file, to ``accuracy.json``; both
are written to a temporary file and renamed into place.

Example:
    python scripts/train_feature_nets.py                     # both, ~1-2 min on one CPU core
    python scripts/train_feature_nets.py --nets digits --out /tmp/weights --threads 2
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from flowkit.data.builtin_images import load_digits, load_mnist5k
from flowkit.evaluation.classifiers import (
    DigitClassifier,
    holdout_split,
    load_classifier,
    save_classifier,
)

WEIGHTS_DIR = Path(__file__).resolve().parents[1] / "flowkit" / "evaluation" / "weights"
SPLIT = "stratified 80/20: within each class, every 5th image in data-set order is held out"

# name -> (loader, model kwargs, epochs, batch size, peak learning rate, max shift in pixels)
RECIPES = {
    "digits": (load_digits, {"image_size": 8, "width": 32}, 40, 64, 3e-3, 1),
    "mnist": (load_mnist5k, {"image_size": 28, "width": 16}, 15, 64, 3e-3, 2),
}


def random_shift(x: Tensor, max_shift: int, generator: torch.Generator) -> Tensor:
    """Shift each image ``(B, C, H, W)`` by integers in ``[-max_shift, max_shift]`` along
    both axes, filling with the background value -1."""
    if max_shift == 0:
        return x
    b, _, h, w = x.shape
    shifts = torch.randint(-max_shift, max_shift + 1, (b, 2), generator=generator)
    theta = torch.zeros(b, 2, 3)
    theta[:, 0, 0] = theta[:, 1, 1] = 1.0
    theta[:, 0, 2] = 2.0 * shifts[:, 0] / w
    theta[:, 1, 2] = 2.0 * shifts[:, 1] / h
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    moved = F.grid_sample(x + 1.0, grid, mode="nearest", align_corners=False)
    return moved - 1.0


@torch.no_grad()
def count_correct(model: DigitClassifier, x: Tensor, labels: Tensor) -> int:
    model.eval()
    predictions = torch.cat([model(chunk).argmax(1) for chunk in x.split(500)])
    return int((predictions == labels).sum())


def train_one(name: str, out_dir: Path, seed: int, epochs: int | None) -> dict:
    loader, kwargs, default_epochs, batch_size, lr, max_shift = RECIPES[name]
    epochs = default_epochs if epochs is None else epochs
    x, labels = loader()
    train_index, test_index = holdout_split(labels)
    x_train, y_train = x[train_index], labels[train_index]
    x_test, y_test = x[test_index], labels[test_index]

    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    model = DigitClassifier(in_channels=1, num_classes=10, **kwargs)
    steps_per_epoch = -(-len(x_train) // batch_size)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=lr, total_steps=epochs * steps_per_epoch
    )
    start = time.perf_counter()
    for epoch in range(epochs):
        model.train()
        order = torch.randperm(len(x_train), generator=generator)
        total = 0.0
        for batch in order.split(batch_size):
            images = random_shift(x_train[batch], max_shift, generator)
            loss = F.cross_entropy(model(images), y_train[batch], label_smoothing=0.1)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            total += loss.item() * len(batch)
        if epoch % 5 == 4 or epoch == epochs - 1:
            accuracy = count_correct(model, x_test, y_test) / len(y_test)
            print(
                f"{name} epoch {epoch + 1}/{epochs}: loss {total / len(x_train):.4f} "
                f"test accuracy {accuracy:.4f} ({time.perf_counter() - start:.0f} s)"
            )
    seconds = time.perf_counter() - start

    path = out_dir / f"{name}.safetensors"
    save_classifier(model, path, metadata={"dataset": name, "seed": str(seed)})
    reloaded = load_classifier(path)  # the recorded accuracy is that of the shipped file
    correct = count_correct(reloaded, x_test, y_test)
    return {
        "file": path.name,
        "test_accuracy": correct / len(y_test),
        "test_correct": correct,
        "test_size": len(y_test),
        "train_size": len(y_train),
        "split": SPLIT,
        "seed": seed,
        "epochs": epochs,
        "batch_size": batch_size,
        "max_shift": max_shift,
        "parameters": sum(p.numel() for p in model.parameters()),
        "num_features": model.num_features,
        "config": model.config,
        "dtype": "float32",
        "bytes": path.stat().st_size,
        "train_seconds": round(seconds, 1),
        "torch": torch.__version__,
    }


def write_json_atomic(path: Path, data: dict) -> None:
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    os.replace(partial, path)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="example: python scripts/train_feature_nets.py --nets digits mnist --seed 0",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--nets", nargs="+", choices=sorted(RECIPES), default=sorted(RECIPES))
    parser.add_argument("--out", type=Path, default=WEIGHTS_DIR, help="weights folder")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=None, help="override every recipe's epochs")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    summary_path = args.out / "accuracy.json"
    summary = json.loads(summary_path.read_text()) if summary_path.is_file() else {}
    for name in args.nets:
        summary[name] = train_one(name, args.out, args.seed, args.epochs)
        print(f"{name}: {json.dumps(summary[name], sort_keys=True)}")
        write_json_atomic(summary_path, summary)


if __name__ == "__main__":
    main()
