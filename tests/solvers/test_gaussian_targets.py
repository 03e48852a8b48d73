"""Every ODE and SDE sampler, fed the exact field of a Gaussian target, reproduces it.

Data ``x1 ~ N(mu, diag(s^2))``; on an affine path ``x_t = a x1 + sig x0`` the posterior
mean is closed form, ``E[x1 | x_t] = mu + a s^2 / (a^2 s^2 + sig^2) (x_t - a mu)``, so the
exact field is an "x0" predictor (or, converted, the exact velocity). Samplers start
from the exact marginal at ``t0`` (so the prior mismatch of VP at ``t = 0`` is not
tested) and must match the target mean and covariance within 5 standard errors.
"""

import math

import pytest
import torch

from flowkit.paths import get_path
from flowkit.solvers import sample_ode
from flowkit.solvers.predictor_corrector import sample_pc
from flowkit.solvers.sde import sample_sde

ALL_PATHS = ["rectified", "vp", "subvp", "ve", "cosine"]
MU = torch.tensor([1.5, -0.5], dtype=torch.float64)
S = torch.tensor([0.5, 1.2], dtype=torch.float64)
N = 4000


def gaussian_field(path, mu=MU, s=S, prediction="x0"):
    """The exact field of N(mu, diag(s^2)) on ``path``, as an x0 or velocity predictor."""

    def field(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        assert t.shape == (x.shape[0],)
        a, sig, _, _ = (c[:, None] for c in path.coefficients(t))
        x1_hat = mu + a * s**2 / (a**2 * s**2 + sig**2) * (x - a * mu)
        if prediction == "x0":
            return x1_hat
        return path.convert(x1_hat, x, t, "x0", prediction)

    return field


def exact_start(path, n=N, mu=MU, s=S, t0=0.0, seed=1):
    """``n`` draws of the marginal ``x_{t0}``: ``N(a mu, a^2 s^2 + sig^2)``."""
    coefficients = path.coefficients(torch.tensor([t0], dtype=torch.float64))
    a, sig = float(coefficients[0]), float(coefficients[1])
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, len(mu), generator=g, dtype=torch.float64)
    return a * mu + torch.sqrt(a**2 * s**2 + sig**2) * z


def assert_gaussian(x, mu=MU, s=S, z=5.0):
    """Mean, variances and covariances within ``z`` standard errors of the target."""
    n = x.shape[0]
    assert torch.isfinite(x).all()
    mean_err = (x.mean(0) - mu) / (s / math.sqrt(n))
    cov = torch.cov(x.T)
    var_err = (cov.diag() - s**2) / (s**2 * math.sqrt(2 / n))
    off = cov / torch.outer(s, s) * math.sqrt(n)
    off.fill_diagonal_(0)
    assert mean_err.abs().max() < z, f"mean {x.mean(0)} vs {mu}: {mean_err}"
    assert var_err.abs().max() < z, f"variance {cov.diag()} vs {s**2}: {var_err}"
    assert off.abs().max() < z, f"covariance {cov}"


ODE_BUDGET = {"euler": 300, "heun": 100, "rk4": 100, "dopri5": None}


@pytest.mark.parametrize("name", ALL_PATHS)
@pytest.mark.parametrize("method", list(ODE_BUDGET))
def test_ode_reproduces_gaussian(method: str, name: str) -> None:
    path = get_path(name)
    nfe = 1000 if (method, name) == ("euler", "ve") else ODE_BUDGET[method]
    result = sample_ode(
        gaussian_field(path), exact_start(path), nfe, method, path=path, prediction="x0",
        rtol=1e-6, atol=1e-6,
    )  # fmt: skip
    assert_gaussian(result.x)


@pytest.mark.parametrize("name", ALL_PATHS)
def test_euler_maruyama_reproduces_gaussian(name: str) -> None:
    path = get_path(name)
    result = sample_sde(
        gaussian_field(path), exact_start(path), 500, "euler_maruyama", path=path,
        prediction="x0", seed=3,
    )  # fmt: skip
    assert result.nfe == 500
    assert_gaussian(result.x)


def test_euler_maruyama_with_a_velocity_field_and_more_noise() -> None:
    path = get_path("rectified")
    field = gaussian_field(path, prediction="velocity")
    result = sample_sde(field, exact_start(path), 500, path=path, noise_scale=1.5, seed=4)
    assert_gaussian(result.x)


@pytest.mark.parametrize("name", ["rectified", "vp", "subvp", "cosine"])
def test_flow_sde_reproduces_gaussian(name: str) -> None:
    path = get_path(name)
    result = sample_sde(
        gaussian_field(path), exact_start(path), 400, "flow_sde", path=path,
        prediction="x0", noise_scale=1.5, seed=5,
    )  # fmt: skip
    assert_gaussian(result.x)


EDM_CHURN = {"S_churn": 30.0, "S_tmin": 0.05, "S_tmax": 50.0, "S_noise": 1.0}


@pytest.mark.parametrize("name", ["rectified", "vp", "ve", "cosine"])
@pytest.mark.parametrize("churn", [False, True])
def test_edm_reproduces_gaussian(name: str, churn: bool) -> None:
    path = get_path(name)
    options = EDM_CHURN if churn else {}
    result = sample_sde(
        gaussian_field(path), exact_start(path), 79, "edm", path=path, prediction="x0",
        seed=6, **options,
    )  # fmt: skip
    assert_gaussian(result.x)


@pytest.mark.parametrize("name", ["rectified", "vp"])
def test_edm_on_the_edm_grid_reproduces_gaussian(name: str) -> None:
    path = get_path(name)
    # VP stops at t_max = 1 - 1e-3, where sigma / alpha is about 0.01 > EDM's 0.002
    options = {"sigma_min": 0.02} if name == "vp" else {}
    result = sample_sde(
        gaussian_field(path), exact_start(path), 79, "edm", grid="edm", path=path,
        prediction="x0", seed=6, grid_options=options, **EDM_CHURN,
    )  # fmt: skip
    assert_gaussian(result.x)


@pytest.mark.parametrize("name", ALL_PATHS)
def test_pc_predictor_and_denoiser_reproduce_gaussian(name: str) -> None:
    """Reverse-diffusion predictor + final Tweedie step, in 2-D (no corrector)."""
    path = get_path(name)
    result = sample_sde(
        gaussian_field(path), exact_start(path), 400, "pc", path=path, prediction="x0",
        n_corrector_steps=0, seed=7,
    )  # fmt: skip
    assert result.nfe == 400
    assert_gaussian(result.x)


@pytest.mark.parametrize("name", ALL_PATHS)
def test_pc_with_langevin_corrector_reproduces_gaussian_in_2d(name: str) -> None:
    """The full PC sampler (snr 0.16, one corrector step first, noise-level step size)."""
    path = get_path(name)
    result = sample_pc(
        gaussian_field(path), exact_start(path), 400, path=path, prediction="x0", seed=9,
    )  # fmt: skip
    assert result.nfe == 400
    assert_gaussian(result.x)


@pytest.mark.parametrize("name", ["rectified", "vp", "ve"])
def test_pc_with_per_sample_norms_in_128_dimensions(name: str) -> None:
    """Song et al.'s snr step size taken per sample depends on the state: the corrector's
    stationary law is tilted by ``||score||^2 ||z||^2``, inflating a Gaussian's variance
    by about ``4.5 / d`` on top of the Langevin step bias ``~ snr^2``: 5-6% here (a
    factor 2 in 2-D; 0.2% on 32x32x3 images). The per-entry checks have a 4.5% standard
    error; the pooled relative variance (standard error 0.4%) must stay within that bias.
    """
    d, n = 128, 1000
    g = torch.Generator().manual_seed(11)
    mu = torch.randn(d, generator=g, dtype=torch.float64)
    s = 0.5 + 0.3 * torch.rand(d, generator=g, dtype=torch.float64)
    path = get_path(name)
    result = sample_pc(
        gaussian_field(path, mu, s), exact_start(path, n, mu, s), 200, path=path,
        prediction="x0", seed=8, step_size="per_sample",
    )  # fmt: skip
    assert result.nfe == 200
    assert_gaussian(result.x, mu, s)
    relative_variance = (result.x.var(0) / s**2).mean().item()
    assert 0.99 < relative_variance < 1 + 0.16**2 + 6 / d
