"""DPM-Solver++ (2M), new Euler and Heun's Euler-last option against exact Gaussian flows."""

import math

import numpy as np
import pytest
import torch

from flowkit.paths import get_path
from flowkit.solvers import sample_ode

MU, S = 0.8, 0.4  # data N(MU, S^2) in one dimension


def gaussian_data_predictor(path):
    """E[x1 | x_t] for x1 ~ N(MU, S^2): an exact "x0" (data) prediction on ``path``."""

    def field(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        a, s, _, _ = (c.to(x.dtype)[:, None] for c in path.coefficients(t.double()))
        var = a**2 * S**2 + s**2
        return MU + a * S**2 / var * (x - a * MU)

    return field


def exact_flow(path, x: torch.Tensor, t0: float, t1: float) -> torch.Tensor:
    """The probability-flow map of Gaussian data: x_t = a mu + std_t (x - a0 mu) / std_0."""
    (a0, s0, _, _), (a1, s1, _, _) = (
        path.coefficients(torch.tensor([t], dtype=torch.float64)) for t in (t0, t1)
    )
    std0, std1 = torch.sqrt(a0**2 * S**2 + s0**2), torch.sqrt(a1**2 * S**2 + s1**2)
    return a1 * MU + std1 * (x - a0 * MU) / std0


@pytest.mark.parametrize("path_name", ["rectified", "vp", "cosine"])
def test_dpm_solver_pp_is_second_order(path_name: str) -> None:
    """On [0.05, 0.95], where log-SNR is finite, the error falls at order about 2."""
    path = get_path(path_name)
    t0, t1 = 0.05, 0.95
    x = torch.linspace(-2, 2, 9, dtype=torch.float64)[:, None]
    exact = exact_flow(path, x, t0, t1)
    steps = np.array([8, 16, 32, 64])
    errors = [
        (
            sample_ode(
                gaussian_data_predictor(path),
                x,
                nfe=int(n),
                method="dpm_solver_pp",
                path=path,
                prediction="x0",
                t0=t0,
                t1=t1,
            ).x
            - exact
        )
        .abs()
        .max()
        .item()
        for n in steps
    ]
    slope = -np.polyfit(np.log(steps), np.log(errors), 1)[0]
    assert slope > 1.7, (slope, errors)


def test_dpm_solver_pp_first_step_is_ddim() -> None:
    """One step from t0 to t1 is x1 = D(x0) on the rectified path (sigma(1) = 0)."""
    path = get_path("rectified")
    x = torch.randn(5, 1, dtype=torch.float64)
    field = gaussian_data_predictor(path)
    result = sample_ode(field, x, nfe=1, method="dpm_solver_pp", prediction="x0")
    torch.testing.assert_close(result.x, field(x, torch.zeros(5, dtype=torch.float64)))


def test_new_euler_remixes_the_prediction_with_the_initial_noise() -> None:
    calls = []

    def field(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        calls.append(x.clone())
        return torch.full_like(x, 2.0) + t[:, None]  # data prediction 2 + t

    z0 = torch.randn(3, 1, dtype=torch.float64)
    result = sample_ode(field, z0, nfe=2, method="new_euler", prediction="x0")
    # step 1 at t=0: x1_hat = 2, x_{1/2} = 0.5 * 2 + 0.5 * z0; step 2 at t=1/2: x1_hat = 2.5.
    torch.testing.assert_close(calls[1], 1.0 + 0.5 * z0)
    torch.testing.assert_close(result.x, torch.full_like(z0, 2.5))
    assert result.nfe == 2


def test_new_euler_equals_exact_flow_for_straight_couplings() -> None:
    """For a straight coupling x1 = A z0 every step lands on the line: exact at any NFE."""
    a = 3.0

    def straight(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return (a - 1) * x / (t[:, None] * a + 1 - t[:, None])  # v = (A - I) z0

    z0 = torch.randn(4, 1, dtype=torch.float64)
    for nfe in (1, 3):
        torch.testing.assert_close(sample_ode(straight, z0, nfe=nfe, method="new_euler").x, a * z0)


def test_heun_with_euler_last_step_spends_one_evaluation_less() -> None:
    """On an EDM grid, whose last step is tiny, Euler there costs almost no accuracy."""
    path = get_path("rectified")
    x = torch.linspace(-2, 2, 5, dtype=torch.float64)[:, None]
    exact = exact_flow(path, x, 0.0, 1.0)
    field = gaussian_data_predictor(path)
    saving = sample_ode(
        field, x, nfe=15, method="heun", grid="edm", prediction="x0", final_euler=True
    )
    plain = sample_ode(field, x, nfe=16, method="heun", grid="edm", prediction="x0")
    assert saving.nfe == 15 and plain.nfe == 16  # both 8 steps
    error_saving = (saving.x - exact).abs().max().item()
    error_plain = (plain.x - exact).abs().max().item()
    assert error_saving < 1.5 * error_plain + 1e-4, (error_saving, error_plain)
    with pytest.raises(ValueError, match="final_euler applies to method 'heun' only"):
        sample_ode(lambda x, t: x, x, nfe=4, method="rk4", final_euler=True)


def test_every_fixed_step_method_reproduces_the_gaussian_on_an_edm_grid() -> None:
    path = get_path("rectified")
    x = torch.randn(8000, 1, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    for method in ("heun", "rk4", "dpm_solver_pp", "midpoint"):
        out = sample_ode(
            gaussian_data_predictor(path), x, nfe=48, method=method, grid="edm", prediction="x0"
        ).x
        assert out.mean().item() == pytest.approx(MU, abs=5 * S / math.sqrt(8000)), method
        assert out.std().item() == pytest.approx(S, rel=0.04), method
