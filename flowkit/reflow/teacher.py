"""A teacher for reflow: any saved flowkit model or diffusers pipeline, as an ODE map
``x0 -> x1`` from unit noise to a sample.

:func:`load_teacher` accepts a flowkit run, pipeline or model directory (the EMA weights
the trainer saved) and a diffusers DDPM / DDIM / flow-matching pipeline directory (see
:func:`flowkit.models.teachers.load_diffusers_teacher`). The solver defaults to the
authors' practice (Liu et al.): adaptive Dormand-Prince, ``rtol = atol = 1e-5``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field, fields

import torch
from torch import Tensor

from flowkit.loading import LoadedModel, load
from flowkit.solvers import SampleResult, sample_ode
from flowkit.solvers.names import ADAPTIVE_METHODS
from flowkit.solvers.ode import end_time


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
class LoadedTeacher(LoadedModel):
    """A loaded model (:func:`flowkit.load`) read as an ODE map from unit noise to samples:
    :meth:`integrate` and, for phased pairs, :meth:`integrate_through`."""

    @torch.no_grad()
    def integrate(
        self, x0: Tensor, labels: Tensor | None, solver: SolverSpec
    ) -> tuple[Tensor, int]:
        """Solve the teacher's ODE from unit noise ``x0`` (scaled by the path's prior std)
        at the field's start (``t = 0``, or ``path.t_min`` for epsilon and score fields where
        ``alpha(0) = 0``) to its data end; returns ``(x1, network evaluations)``."""
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
        if times and times[0] == 0:  # the noise end: where this field's integration starts
            times[0] = self.path.t_min(self.prediction)
        phases = len(times) - 1
        end = end_time(self.path, solver.method)
        if (
            phases < 1
            or times[0] != self.path.t_min(self.prediction)
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
        t0: float | None = None,
        t1: float | None = None,
        nfe: int | None = None,
    ) -> SampleResult:
        cond = None if labels is None else {"class_labels": labels.to(self.device)}
        return sample_ode(
            self.field,
            x,
            nfe=solver.nfe if nfe is None else nfe,
            method=solver.method,
            grid=solver.grid,
            path=self.path,
            prediction=self.prediction,
            t0=t0,
            t1=t1,
            rtol=solver.rtol,
            atol=solver.atol,
            grid_options=solver.options or None,
            cond=cond,
        )


def load_teacher(path: str | os.PathLike) -> LoadedTeacher:
    """The model saved at ``path`` (:func:`flowkit.load`), on CPU in eval mode; a latent
    teacher's VAE is dropped (pairs live in latent space; decoding is the user's step).

    Raises:
        FileNotFoundError: ``path`` holds no saved model.
        ValueError: a multiplicative (GBM) model, which has no ODE to integrate.
    """
    loaded = load(path)
    if loaded.kind == "multiplicative":
        raise ValueError(
            f"{str(path)!r} is a multiplicative (GBM) model: it is sampled by a stochastic "
            "sampler and has no ODE map from noise to samples to make reflow pairs with"
        )
    if getattr(loaded.field, "vae", None) is not None:
        loaded.field.vae = None
    return LoadedTeacher(**{f.name: getattr(loaded, f.name) for f in fields(LoadedModel)})
