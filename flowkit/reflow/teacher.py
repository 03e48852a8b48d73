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
from flowkit.solvers import SampleResult, sample_ode, seeded_noise
from flowkit.solvers.noise import seeded_integers
from flowkit.solvers.ode import ADAPTIVE_METHODS, end_time


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
        return seeded_integers(self.num_classes, indices, seed)

    @torch.no_grad()
    def integrate(
        self, x0: Tensor, labels: Tensor | None, solver: SolverSpec
    ) -> tuple[Tensor, int]:
        """Solve the teacher's ODE from unit noise ``x0`` (scaled by the path's prior std)
        at ``t = 0`` to its data end; returns ``(x1, network evaluations)``."""
        result = self._solve(x0.to(self.device) * self.path.prior_std, labels, solver)
        return result.x, result.nfe

    @torch.no_grad()
    def integrate_through(
        self, x0: Tensor, labels: Tensor | None, solver: SolverSpec, boundaries: Sequence[float]
    ) -> tuple[Tensor, int]:
        """The teacher's states ``(B, K + 1, *D)`` at ``boundaries`` ``[0, b_1, ..., b_K]``
        (``b_K``: the solver's data end, :func:`flowkit.solvers.ode.end_time`) and the
        network evaluations. Each phase ``[b_k, b_{k+1}]`` is one solver run on its own grid;
        a fixed-step solver spends ``solver.nfe / K`` evaluations on each (so on the uniform
        grid with ``K`` dividing the step count, DDIM and Euler take exactly the steps of
        :meth:`integrate`, and its ``x1`` is the last state).

        Raises:
            ValueError: see :meth:`phase_plan`.
        """
        times, nfe = self.phase_plan(solver, boundaries)
        x = x0.to(self.device) * self.path.prior_std
        states, calls = [x], 0
        for t0, t1 in zip(times[:-1], times[1:], strict=True):
            result = self._solve(x, labels, solver, t0=t0, t1=t1, nfe=nfe)
            x, calls = result.x, calls + result.nfe
            states.append(x)
        return torch.stack(states, dim=1), calls

    def phase_plan(
        self, solver: SolverSpec, boundaries: Sequence[float]
    ) -> tuple[list[float], int | None]:
        """The boundaries as floats and the evaluations per phase (None: adaptive).

        Raises:
            ValueError: boundaries that do not increase from 0 to the data end of
                ``solver.method``, or a budget that does not split evenly over the phases.
        """
        times = [float(b) for b in boundaries]
        phases = len(times) - 1
        end = end_time(self.path, solver.method)
        if (
            phases < 1
            or times[0] != 0
            or times[-1] != end
            or any(b >= c for b, c in zip(times[:-1], times[1:], strict=True))
        ):
            raise ValueError(
                f"boundaries {times} must increase from 0 to the data end {end} of method "
                f"{solver.method!r} on the {self.path.name} path"
            )
        if solver.method in ADAPTIVE_METHODS:
            return times, None
        if solver.nfe is None or solver.nfe % phases:
            raise ValueError(f"nfe={solver.nfe} must split evenly over {phases} phases")
        return times, solver.nfe // phases

    def _solve(
        self,
        x: Tensor,
        labels: Tensor | None,
        solver: SolverSpec,
        t0: float = 0.0,
        t1: float | None = None,
        nfe: int | None = None,
    ) -> SampleResult:
        cond = None if labels is None else {"class_labels": labels.to(self.device)}
        return sample_ode(
            self.model,
            x,
            nfe=solver.nfe if nfe is None else nfe,
            method=solver.method,
            grid=solver.grid,
            path=self.path,
            t0=t0,
            t1=t1,
            rtol=solver.rtol,
            atol=solver.atol,
            grid_options=solver.options or None,
            cond=cond,
        )


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
