"""ODE solvers: order of convergence, adaptive tolerance, honest NFE, Gaussian targets, DDIM's
trailing grid."""

import math

import numpy as np
import pytest
import torch

from flowkit.models import ddim_grid
from flowkit.paths import discrete_vp, vp
from flowkit.solvers import sample_ode


def quadratic_field(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """dx/dt = x^2 (time enters only through its shape check): x(t) = x0 / (1 - x0 t)."""
    assert t.shape == (x.shape[0],)
    return x**2


def exact(x0: torch.Tensor, t: float) -> torch.Tensor:
    return x0 / (1 - x0 * t)


X0 = torch.full((4, 1), 0.5, dtype=torch.float64)


@pytest.mark.parametrize("method,order", [("euler", 1), ("midpoint", 2), ("heun", 2), ("rk4", 4)])
def test_order_of_convergence(method: str, order: int) -> None:
    x0 = X0
    k = {"euler": 1, "midpoint": 2, "heun": 2, "rk4": 4}[method]
    steps = np.array([8, 16, 32, 64])
    errors = [
        (sample_ode(quadratic_field, x0, nfe=int(n) * k, method=method).x - exact(x0, 1.0))
        .abs()
        .max()
        .item()
        for n in steps
    ]
    slope = -np.polyfit(np.log(steps), np.log(errors), 1)[0]
    assert abs(slope - order) < 0.25, (method, slope, errors)


def test_adaptive_meets_its_tolerance() -> None:
    x0 = X0
    for tol in (1e-5, 1e-7):
        result = sample_ode(quadratic_field, x0, method="dopri5", rtol=tol, atol=tol)
        assert (result.x - exact(x0, 1.0)).abs().max().item() < 10 * tol
    loose = sample_ode(quadratic_field, x0, method="dopri5", rtol=1e-3, atol=1e-3).nfe
    tight = sample_ode(quadratic_field, x0, method="dopri5", rtol=1e-8, atol=1e-8).nfe
    assert tight > loose


@pytest.mark.parametrize("method", ["euler", "midpoint", "heun", "rk4", "dopri5"])
def test_nfe_is_the_number_of_calls(method: str) -> None:
    calls = []

    def field(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        calls.append(t)
        assert t.shape == (x.shape[0],)
        return -x

    result = sample_ode(field, torch.randn(3, 2), nfe=9, method=method)
    assert result.nfe == len(calls) > 0
    if method != "dopri5":
        per_step = {"euler": 1, "midpoint": 2, "heun": 2, "rk4": 4}[method]
        assert result.nfe == (9 // per_step) * per_step


def test_gaussian_target_is_reproduced() -> None:
    """Exact rectified-flow velocity for data N(mu, s²) transports N(0, 1) onto it."""
    mu, s = 1.5, 0.3

    def velocity(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        t = t[:, None]
        std = torch.sqrt(t**2 * s**2 + (1 - t) ** 2)
        d_std = (t * s**2 - (1 - t)) / std
        return mu + d_std / std * (x - t * mu)

    x0 = torch.randn(20000, 1, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    x = sample_ode(velocity, x0, nfe=40, method="rk4").x
    assert x.mean().item() == pytest.approx(mu, abs=4 * s / math.sqrt(20000))
    assert x.std().item() == pytest.approx(s, rel=0.03)


def test_trajectory_and_user_grid() -> None:
    result = sample_ode(
        lambda x, t: torch.ones_like(x),
        torch.zeros(2, 1),
        method="euler",
        grid=[0.0, 0.5, 0.75, 1.0],
        return_trajectory=True,
    )
    assert result.trajectory.shape == (4, 2, 1)
    torch.testing.assert_close(result.trajectory[:, 0, 0], torch.tensor([0.0, 0.5, 0.75, 1.0]))
    assert result.nfe == 3


def test_prediction_conversion_is_applied() -> None:
    """An x0 (data) predictor that always says 'c' flows every point onto c."""
    c = torch.tensor([[0.7, -0.2]])
    result = sample_ode(lambda x, t: c.expand_as(x), torch.randn(5, 2), nfe=50, prediction="x0")
    torch.testing.assert_close(result.x, c.expand(5, 2), rtol=0, atol=1e-5)


def test_bad_arguments_are_named() -> None:
    with pytest.raises(ValueError, match="unknown ODE method 'eulr'"):
        sample_ode(quadratic_field, torch.ones(1, 1), nfe=4, method="eulr")
    with pytest.raises(ValueError, match="needs nfe >= 4"):
        sample_ode(quadratic_field, torch.ones(1, 1), nfe=3, method="rk4")
    with pytest.raises(ValueError, match="must return the shape of x"):
        sample_ode(lambda x, t: x[:, :1], torch.ones(2, 2), nfe=1)


@pytest.mark.parametrize("steps", [1, 2, 4])
def test_ddim_runs_trailing_from_the_noise_end_to_the_data_end(steps: int) -> None:
    """On VP, ``n`` DDIM steps evaluate at ``t = 0, 1/n, ..., (n-1)/n`` and land on ``t = 1``,
    where ``sigma = 0``: the result is the data prediction made at the last step's start."""
    path = vp()
    calls = []

    def epsilon(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        calls.append(t[0].item())
        return 0.9 * x + 0.1 * torch.sin(x)

    x = torch.randn(6, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    result = sample_ode(
        epsilon, x, steps, "ddim", path=path, prediction="epsilon", return_trajectory=True
    )
    assert result.times.tolist() == [k / steps for k in range(steps + 1)]
    assert calls[: result.nfe] == [k / steps for k in range(steps)] and result.nfe == steps
    start, t_last = result.trajectory[-2], torch.full((6,), (steps - 1) / steps).double()
    data = path.convert(epsilon(start, t_last), start, t_last, "epsilon", "x0")
    torch.testing.assert_close(result.x, data)
    assert sample_ode(epsilon, x, steps, "euler", path=path).times[-1].item() == path.t_max


@pytest.mark.parametrize("steps", [1, 2, 4])
def test_ddim_on_a_ddpm_path_takes_diffusers_trailing_timesteps(steps: int) -> None:
    """On a discrete DDPM path the default grid is DDIM's "trailing" spacing: timesteps
    ``T - 1, T - 1 - T/n, ...``, the first at pure noise, then ``alphas_cumprod = 1``."""
    betas = torch.linspace(1e-4, 0.02, 1000, dtype=torch.float64)
    path = discrete_vp(torch.cumprod(1 - betas, 0))
    result = sample_ode(lambda x, t: x, torch.zeros(1, 1), steps, "ddim", path=path)
    assert result.times.tolist() == ddim_grid(path, steps, spacing="trailing")
