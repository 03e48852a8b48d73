"""``AffinePath.t_min(prediction)``: the earliest time a prediction converts to a velocity."""

import math

import pytest
import torch

from flowkit.paths import AffinePath, discrete_vp, get_path
from flowkit.paths.conversions import START_ALPHA


def alpha(path: AffinePath, t: float) -> float:
    return float(path.coefficients(torch.tensor([t], dtype=torch.float64))[0])


@pytest.mark.parametrize("name", ["rectified", "vp", "subvp", "ve", "cosine"])
def test_velocity_and_data_start_at_zero(name: str) -> None:
    path = get_path(name)
    assert path.t_min() == path.t_min("velocity") == path.t_min("x0") == 0.0


@pytest.mark.parametrize(
    "name,expected",
    [("rectified", 1e-3), ("cosine", 2 * math.asin(1e-3) / math.pi), ("vp", 0.0),
     ("subvp", 0.0), ("ve", 0.0)],
)  # fmt: skip
def test_epsilon_and_score_start_where_alpha_reaches_the_floor(name: str, expected: float) -> None:
    path = get_path(name)
    for prediction in ("epsilon", "score"):
        t_min = path.t_min(prediction)
        assert t_min == pytest.approx(expected, rel=1e-12, abs=1e-15)
        assert alpha(path, t_min) >= START_ALPHA
        if t_min > 0:
            assert alpha(path, t_min * (1 - 1e-9)) < START_ALPHA


def test_ddpm_table_starts_at_zero() -> None:
    betas = torch.linspace(1e-4, 0.02, 1000, dtype=torch.float64)
    assert discrete_vp(torch.cumprod(1 - betas, 0)).t_min("epsilon") == 0.0


def test_errors_name_the_prediction_and_the_path() -> None:
    with pytest.raises(ValueError, match="unknown prediction 'noise'"):
        get_path("rectified").t_min("noise")

    def faint(t: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return 1e-4 * t, 1 - t, 1e-4 * torch.ones_like(t), -torch.ones_like(t)

    with pytest.raises(ValueError, match="faint path never reaches alpha"):
        AffinePath("faint", faint).t_min("epsilon")
    assert AffinePath("faint", faint).t_min("velocity") == 0.0
