"""Per-sample start times: a batch with t0 of shape (B,) equals integrating each sample alone."""

from __future__ import annotations

import pytest
import torch

from flowkit.paths import rectified, ve, vp
from flowkit.solvers import sample_ode, sample_sde


class Field:
    """A smooth nonlinear field that depends on t, with a prediction type and a call count."""

    def __init__(self, prediction: str = "velocity") -> None:
        self.prediction = prediction
        self.calls = 0

    def __call__(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return torch.sin(x) * (1 + t[:, None]) - 0.5 * x


T0 = torch.tensor([0.1, 0.35, 0.6, 0.05, 0.8], dtype=torch.float64)


def _x() -> torch.Tensor:
    return torch.randn(5, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)


@pytest.mark.parametrize("method", ["euler", "midpoint", "heun", "rk4"])
@pytest.mark.parametrize("grid", ["uniform", "edm"])
def test_ode_per_sample_equals_alone(method: str, grid: str) -> None:
    x, path = _x(), rectified()
    field = Field()
    batch = sample_ode(field, x, nfe=8, method=method, grid=grid, path=path, t0=T0)
    assert batch.nfe == field.calls == 8 // {"euler": 1, "rk4": 4}.get(method, 2) * (
        {"euler": 1, "rk4": 4}.get(method, 2)
    )
    assert batch.times.shape == (5, batch.times.shape[1])
    for b in range(5):
        alone = sample_ode(Field(), x[b : b + 1], nfe=8, method=method, grid=grid, path=path,
                           t0=float(T0[b]))  # fmt: skip
        torch.testing.assert_close(batch.x[b : b + 1], alone.x, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("method", ["ddim", "dpm_solver_pp"])
@pytest.mark.parametrize("path_name", ["vp", "rectified"])
def test_data_prediction_per_sample_equals_alone(method: str, path_name: str) -> None:
    # On the rectified path lambda is infinite at t = 1: the last step is first order there,
    # and a start at t0 = 0.05 exercises finite ratios r that differ per sample.
    x, path = _x(), {"vp": vp, "rectified": rectified}[path_name]()
    field = Field("epsilon")
    batch = sample_ode(field, x, nfe=6, method=method, grid="uniform", path=path, t0=T0)
    assert batch.nfe == field.calls == 6
    for b in range(5):
        alone = sample_ode(Field("epsilon"), x[b : b + 1], nfe=6, method=method, path=path,
                           t0=float(T0[b]))  # fmt: skip
        torch.testing.assert_close(batch.x[b : b + 1], alone.x, rtol=1e-12, atol=1e-12)
    # and the per-sample start matters: a shared start gives other results
    shared = sample_ode(Field("epsilon"), x, nfe=6, method=method, path=path, t0=0.1)
    assert not torch.allclose(shared.x[1:], batch.x[1:])


def test_heun_final_euler_per_sample() -> None:
    x, path = _x(), vp()
    batch = sample_ode(Field("epsilon"), x, nfe=7, method="heun", path=path, t0=T0,
                       final_euler=True)  # fmt: skip
    assert batch.nfe == 7
    for b in range(5):
        alone = sample_ode(Field("epsilon"), x[b : b + 1], nfe=7, method="heun", path=path,
                           t0=float(T0[b]), final_euler=True)  # fmt: skip
        torch.testing.assert_close(batch.x[b : b + 1], alone.x, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("method, options", [
    ("edm", {}),
    ("edm", {"S_churn": 10.0}),
    ("euler_maruyama", {}),
    ("flow_sde", {}),
])  # fmt: skip
@pytest.mark.parametrize("grid", ["uniform", "edm"])
def test_sde_per_sample_equals_alone(method: str, options: dict, grid: str) -> None:
    # Euler-Maruyama takes a step noise-free where its stiffness h g^2 / (2 sigma^2) > 1 (near
    # t = 0 on the rectified path, near t = 1 on VP), at grid points that differ per sample:
    # equal in law only there. On VE with these grids every step but the last is stochastic.
    x, path = _x(), (ve() if method == "euler_maruyama" else rectified())
    idx = [7, 3, 11, 0, 5]
    batch = sample_sde(Field(), x, nfe=9, method=method, grid=grid, path=path, t0=T0,
                       seed=4, indices=idx, **options)  # fmt: skip
    for b in range(5):
        alone = sample_sde(Field(), x[b : b + 1], nfe=9, method=method, grid=grid, path=path,
                           t0=float(T0[b]), seed=4, indices=[idx[b]], **options)  # fmt: skip
        assert alone.nfe == batch.nfe
        torch.testing.assert_close(batch.x[b : b + 1], alone.x, rtol=1e-10, atol=1e-10)


def test_per_sample_rejects_unsupported() -> None:
    x = _x()
    with pytest.raises(ValueError, match="new_euler"):
        sample_ode(Field(), x, nfe=4, method="new_euler", t0=T0)
    with pytest.raises(ValueError, match="'pc'"):
        sample_sde(Field(), x, nfe=4, method="pc", t0=T0)
    with pytest.raises(ValueError, match="t1"):
        sample_ode(Field(), x, nfe=4, t0=torch.full((5,), 1.0, dtype=torch.float64))
