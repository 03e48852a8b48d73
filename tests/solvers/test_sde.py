"""SDE samplers: honest NFE, per-sample reproducibility, the ODE limit, named errors."""

import math

import pytest
import torch

from flowkit.paths import get_path, rectified, subvp, ve, vp
from flowkit.solvers import sample_ode, seeded_noise
from flowkit.solvers.edm import edm_sigma, edm_time, sample_edm
from flowkit.solvers.predictor_corrector import sample_pc
from flowkit.solvers.sde import SDE_METHODS, reverse_diffusion_sq, sample_sde

EDM_CHURN = {"S_churn": 30.0, "S_tmin": 0.05, "S_tmax": 50.0}
OPTIONS = {"euler_maruyama": {}, "flow_sde": {}, "edm": EDM_CHURN, "pc": {}}


def shrink_field(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """An elementwise x0 predictor (so a sample's arithmetic never sees its batch-mates)."""
    assert t.shape == (x.shape[0],)
    return 0.5 * x + 0.25


@pytest.mark.parametrize("name", ["rectified", "vp"])
@pytest.mark.parametrize(
    "method,options,nfe,expected",
    [
        ("euler_maruyama", {}, 7, {"rectified": 7, "vp": 7}),
        ("flow_sde", {}, 7, {"rectified": 7, "vp": 7}),
        # 4 steps, 2 evaluations each but 1 on the last; 1 on rectified's alpha = 0 step
        ("edm", {}, 7, {"rectified": 6, "vp": 7}),
        ("edm", EDM_CHURN, 8, {"rectified": 6, "vp": 7}),
        ("pc", {}, 7, {"rectified": 6, "vp": 6}),
        ("pc", {"n_corrector_steps": 2}, 7, {"rectified": 6, "vp": 6}),
        ("pc", {"n_corrector_steps": 0}, 5, {"rectified": 5, "vp": 5}),
    ],
)
def test_nfe_is_the_number_of_calls(method, options, nfe, expected, name) -> None:
    calls = []

    def field(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        calls.append(t)
        assert t.shape == (x.shape[0],)
        return 0.5 * x

    path = get_path(name)
    x = torch.randn(3, 2, generator=torch.Generator().manual_seed(0))
    result = sample_sde(field, x, nfe, method, path=path, prediction="x0", **options)
    assert result.nfe == len(calls) == expected[name]
    assert result.nfe <= nfe


@pytest.mark.parametrize("method", SDE_METHODS)
@pytest.mark.parametrize("name", ["rectified", "vp"])
def test_a_sample_does_not_depend_on_its_batch(method: str, name: str) -> None:
    """Sample i drawn in a batch of 64, alone, or in a slice of the batch: bit-identical."""
    path = get_path(name)
    kwargs = dict(path=path, prediction="x0", seed=3, **OPTIONS[method])
    batch = sample_sde(shrink_field, seeded_noise((3,), range(64), 3), 12, method, **kwargs).x
    for i in (0, 17, 63):
        alone = sample_sde(shrink_field, seeded_noise((3,), [i], 3), 12, method, indices=[i],
                           **kwargs).x  # fmt: skip
        if name == "rectified":  # arithmetic only: exact; VP's exp may differ by an ulp
            assert torch.equal(alone[0], batch[i])
        else:
            torch.testing.assert_close(alone[0], batch[i], rtol=1e-6, atol=1e-6)
    part = sample_sde(shrink_field, seeded_noise((3,), range(10, 20), 3), 12, method,
                      indices=range(10, 20), **kwargs).x  # fmt: skip
    torch.testing.assert_close(part, batch[10:20], rtol=1e-6, atol=1e-6)
    other_seed = sample_sde(shrink_field, seeded_noise((3,), range(64), 3), 12, method,
                            **{**kwargs, "seed": 4}).x  # fmt: skip
    assert not torch.allclose(other_seed, batch)


@pytest.mark.parametrize("name", ["rectified", "vp", "ve", "cosine"])
@pytest.mark.parametrize("method", ["euler_maruyama", "flow_sde"])
def test_zero_noise_is_the_euler_ode(method: str, name: str) -> None:
    path = get_path(name)
    x = seeded_noise((2,), range(16), 0) * path.prior_std
    sde = sample_sde(shrink_field, x, 20, method, path=path, prediction="x0", noise_scale=0.0)
    ode = sample_ode(shrink_field, x, 20, "euler", path=path, prediction="x0")
    torch.testing.assert_close(sde.x, ode.x, rtol=1e-6, atol=1e-6)  # fused vs unfused update
    assert sde.nfe == ode.nfe == 20


def test_zero_noise_edm_is_the_deterministic_heun_sampler() -> None:
    path, x = vp(), seeded_noise((2,), range(16), 0)
    churned = sample_sde(shrink_field, x, 15, "edm", path=path, prediction="x0", **EDM_CHURN)
    plain = sample_sde(shrink_field, x, 15, "edm", path=path, prediction="x0")
    silent = sample_sde(shrink_field, x, 15, "edm", path=path, prediction="x0",
                        noise_scale=0.0, **EDM_CHURN)  # fmt: skip
    assert torch.equal(silent.x, plain.x)
    assert not torch.allclose(churned.x, plain.x)


def test_the_sde_differs_from_the_ode_and_pc_dispatches() -> None:
    path, x = vp(), seeded_noise((2,), range(16), 0)
    ode = sample_ode(shrink_field, x, 20, path=path, prediction="x0").x
    for method in SDE_METHODS:
        out = sample_sde(shrink_field, x, 20, method, path=path, prediction="x0", **OPTIONS[method])
        assert not torch.allclose(out.x, ode), method
    direct = sample_pc(shrink_field, x, 20, path=path, prediction="x0", snr=0.1)
    via = sample_sde(shrink_field, x, 20, "pc", path=path, prediction="x0", snr=0.1)
    assert torch.equal(direct.x, via.x)
    edm = sample_edm(shrink_field, x, 20, path=path, prediction="x0", **EDM_CHURN)
    assert torch.equal(edm.x, sample_sde(shrink_field, x, 20, "edm", path=path,
                                         prediction="x0", **EDM_CHURN).x)  # fmt: skip


def test_reverse_diffusion_matches_the_known_schedules() -> None:
    t = 0.3
    s = 1 - t
    beta = 0.1 + s * (20 - 0.1)
    m = math.exp(-(s**2) * (20 - 0.1) / 4 - s * 0.1 / 2)
    assert reverse_diffusion_sq(vp(), t) == pytest.approx(beta, rel=1e-9)
    assert reverse_diffusion_sq(subvp(), t) == pytest.approx(beta * (1 - m**4), rel=1e-9)
    sigma = 0.01 * (50 / 0.01) ** s
    assert reverse_diffusion_sq(ve(), t) == pytest.approx(
        2 * sigma**2 * math.log(50 / 0.01), rel=1e-9
    )
    assert reverse_diffusion_sq(rectified(), t) == pytest.approx(2 * (1 - t) / t, rel=1e-9)
    cosine = get_path("cosine")
    assert reverse_diffusion_sq(cosine, t) == pytest.approx(
        math.pi / math.tan(math.pi * t / 2), rel=1e-9
    )
    assert reverse_diffusion_sq(rectified(), 0.0) == math.inf


@pytest.mark.parametrize("name", ["rectified", "vp", "ve"])
def test_edm_time_inverts_edm_sigma(name: str) -> None:
    path = get_path(name)
    for t in (0.1, 0.5, 0.9):
        assert edm_time(path, edm_sigma(path, t), 1.0) == pytest.approx(t, abs=1e-9)


@pytest.mark.parametrize("method", SDE_METHODS)
def test_trajectory_times_and_conditioning(method: str) -> None:
    seen = []

    def field(x: torch.Tensor, t: torch.Tensor, label: int) -> torch.Tensor:
        seen.append(label)
        return torch.zeros_like(x)

    x = torch.randn(2, 3)
    result = sample_sde(field, x, 8, method, grid=[0.0, 0.25, 0.5, 1.0], prediction="x0",
                        return_trajectory=True, cond={"label": 7})  # fmt: skip
    assert result.trajectory.shape == (4, 2, 3)
    torch.testing.assert_close(result.trajectory[0], x)
    assert result.times.tolist() == [0.0, 0.25, 0.5, 1.0]
    assert seen and set(seen) == {7}


def test_bad_arguments_are_named() -> None:
    x = torch.ones(2, 2)
    with pytest.raises(ValueError, match="unknown SDE method 'langevin'"):
        sample_sde(shrink_field, x, 4, method="langevin")
    for method, too_small in [("euler_maruyama", 0), ("flow_sde", 0), ("edm", 0), ("pc", 1)]:
        with pytest.raises(ValueError, match=f"method '{method}' needs nfe >= .*nfe={too_small}"):
            sample_sde(shrink_field, x, too_small, method)
    with pytest.raises(ValueError, match="needs nfe >= 3"):
        sample_sde(shrink_field, x, 2, "pc", n_corrector_steps=2)
    with pytest.raises(ValueError, match="needs nfe >= 1, got nfe=None"):
        sample_sde(shrink_field, x)
    with pytest.raises(ValueError, match="noise_scale must be >= 0, got noise_scale=-1"):
        sample_sde(shrink_field, x, 4, noise_scale=-1.0)
    with pytest.raises(ValueError, match=r"'euler_maruyama' got unknown options \['snr'\]"):
        sample_sde(shrink_field, x, 4, snr=0.1)
    with pytest.raises(ValueError, match=r"'edm' got unknown options \['s_churn'\]"):
        sample_sde(shrink_field, x, 4, "edm", s_churn=1.0)
    with pytest.raises(ValueError, match="indices has 3 entries for a batch of 2"):
        sample_sde(shrink_field, x, 4, indices=[0, 1, 2])
    with pytest.raises(ValueError, match="snr must be > 0, got snr=0"):
        sample_sde(shrink_field, x, 4, "pc", snr=0.0)
    with pytest.raises(ValueError, match="n_corrector_steps must be an integer >= 0, got -1"):
        sample_pc(shrink_field, x, 4, n_corrector_steps=-1)
    with pytest.raises(ValueError, match="S_churn and S_noise must be >= 0"):
        sample_sde(shrink_field, x, 4, "edm", S_churn=-1.0)
    with pytest.raises(ValueError, match="need t0 < t1, got t0=0.5, t1=0.5"):
        sample_sde(shrink_field, x, 4, t0=0.5, t1=0.5)
    with pytest.raises(ValueError, match="unknown prediction 'noise'"):
        sample_sde(shrink_field, x, 4, prediction="noise")
    with pytest.raises(ValueError, match="must return the shape of x"):
        sample_sde(lambda x, t: x[:, :1], x, 4)
