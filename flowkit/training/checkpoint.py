"""Checkpoints: safetensors weights and optimizer state, written atomically.

Layout: ``RUN/checkpoints/step-00001000/`` holding ``model.safetensors``,
``ema.safetensors``, ``optimizer.safetensors`` and ``state.json`` (step, data position,
random-number-generator states). A checkpoint is assembled in a ``.tmp-`` folder and
renamed into place, so a killed job leaves either a whole checkpoint or none; only the
newest ``keep`` are kept.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file
from torch import nn

from flowkit.files import atomic_path, load_tensors, read_json, safetensors_metadata
from flowkit.training.optimizer_state import (
    flatten_optimizer_state,
    optimizer_state_to_device,
    unflatten_optimizer_state,
)

PREFIX = "step-"


def _state_dict(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().contiguous().cpu() for k, v in module.state_dict().items()}


def encode_rng(state: torch.Tensor) -> str:
    """A generator state (uint8 tensor) as base64 text for JSON."""
    return base64.b64encode(state.cpu().numpy().tobytes()).decode()


def decode_rng(text: str) -> torch.Tensor:
    """Inverse of :func:`encode_rng`."""
    return torch.frombuffer(bytearray(base64.b64decode(text)), dtype=torch.uint8)


@dataclass
class Checkpoint:
    """A loaded checkpoint: where it is, its step and its JSON state."""

    path: Path
    step: int
    state: dict[str, Any]


class CheckpointManager:
    """Saves, finds and restores checkpoints under ``RUN/checkpoints``."""

    def __init__(self, run_dir: str | os.PathLike, keep: int = 2) -> None:
        if keep < 1:
            raise ValueError(f"keep_checkpoints must be >= 1, got {keep}")
        self.root = Path(run_dir) / "checkpoints"
        self.keep = keep

    def list(self) -> list[Path]:
        """Complete checkpoints, oldest first (half-written ``.tmp-`` folders are ignored)."""
        if not self.root.is_dir():
            return []
        found = [p for p in self.root.iterdir() if p.is_dir() and p.name.startswith(PREFIX)]
        return sorted(found, key=lambda p: int(p.name[len(PREFIX) :]))

    def path(self, step: int) -> Path:
        """Where checkpoint ``step`` is (or would be) saved."""
        return self.root / f"{PREFIX}{step:08d}"

    def save(
        self,
        step: int,
        model: nn.Module,
        ema_model: nn.Module,
        optimizer: torch.optim.Optimizer,
        state: dict[str, Any],
    ) -> Path:
        """Write checkpoint ``step`` atomically, then prune old ones."""
        self.root.mkdir(parents=True, exist_ok=True)
        final = self.path(step)
        with atomic_path(final, is_dir=True) as tmp:
            tmp.mkdir()
            save_file(_state_dict(model), tmp / "model.safetensors")
            save_file(_state_dict(ema_model), tmp / "ema.safetensors")
            tensors, meta = flatten_optimizer_state(optimizer.state_dict())
            save_file(tensors, tmp / "optimizer.safetensors", metadata={"meta": meta})
            (tmp / "state.json").write_text(json.dumps({"step": step, **state}))
        for old in self.list()[: -self.keep]:
            shutil.rmtree(old, ignore_errors=True)
        return final

    def latest(self) -> Path | None:
        """The newest complete checkpoint folder, or ``None``."""
        found = self.list()
        return found[-1] if found else None

    def load(
        self,
        path: Path,
        model: nn.Module,
        ema_model: nn.Module,
        optimizer: torch.optim.Optimizer,
    ) -> Checkpoint:
        """Restore weights and optimizer state in place; return the JSON state."""
        for name in ("model.safetensors", "ema.safetensors", "optimizer.safetensors", "state.json"):
            if not (path / name).is_file():
                raise FileNotFoundError(f"checkpoint {str(path)!r} is missing {name}")
        device = str(next(model.parameters()).device)
        what = "checkpoint file"
        weights = load_tensors(path / "model.safetensors", device, what)
        ema_weights = load_tensors(path / "ema.safetensors", device, what)
        tensors = load_tensors(path / "optimizer.safetensors", "cpu", what)
        meta = safetensors_metadata(path / "optimizer.safetensors", what).get("meta")
        state = read_json(path / "state.json", what)
        if meta is None or not isinstance(state, dict) or "step" not in state:
            raise ValueError(
                f"checkpoint {str(path)!r} is incomplete (no optimizer metadata or step); "
                "delete this folder to resume from the one before it"
            )
        model.load_state_dict(weights)
        ema_model.load_state_dict(ema_weights)
        optimizer.load_state_dict(unflatten_optimizer_state(tensors, meta))
        optimizer_state_to_device(optimizer)
        return Checkpoint(path=path, step=int(state["step"]), state=state)
