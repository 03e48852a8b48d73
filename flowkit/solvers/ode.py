"""ODE samplers ``dx/dt = v(x, t)`` from ``t0`` (noise) to ``t1`` (data).

Fixed-step methods spend a budget of ``nfe`` field evaluations: a method with ``k``
evaluations per step takes ``nfe // k`` steps (Euler k=1, midpoint and Heun k=2, RK4
k=4). The adaptive ``dopri5`` (torchdiffeq) takes ``rtol`` / ``atol`` instead. In both
cases ``SampleResult.nfe`` is the number of calls the field actually received.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from flowkit.paths import AffinePath
from flowkit.solvers.field import VelocityField
from flowkit.solvers.grids import time_grid
from flowkit.solvers.result import SampleResult

Step = Callable[[VelocityField, Tensor, float, float], Tensor]


def euler_step(v: VelocityField, x: Tensor, t: float, t_next: float) -> Tensor:
    """``x + h v(x, t)``: first order, one evaluation."""
    return x + (t_next - t) * v(x, t)


def midpoint_step(v: VelocityField, x: Tensor, t: float, t_next: float) -> Tensor:
    """Explicit midpoint: second order, two evaluations."""
    h = t_next - t
    return x + h * v(x + (h / 2) * v(x, t), t + h / 2)


def heun_step(v: VelocityField, x: Tensor, t: float, t_next: float) -> Tensor:
    """Heun (explicit trapezoid): Euler predictor, trapezoidal corrector; second order."""
    h = t_next - t
    d = v(x, t)
    x_euler = x + h * d
    return x + (h / 2) * (d + v(x_euler, t_next))


def rk4_step(v: VelocityField, x: Tensor, t: float, t_next: float) -> Tensor:
    """Classical Runge–Kutta: fourth order, four evaluations."""
    h = t_next - t
    k1 = v(x, t)
    k2 = v(x + (h / 2) * k1, t + h / 2)
    k3 = v(x + (h / 2) * k2, t + h / 2)
    k4 = v(x + h * k3, t_next)
    return x + (h / 6) * (k1 + 2 * k2 + 2 * k3 + k4)


FIXED_STEP_METHODS: dict[str, tuple[Step, int]] = {
    "euler": (euler_step, 1),
    "midpoint": (midpoint_step, 2),
    "heun": (heun_step, 2),
    "rk4": (rk4_step, 4),
}
ADAPTIVE_METHODS = ("dopri5", "bosh3", "adaptive_heun", "dopri8")
ODE_METHODS = tuple(FIXED_STEP_METHODS) + ADAPTIVE_METHODS


def _integrate_adaptive(
    v: VelocityField, x: Tensor, t0: float, t1: float, method: str, rtol: float, atol: float
) -> Tensor:
    import torchdiffeq

    def rhs(t: Tensor, state: Tensor) -> Tensor:
        return v(state, float(t))

    times = torch.tensor([t0, t1], dtype=x.dtype, device=x.device)
    return torchdiffeq.odeint(rhs, x, times, method=method, rtol=rtol, atol=atol)[-1]


def sample_ode(
    field: Callable[..., Tensor],
    x: Tensor,
    nfe: int | None = None,
    method: str = "euler",
    grid: str | Sequence[float] | Tensor = "uniform",
    *,
    path: AffinePath | None = None,
    prediction: str | None = None,
    t0: float = 0.0,
    t1: float | None = None,
    rtol: float = 1e-5,
    atol: float = 1e-5,
    return_trajectory: bool = False,
    cond: dict | None = None,
) -> SampleResult:
    """Integrate the probability-flow ODE of ``field`` from ``x`` at ``t0`` to ``t1``.

    Args:
        field: ``field(x, t, **cond)`` with ``t`` of shape ``(B,)``.
        x: ``(B, *D)`` the initial state (noise, scaled by ``path.prior_std`` for VE).
        nfe: the evaluation budget of a fixed-step method (ignored by adaptive ones).
        method: ``euler``, ``midpoint``, ``heun``, ``rk4``, or an adaptive torchdiffeq
            method (``dopri5``, ``bosh3``, ``adaptive_heun``, ``dopri8``).
        grid: ``"uniform"`` or an explicit list of times (then ``nfe`` may be omitted).
        path, prediction: how to read the field's output as a velocity (defaults: the
            rectified path and ``field.prediction`` or ``"velocity"``).
        t1: the final time (defaults to ``path.t_max``: 1 on the rectified path).
        return_trajectory: keep the state at every grid time (fixed-step methods).
        cond: keyword arguments passed to every field call (e.g. ``class_labels``).
    """
    velocity = VelocityField(field, path, prediction, cond)
    t1 = velocity.path.t_max if t1 is None else t1
    if method in ADAPTIVE_METHODS:
        with torch.no_grad():
            out = _integrate_adaptive(velocity, x, t0, t1, method, rtol, atol)
        return SampleResult(x=out, nfe=velocity.calls, times=torch.tensor([t0, t1]))
    if method not in FIXED_STEP_METHODS:
        raise ValueError(f"unknown ODE method {method!r}; expected one of {list(ODE_METHODS)}")
    step, evals_per_step = FIXED_STEP_METHODS[method]
    if isinstance(grid, str):
        if nfe is None or nfe < evals_per_step:
            raise ValueError(
                f"method {method!r} needs nfe >= {evals_per_step} (it makes {evals_per_step} "
                f"evaluations per step), got nfe={nfe}"
            )
        times = time_grid(grid, nfe // evals_per_step, t0, t1)
    else:
        times = time_grid(grid, 0)
    grid_points = times.tolist()
    trajectory = [x] if return_trajectory else None
    with torch.no_grad():
        for t, t_next in zip(grid_points[:-1], grid_points[1:], strict=True):
            x = step(velocity, x, t, t_next)
            if trajectory is not None:
                trajectory.append(x)
    stacked = torch.stack(trajectory) if trajectory is not None else None
    return SampleResult(x=x, nfe=velocity.calls, trajectory=stacked, times=times)
