"""Checkpoints: safetensors weights and optimizer state, written atomically.

Layout: ``RUN/checkpoints/step-00001000/`` holding ``model.safetensors``,
``ema.safetensors``, ``optimizer.safetensors`` and ``state.json`` (step, data position,
random-number-generator states); loops of several networks save any named set of modules
and optimizers the same way (:meth:`CheckpointManager.save_named`). A checkpoint is
assembled in a ``.tmp-`` folder and renamed into place, so a killed job leaves either a
whole checkpoint or none; only the newest ``keep`` are kept.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
from collections.abc import Mapping
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
        """Write checkpoint ``step`` of one network (its EMA copy and its optimizer)."""
        return self.save_named(
            step, {"model": model, "ema": ema_model}, {"optimizer": optimizer}, state
        )

    def save_named(
        self,
        step: int,
        modules: Mapping[str, nn.Module],
        optimizers: Mapping[str, torch.optim.Optimizer],
        state: dict[str, Any],
    ) -> Path:
        """Write checkpoint ``step`` atomically, then prune old ones.

        Each module is saved as ``NAME.safetensors`` and each optimizer as
        ``NAME.safetensors`` with its layout in the metadata, so a loop of several networks
        (a generator, a fake score and a discriminator; a policy and a value network) is
        one checkpoint. Names must be distinct across both mappings.
        """
        _check_names(modules, optimizers)
        self.root.mkdir(parents=True, exist_ok=True)
        final = self.path(step)
        with atomic_path(final, is_dir=True) as tmp:
            tmp.mkdir()
            for name, module in modules.items():
                save_file(_state_dict(module), tmp / f"{name}.safetensors")
            for name, optimizer in optimizers.items():
                tensors, meta = flatten_optimizer_state(optimizer.state_dict())
                save_file(tensors, tmp / f"{name}.safetensors", metadata={"meta": meta})
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
        """Restore one network, its EMA copy and its optimizer in place."""
        return self.load_named(
            path, {"model": model, "ema": ema_model}, {"optimizer": optimizer}
        )

    def load_named(
        self,
        path: Path,
        modules: Mapping[str, nn.Module],
        optimizers: Mapping[str, torch.optim.Optimizer],
    ) -> Checkpoint:
        """Restore the weights and optimizer states :meth:`save_named` wrote, in place (on
        each module's own device); return the JSON state."""
        _check_names(modules, optimizers)
        for name in [*modules, *optimizers, "state"]:
            file = f"{name}.json" if name == "state" else f"{name}.safetensors"
            if not (path / file).is_file():
                raise FileNotFoundError(f"checkpoint {str(path)!r} is missing {file}")
        what = "checkpoint file"
        state = read_json(path / "state.json", what)
        if not isinstance(state, dict) or "step" not in state:
            raise ValueError(
                f"checkpoint {str(path)!r} is incomplete (no step in state.json); "
                "delete this folder to resume from the one before it"
            )
        layouts = {}
        for name in optimizers:
            layouts[name] = safetensors_metadata(path / f"{name}.safetensors", what).get("meta")
            if layouts[name] is None:
                raise ValueError(
                    f"checkpoint {str(path)!r}: {name}.safetensors has no optimizer metadata; "
                    "delete this folder to resume from the one before it"
                )
        for name, module in modules.items():
            device = str(next(iter(module.state_dict().values())).device)
            module.load_state_dict(load_tensors(path / f"{name}.safetensors", device, what))
        for name, optimizer in optimizers.items():
            tensors = load_tensors(path / f"{name}.safetensors", "cpu", what)
            optimizer.load_state_dict(unflatten_optimizer_state(tensors, layouts[name]))
            optimizer_state_to_device(optimizer)
        return Checkpoint(path=path, step=int(state["step"]), state=state)


def _check_names(
    modules: Mapping[str, nn.Module], optimizers: Mapping[str, torch.optim.Optimizer]
) -> None:
    names = set(modules) | set(optimizers)
    clash = sorted((set(modules) & set(optimizers)) | ({"state"} & names))
    if clash:
        raise ValueError(
            f"checkpoint names {clash} are used twice (or are 'state'); give each module and "
            "optimizer its own name"
        )
