"""Prediction conversions: round trips, exactness against the path, Gaussian scores."""

import itertools

import pytest
import torch

from flowkit.paths import PATHS, PREDICTIONS, get_path

ALL_PATHS = sorted(PATHS)


def _draw(path_name: str, n: int = 256, t_lo: float = 0.02, t_hi: float = 0.98):
    g = torch.Generator().manual_seed(1)
    x0 = torch.randn(n, 4, dtype=torch.float64, generator=g)
    x1 = torch.randn(n, 4, dtype=torch.float64, generator=g)
    t = t_lo + (t_hi - t_lo) * torch.rand(n, dtype=torch.float64, generator=g)
    return get_path(path_name), get_path(path_name).sample(x0, x1, t)


@pytest.mark.parametrize("name", ALL_PATHS)
@pytest.mark.parametrize("src,dst", list(itertools.permutations(PREDICTIONS, 2)))
def test_round_trip(name: str, src: str, dst: str) -> None:
    path, s = _draw(name)
    pred = torch.randn_like(s.xt)
    back = path.convert(path.convert(pred, s.xt, s.t, src, dst), s.xt, s.t, dst, src)
    torch.testing.assert_close(back, pred, rtol=1e-8, atol=1e-8)


@pytest.mark.parametrize("name", ALL_PATHS)
def test_true_quantities_map_onto_each_other(name: str) -> None:
    """Given the true data x1, every other prediction is the true one for (x0, x1)."""
    path, s = _draw(name)
    _, sigma, _, _ = path.coefficients(s.t)
    truth = {"data": s.x1, "epsilon": s.x0, "velocity": s.dxt, "score": -s.x0 / sigma[:, None]}
    for src, dst in itertools.permutations(PREDICTIONS, 2):
        got = path.convert(truth[src], s.xt, s.t, src, dst)
        torch.testing.assert_close(got, truth[dst], rtol=1e-7, atol=1e-7, msg=f"{src}->{dst}")


@pytest.mark.parametrize("name", ALL_PATHS)
def test_gaussian_score_matches_closed_form(name: str) -> None:
    """Data x1 ~ N(mu, C): E[x1 | x_t] converted to a score equals grad log N(a mu, a²C + s²I)."""
    path = get_path(name)
    g = torch.Generator().manual_seed(2)
    d = 3
    mu = torch.randn(d, dtype=torch.float64, generator=g)
    a_mat = torch.randn(d, d, dtype=torch.float64, generator=g)
    cov = a_mat @ a_mat.T / d + 0.1 * torch.eye(d, dtype=torch.float64)
    for t_value in (0.05, 0.5, 0.95):
        t = torch.full((32,), t_value, dtype=torch.float64)
        xt = torch.randn(32, d, dtype=torch.float64, generator=g)
        a, s, _, _ = (c[0] for c in path.coefficients(t))
        marginal_cov = a**2 * cov + s**2 * torch.eye(d, dtype=torch.float64)
        precision = torch.linalg.inv(marginal_cov)
        score = -(xt - a * mu) @ precision
        # Posterior mean of the data: mu + a C Σ⁻¹ (x_t - a mu).
        x1_mean = mu + (xt - a * mu) @ precision @ (a * cov)
        got = path.convert(x1_mean, xt, t, "data", "score")
        torch.testing.assert_close(got, score, rtol=1e-8, atol=1e-8)


@pytest.mark.parametrize("name", ALL_PATHS)
@pytest.mark.parametrize("src,dst", list(itertools.permutations(PREDICTIONS, 2)))
def test_finite_at_the_endpoints(name: str, src: str, dst: str) -> None:
    path = get_path(name)
    xt = torch.randn(4, 2)
    pred = torch.randn(4, 2)
    for t_value in (0.0, 1.0):
        t = torch.full((4,), t_value)
        assert torch.isfinite(path.convert(pred, xt, t, src, dst)).all()


def test_rectified_velocity_conversions_are_exact_at_endpoints() -> None:
    path = get_path("rectified")
    xt, v = torch.randn(4, 2), torch.randn(4, 2)
    t = torch.zeros(4)
    torch.testing.assert_close(path.convert(v, xt, t, "velocity", "data"), xt + v)
    torch.testing.assert_close(path.convert(v, xt, torch.ones(4), "velocity", "epsilon"), xt - v)


def test_unknown_prediction_is_named() -> None:
    path = get_path("rectified")
    with pytest.raises(ValueError, match="unknown prediction 'eps'"):
        path.convert(torch.zeros(1, 1), torch.zeros(1, 1), torch.zeros(1), "eps", "velocity")


def test_data_is_the_clean_data_prediction_and_x0_a_deprecated_alias() -> None:
    import warnings

    from flowkit.paths import check_prediction, vp

    path, x, t = vp(), torch.randn(4, 3), torch.rand(4) * 0.9 + 0.05
    pred = torch.randn(4, 3)
    assert check_prediction("data") == "data"
    with pytest.warns(FutureWarning, match="'x0' is deprecated.*'data'"):
        assert check_prediction("x0") == "data"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        old = path.convert(pred, x, t, "epsilon", "x0")
    torch.testing.assert_close(old, path.convert(pred, x, t, "epsilon", "data"), rtol=0, atol=0)
    with pytest.raises(ValueError, match="expected one of \\['velocity', 'epsilon', 'data'"):
        check_prediction("noise")


def test_a_model_saved_with_x0_reloads_as_data(tmp_path) -> None:
    import warnings

    from flowkit.models import MLPField, load_model

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        model = MLPField(dim=2, hidden_dim=8, num_layers=1, prediction="x0")
    assert model.prediction == "data"
    model.save_pretrained(tmp_path / "m")
    assert load_model(tmp_path / "m").prediction == "data"
