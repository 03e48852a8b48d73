"""ODE samplers ``dx/dt = v(x, t)`` from ``t0`` (noise) to ``t1`` (data).

Fixed-step methods spend a budget of ``nfe`` field evaluations: a method with ``k``
evaluations per step takes ``nfe // k`` steps (Euler, DPM-Solver++ (2M), DDIM and new
Euler k=1, midpoint and Heun k=2, RK4 k=4). The adaptive ``dopri5`` (torchdiffeq) takes
``rtol`` / ``atol`` instead. In both cases ``SampleResult.nfe`` is the number of calls
the field actually received.

Where a run starts by default: at ``path.t_min(prediction)`` (:attr:`VelocityField.start_time`),
which is 0 for velocity and data predictions on every path, and for epsilon and score
predictions the first time with ``alpha(t) >= 1e-3``: 1e-3 on the rectified path, 6.4e-4 on the
cosine path (0 on VP, sub-VP, VE and DDPM paths, where ``alpha(0)`` is larger already). Below
it the conversion ``x1 = (x_t - sigma epsilon) / alpha`` amplifies any error of the network
without bound (at ``alpha = 0`` it is undefined), so an explicit ``t0`` (or a user grid) that
starts earlier raises ``ValueError``. The initial state ``x`` is the noise in every case.

Where a run stops by default (:func:`end_time`): at ``path.t_max`` (``1 - 1e-3`` on VP and
sub-VP, ``1 - 1e-5`` on VE, 1 elsewhere), except DDIM, which ends at ``t = 1``. Solvers that
read the velocity stop short of 1 because ``sigma'`` is infinite there on VP and sub-VP; a
DDIM step reads only ``alpha`` and ``sigma`` at the grid points and calls the network only at
its start, so its last step lands on the data end itself (``sigma(1) = 0``: the step returns
the data prediction), as DDIM's final step to ``alphas_cumprod = 1`` does
(``set_alpha_to_one``). With the uniform grid that is DDIM's "trailing" spacing: ``n`` steps
start at ``t = 0, 1/n, ..., (n-1)/n`` (timesteps ``T - 1, T - 1 - T/n, ...`` of a DDPM path),
the first at the noise end, and the last lands on ``t = 1``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import nullcontext

import torch
from torch import Tensor

from flowkit.paths import AffinePath
from flowkit.solvers.data_prediction import run_ddim, run_dpm_solver_pp, run_new_euler
from flowkit.solvers.field import VelocityField
from flowkit.solvers.grids import time_grid, uniform_grid
from flowkit.solvers.names import ADAPTIVE_METHODS, ODE_METHODS
from flowkit.solvers.result import SampleResult

Step = Callable[[VelocityField, Tensor, float, float], Tensor]


def euler_step(v: VelocityField, x: Tensor, t: float, t_next: float) -> Tensor:
    """``x + h v(x, t)``: first order, one evaluation."""
    return torch.add(x, v(x, t), alpha=t_next - t)


def midpoint_step(v: VelocityField, x: Tensor, t: float, t_next: float) -> Tensor:
    """Explicit midpoint: second order, two evaluations."""
    h = t_next - t
    return torch.add(x, v(torch.add(x, v(x, t), alpha=h / 2), t + h / 2), alpha=h)


def heun_step(v: VelocityField, x: Tensor, t: float, t_next: float) -> Tensor:
    """Heun (explicit trapezoid): Euler predictor, trapezoidal corrector; second order."""
    h = t_next - t
    d = v(x, t)
    return torch.add(x, d + v(torch.add(x, d, alpha=h), t_next), alpha=h / 2)


def rk4_step(v: VelocityField, x: Tensor, t: float, t_next: float) -> Tensor:
    """Classical Runge–Kutta: fourth order, four evaluations."""
    h = t_next - t
    k1 = v(x, t)
    k2 = v(x + (h / 2) * k1, t + h / 2)
    k3 = v(x + (h / 2) * k2, t + h / 2)
    k4 = v(x + h * k3, t_next)
    return x + (h / 6) * (k1 + 2 * k2 + 2 * k3 + k4)


SINGLE_STEP_METHODS: dict[str, tuple[Step, int]] = {
    "euler": (euler_step, 1),
    "midpoint": (midpoint_step, 2),
    "heun": (heun_step, 2),
    "rk4": (rk4_step, 4),
}


def end_time(path: AffinePath, method: str) -> float:
    """The default final time of ``sample_ode``: 1 for ``ddim``, else ``path.t_max`` (see the
    module docstring)."""
    return 1.0 if method == "ddim" else path.t_max


def evals_per_step(method: str) -> int:
    """Field evaluations one step of a fixed-step method costs."""
    return SINGLE_STEP_METHODS[method][1] if method in SINGLE_STEP_METHODS else 1


def steps_for_budget(method: str, nfe: int | None, final_euler: bool = False) -> int:
    """How many steps a budget of ``nfe`` evaluations buys (Heun with ``final_euler``
    saves one evaluation on its last step: ``k`` steps cost ``2k - 1``)."""
    k = evals_per_step(method)
    if nfe is None or nfe < 1 or nfe < k - (1 if final_euler else 0):
        raise ValueError(
            f"method {method!r} needs nfe >= {k - (1 if final_euler else 0)} (it makes {k} "
            f"evaluations per step), got nfe={nfe}"
        )
    return (nfe + 1) // 2 if final_euler else nfe // k


def _integrate_adaptive(
    v: VelocityField, x: Tensor, t0: float, t1: float, method: str, rtol: float, atol: float
) -> Tensor:
    import torchdiffeq

    def rhs(t: Tensor, state: Tensor) -> Tensor:
        return v(state, float(t))

    times = torch.tensor([t0, t1], dtype=x.dtype, device=x.device)
    return torchdiffeq.odeint(rhs, x, times, method=method, rtol=rtol, atol=atol)[-1]


def _run_single_step(
    v: VelocityField,
    x: Tensor,
    times: list[float],
    method: str,
    trajectory: list[Tensor] | None,
    final_euler: bool,
) -> Tensor:
    step = SINGLE_STEP_METHODS[method][0]
    last = len(times) - 2
    for i, (t, t_next) in enumerate(zip(times[:-1], times[1:], strict=True)):
        x = euler_step(v, x, t, t_next) if final_euler and i == last else step(v, x, t, t_next)
        if trajectory is not None:
            trajectory.append(x)
    return x


def sample_ode(
    field: Callable[..., Tensor],
    x: Tensor,
    nfe: int | None = None,
    method: str = "euler",
    grid: str | Sequence[float] | Tensor = "uniform",
    *,
    path: AffinePath | None = None,
    prediction: str | None = None,
    t0: float | Tensor | None = None,
    t1: float | None = None,
    rtol: float = 1e-5,
    atol: float = 1e-5,
    grid_options: dict | None = None,
    final_euler: bool = False,
    return_trajectory: bool = False,
    cond: dict | None = None,
) -> SampleResult:
    """Integrate the probability-flow ODE of ``field`` from ``x`` at ``t0`` to ``t1``.

    Args:
        field: ``field(x, t, **cond)`` with ``t`` of shape ``(B,)``.
        x: ``(B, *D)`` the initial state (noise, scaled by ``path.prior_std`` for VE).
        nfe: the evaluation budget of a fixed-step method (ignored by adaptive ones).
        method: ``euler``, ``midpoint``, ``heun``, ``rk4``; ``dpm_solver_pp`` (2M) and
            ``new_euler`` (2-RF++) and ``ddim`` (DDIM, eta = 0: DPM-Solver++'s first-order
            step everywhere), which step with the data prediction; or an adaptive
            torchdiffeq method (``dopri5``, ``bosh3``, ``adaptive_heun``, ``dopri8``).
        grid: ``"uniform"``, ``"edm"``, ``"shifted"``, ``"cosine"`` (see
            :mod:`flowkit.solvers.grids`, options in ``grid_options``) or a list of times
            (then ``nfe`` may be omitted).
        path, prediction: how to read the field's output (defaults: the rectified path and
            ``field.prediction`` or ``"velocity"``).
        t0: the start time (defaults to ``path.t_min(prediction)``: 0 for velocity and data
            predictions, 1e-3 for epsilon and score on the rectified path; see the module
            docstring). A ``t0`` or user grid that starts below it raises ``ValueError``.
            A ``(B,)`` tensor starts each sample at its own time, on its own grid with the
            same budget (fixed-step methods but new_euler; :mod:`flowkit.solvers.per_sample`).
        t1: the final time (defaults to :func:`end_time`: ``path.t_max``, 1 on the rectified
            path; 1 for ``ddim``).
        final_euler: Heun only: take the last step with Euler, as EDM does (the corrector
            evaluation at the data end adds little); ``k`` steps then cost ``2k - 1``.
        return_trajectory: keep the state at every grid time (fixed-step methods).
        cond: keyword arguments passed to every field call (e.g. ``class_labels``).
    """
    velocity = VelocityField(field, path, prediction, cond)
    t0 = velocity.start_time if t0 is None else t0
    t1 = end_time(velocity.path, method) if t1 is None else t1
    if isinstance(t0, Tensor) and t0.dim() == 1:  # per-sample start times
        from flowkit.solvers.per_sample import sample_ode_per_sample

        if method in ADAPTIVE_METHODS or not isinstance(grid, str):
            raise ValueError(
                f"per-sample t0 takes a fixed-step method and a named grid, got "
                f"method={method!r}, grid={grid!r}"
            )
        steps = steps_for_budget(method, nfe, final_euler)
        return sample_ode_per_sample(
            velocity, x, nfe, method, grid, t0, t1, steps, grid_options, final_euler,
            return_trajectory,
        )  # fmt: skip
    if method in ADAPTIVE_METHODS:
        velocity.check_start(t0)
        with torch.no_grad():
            out = _integrate_adaptive(velocity, x, t0, t1, method, rtol, atol)
        return SampleResult(x=out, nfe=velocity.calls, times=torch.tensor([t0, t1]))
    if method not in ODE_METHODS:
        raise ValueError(f"unknown ODE method {method!r}; expected one of {list(ODE_METHODS)}")
    if final_euler and method != "heun":
        raise ValueError(f"final_euler applies to method 'heun' only, got method={method!r}")
    if isinstance(grid, str) and grid == "uniform" and not grid_options:  # cached, as floats
        times, points = uniform_grid(steps_for_budget(method, nfe, final_euler), t0, t1)
    else:
        if isinstance(grid, str):
            steps = steps_for_budget(method, nfe, final_euler)
            times = time_grid(grid, steps, t0, t1, velocity.path, **(grid_options or {}))
        else:
            times = time_grid(grid, 0)
        points = times.tolist()
    velocity.check_start(points[0])
    trajectory = [x] if return_trajectory else None
    # entering no_grad costs microseconds a call; inside one already there is nothing to do
    with torch.no_grad() if torch.is_grad_enabled() else nullcontext():
        if method == "dpm_solver_pp":
            x = run_dpm_solver_pp(velocity, x, points, trajectory)
        elif method == "new_euler":
            x = run_new_euler(velocity, x, points, trajectory)
        elif method == "ddim":
            x = run_ddim(velocity, x, points, trajectory)
        else:
            x = _run_single_step(velocity, x, points, method, trajectory, final_euler)
    stacked = torch.stack(trajectory) if trajectory is not None else None
    return SampleResult(x=x, nfe=velocity.calls, trajectory=stacked, times=times)
