"""A teacher for reflow: any saved flowkit model or diffusers pipeline, as an ODE map
``x0 -> x1`` from unit noise to a sample.

:func:`load_teacher` accepts a flowkit run, pipeline or model directory (the EMA weights
the trainer saved) and a diffusers DDPM / DDIM / flow-matching pipeline directory (see
:func:`flowkit.models.teachers.load_diffusers_teacher`). The solver defaults to the
authors' practice (Liu et al.): adaptive Dormand-Prince, ``rtol = atol = 1e-5``.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor, nn

from flowkit.paths import AffinePath
from flowkit.solvers import sample_ode, seeded_noise
from flowkit.solvers.noise import sample_seed


@dataclass
class SolverSpec:
    """How the teacher's ODE is integrated: an adaptive ``method`` with ``rtol``/``atol``,
    or a fixed-step one with ``nfe`` evaluations on ``grid``."""

    method: str = "dopri5"
    nfe: int | None = None
    grid: str = "uniform"
    rtol: float = 1e-5
    atol: float = 1e-5
    options: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {
            "method": self.method,
            "nfe": self.nfe,
            "grid": self.grid,
            "rtol": self.rtol,
            "atol": self.atol,
        }


@dataclass
class LoadedTeacher:
    """The teacher network and how to read it."""

    model: nn.Module
    path: AffinePath
    sample_shape: tuple[int, ...]
    num_classes: int | None
    source: str

    def to(self, device: torch.device) -> LoadedTeacher:
        self.model = self.model.to(device).eval()
        return self

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def digest(self) -> str:
        """SHA-256 over the weights (names, dtypes and bytes, in name order)."""
        digest = hashlib.sha256()
        for name, tensor in sorted(self.model.state_dict().items()):
            digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)}".encode())
            digest.update(tensor.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
        return digest.hexdigest()

    def noise(self, indices: Sequence[int], seed: int) -> Tensor:
        """Unit noise ``(len(indices), *sample_shape)``, row k from ``(seed, indices[k])``."""
        return seeded_noise(self.sample_shape, indices, seed)

    def labels(self, indices: Sequence[int], seed: int) -> Tensor | None:
        """Uniform class labels for a conditional teacher, label k from ``(seed, indices[k])``
        (a stream separate from the noise's); None for an unconditional one."""
        if self.num_classes is None:
            return None
        draws = [
            torch.randint(
                self.num_classes,
                (),
                generator=torch.Generator().manual_seed(sample_seed(seed, i) ^ 0x5EED),
            )
            for i in indices
        ]
        return torch.stack(draws).long()

    @torch.no_grad()
    def integrate(
        self, x0: Tensor, labels: Tensor | None, solver: SolverSpec
    ) -> tuple[Tensor, int]:
        """Solve the teacher's ODE from unit noise ``x0`` (scaled by the path's prior std)
        at ``t = 0`` to its data end; returns ``(x1, network evaluations)``."""
        device = self.device
        cond = None if labels is None else {"class_labels": labels.to(device)}
        result = sample_ode(
            self.model,
            x0.to(device) * self.path.prior_std,
            nfe=solver.nfe,
            method=solver.method,
            grid=solver.grid,
            path=self.path,
            rtol=solver.rtol,
            atol=solver.atol,
            grid_options=solver.options or None,
            cond=cond,
        )
        return result.x, result.nfe


def _num_classes(model: nn.Module) -> int | None:
    config = getattr(model, "config", {}) or {}
    value = getattr(model, "num_classes", None) or config.get("num_classes")
    return int(value) if value else None


def _is_flowkit_pipeline(path: Path) -> bool:
    for candidate in (path, path / "pipeline"):
        index_file = candidate / "model_index.json"
        if index_file.is_file():
            index = json.loads(index_file.read_text())
            return "model" in index or "generator" in index
    return (path / "config.json").is_file()


def load_teacher(path: str | os.PathLike) -> LoadedTeacher:
    """The model saved at ``path``, on CPU in eval mode.

    Raises:
        FileNotFoundError: ``path`` holds neither a flowkit model nor a diffusers pipeline.
    """
    from flowkit.pipelines.rectified_flow import sample_shape

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"teacher {str(path)!r} does not exist")
    if _is_flowkit_pipeline(path):
        from flowkit.pipelines.runs import load_field

        model, affine = load_field(path)
    else:
        from flowkit.models.teachers import load_diffusers_teacher

        model = load_diffusers_teacher(path)
        affine = model.path
        if getattr(model, "vae", None) is not None:
            model.vae = None  # pairs live in latent space; decoding is the user's step
    model = model.eval()
    shape = sample_shape(getattr(model, "model", model) if not hasattr(model, "config") else model)
    return LoadedTeacher(model, affine, shape, _num_classes(model), str(path))
