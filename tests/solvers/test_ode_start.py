"""Where ``sample_ode`` starts: epsilon and score fields from ``path.t_min(prediction)`` (where
``x1 = (x_t - sigma eps) / alpha`` is defined), velocity and data fields from ``t = 0``."""

import pytest
import torch

from flowkit.paths import AffinePath, cosine, get_path, rectified, vp
from flowkit.solvers import sample_ode, sample_sde

MU, S = 1.5, 0.3  # data N(MU, S^2) in 1-D


def gaussian_field(path: AffinePath, prediction: str, delta: float = 0.0):
    """The exact ``prediction`` field of N(MU, S^2) on ``path``, plus an error
    ``delta * sin(50 x)`` (a small, x-dependent network error)."""

    def field(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        a, sig, _, _ = (c[:, None] for c in path.coefficients(t))
        x1_hat = MU + a * S**2 / (a**2 * S**2 + sig**2) * (x - a * MU)
        out = path.convert(x1_hat, x, t, "x0", prediction)
        return out + delta * torch.sin(50 * x)

    return field


def noise(n: int = 2000) -> torch.Tensor:
    return torch.randn(n, 1, generator=torch.Generator().manual_seed(0), dtype=torch.float64)


@pytest.mark.parametrize("name", ["rectified", "cosine"])
@pytest.mark.parametrize("prediction", ["epsilon", "score"])
@pytest.mark.parametrize("method,nfe", [("euler", 10), ("heun", 10), ("dpm_solver_pp", 10),
                                        ("ddim", 10), ("euler", 100)])  # fmt: skip
def test_epsilon_field_error_stays_bounded_where_alpha_vanishes(
    name: str, prediction: str, method: str, nfe: int
) -> None:
    """A 1e-3 error in an epsilon (or score) prediction moves the samples by about 1e-3 * h /
    t_min (0.02 at 10 steps), not by 1e-3 / 1e-6 * h (std 19 before the fix)."""
    path = get_path(name)
    x = noise()
    clean = sample_ode(gaussian_field(path, prediction), x, nfe, method, path=path,
                       prediction=prediction).x  # fmt: skip
    noisy = sample_ode(gaussian_field(path, prediction, 1e-3), x, nfe, method, path=path,
                       prediction=prediction).x  # fmt: skip
    assert torch.isfinite(noisy).all()
    assert (noisy - clean).std().item() < 0.05
    assert noisy.std().item() == pytest.approx(clean.std().item(), abs=0.05)


@pytest.mark.parametrize("prediction", ["epsilon", "score"])
def test_epsilon_field_from_t_min_matches_the_velocity_field_from_zero(prediction: str) -> None:
    """Starting the exact epsilon field at ``t_min = 1e-3`` from noise costs about the prior
    mismatch ``alpha(t_min) x1``: the samples agree with the exact velocity field's."""
    path = rectified()
    x = noise()
    velocity = sample_ode(gaussian_field(path, "velocity"), x, 100, "heun", path=path)
    eps = sample_ode(gaussian_field(path, prediction), x, 100, "heun", path=path,
                     prediction=prediction)  # fmt: skip
    assert velocity.times[0].item() == 0.0 and eps.times[0].item() == pytest.approx(1e-3)
    assert (eps.x - velocity.x).abs().max().item() < 5e-3
    assert eps.x.mean().item() == pytest.approx(MU, abs=0.03)
    assert eps.x.std().item() == pytest.approx(S, rel=0.05)


@pytest.mark.parametrize("path", [rectified(), cosine()], ids=lambda p: p.name)
@pytest.mark.parametrize("prediction", ["epsilon", "score"])
def test_explicit_start_below_t_min_raises_naming_t0_path_prediction_and_fix(
    path: AffinePath, prediction: str
) -> None:
    field, x = gaussian_field(path, prediction), noise(4)
    earliest = path.t_min(prediction)
    runs = [
        {"nfe": 4, "t0": 0.0},
        {"nfe": 4, "t0": earliest / 2, "method": "heun"},
        {"grid": [0.0, 0.5, 1.0]},  # a user grid that starts at the noise end
        {"method": "dopri5", "t0": 0.0},
    ]
    for run in runs:
        with pytest.raises(ValueError) as error:
            sample_ode(field, x, path=path, prediction=prediction, **run)
        message = str(error.value)
        assert f"predicting {prediction!r}" in message and f"the {path.name} path" in message
        assert "at t0=0.0" in message or f"at t0={earliest / 2}" in message
        assert f"t0 >= {earliest:.6g}" in message and "velocity or data prediction" in message
    # at or above t_min (also given explicitly) it runs
    for t0 in (earliest, 1e-3 if path.name == "rectified" else earliest, 0.5):
        result = sample_ode(field, x, 4, path=path, prediction=prediction, t0=t0)
        assert result.times[0].item() == t0 and torch.isfinite(result.x).all()
    assert sample_ode(field, x, path=path, prediction=prediction, grid=[0.1, 1.0]).nfe == 1


@pytest.mark.parametrize("path", [rectified(), cosine(), vp()], ids=lambda p: p.name)
@pytest.mark.parametrize("prediction", ["velocity", "x0"])
def test_velocity_and_data_predictions_still_start_at_zero(
    path: AffinePath, prediction: str
) -> None:
    calls = []
    exact = gaussian_field(path, prediction)

    def field(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        calls.append(t[0].item())
        return exact(x, t)

    x = noise(8)
    result = sample_ode(field, x, 4, path=path, prediction=prediction)
    assert result.times[0].item() == 0.0 and calls[0] == 0.0
    explicit = sample_ode(field, x, 4, path=path, prediction=prediction, t0=0.0)
    assert torch.equal(result.x, explicit.x)


def test_epsilon_on_vp_still_starts_at_zero() -> None:
    """VP's alpha(0) = 6.6e-3 is above the 1e-3 floor: the conversion is defined at t = 0."""
    path = vp()
    x = noise(8)
    result = sample_ode(gaussian_field(path, "epsilon"), x, 4, "ddim", path=path,
                        prediction="epsilon")  # fmt: skip
    assert result.times[0].item() == 0.0


def test_new_euler_takes_an_epsilon_field_from_its_start() -> None:
    """2-RF++'s new Euler re-mixes with the initial noise: from ``t_min`` it reads ``x`` as
    noise; it still refuses a start that is not (nearly) pure noise."""
    path = rectified()
    x = noise()
    eps = sample_ode(gaussian_field(path, "epsilon"), x, 20, "new_euler", prediction="epsilon")
    vel = sample_ode(gaussian_field(path, "velocity"), x, 20, "new_euler")
    assert (eps.x - vel.x).abs().max().item() < 5e-3
    with pytest.raises(ValueError, match="pure noise"):
        sample_ode(gaussian_field(path, "velocity"), x, 20, "new_euler", t0=0.1)


@pytest.mark.parametrize("method", ["euler_maruyama", "flow_sde"])
def test_sde_epsilon_field_starts_where_alpha_is_positive(method: str) -> None:
    """The SDE samplers take the same start as sample_ode: a 1e-3 error in an epsilon
    prediction stays small on the rectified path (from t = 0 it was multiplied by 1e6)."""
    path, x = rectified(), noise()
    options = dict(path=path, prediction="epsilon", seed=1)
    clean = sample_sde(gaussian_field(path, "epsilon"), x, 20, method, **options).x
    noisy = sample_sde(gaussian_field(path, "epsilon", 1e-3), x, 20, method, **options).x
    assert torch.isfinite(noisy).all()
    assert (noisy - clean).std().item() < 0.05
    with pytest.raises(ValueError, match="t0=0.0"):
        sample_sde(gaussian_field(path, "epsilon"), x, 20, method, t0=0.0, **options)
