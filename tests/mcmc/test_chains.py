"""Langevin chains at a fixed level sample the noised target; counted NFE; seeding."""

from __future__ import annotations

import pytest
import torch

from flowkit.mcmc import DenoisingMCMC, LangevinGibbs, level_grid, sample_dmcmc
from flowkit.paths import rectified, vp

from .gaussians import MixtureScore, gaussian


def _fixed_level_chains(field, s: float, step: float, n: int, chains: int = 2000):
    """``n`` Langevin steps of ``chains`` chains held at the grid level nearest ``s``."""
    levels = level_grid(64, 0.05, 20.0)
    mc = LangevinGibbs(field, (2,), levels=levels, step_size=step, num_chains=chains,
                       dtype=torch.float64)  # fmt: skip
    mc.initialize(0, s_init=s)
    level = float(levels[mc.k[0]])
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small tensors: one thread is faster and leaves the other core
    try:
        mc.run(n, gibbs=False)
    finally:
        torch.set_num_threads(threads)
    return mc.y, level


@pytest.mark.parametrize("path", [rectified(), vp()], ids=["rectified", "vp"])
def test_gaussian_stationary_law(path) -> None:
    field = gaussian(path, [1.0, -0.5], 0.7)
    y, s = _fixed_level_chains(field, 0.8, 0.05, 400)
    var = 0.7**2 + s**2  # the noised target N(mu, (c^2 + s^2) I); ULA bias eta / (4 var) < 1%
    torch.testing.assert_close(y.mean(0), torch.tensor([1.0, -0.5], dtype=y.dtype), atol=0.06,
                               rtol=0)  # fmt: skip
    torch.testing.assert_close(y.var(0), torch.full((2,), var, dtype=y.dtype), rtol=0.05, atol=0)


def test_mixture_stationary_law() -> None:
    means = torch.tensor([[-2.0, 0.0], [2.0, 0.0]], dtype=torch.float64)
    field = MixtureScore(rectified(), means, torch.tensor([0.3, 0.7]), 0.5)
    y, s = _fixed_level_chains(field, 1.5, 0.2, 300, chains=3000)
    var = 0.5**2 + s**2
    mean_x = 2 * (0.7 - 0.3)
    second_x = 4 + var  # E[y_x^2] of the mixture of N(+-2, var)
    assert float(y[:, 0].mean()) == pytest.approx(mean_x, abs=0.12)
    assert float(y[:, 1].mean()) == pytest.approx(0.0, abs=0.06)
    assert float((y[:, 0] ** 2).mean()) == pytest.approx(second_x, rel=0.05)
    assert float(y[:, 1].var()) == pytest.approx(var, rel=0.05)


def _dmcmc(field, chain_batch_size=None, **kw):
    return sample_dmcmc(field, (2,), num=kw.pop("num", 10), nfe=kw.pop("nfe", 8), skip=3,
                        burn_in=4, num_chains=4, chain_batch_size=chain_batch_size,
                        dtype=torch.float64, seed=3, **kw)  # fmt: skip


@pytest.mark.parametrize("method", ["edm", "heun", "euler", "dpm_solver_pp"])
def test_counted_nfe_equals_calls_received(method: str) -> None:
    field = gaussian(rectified(), [0.0, 0.0], 1.0)
    out = _dmcmc(field, chain_batch_size=3, method=method)  # 2 batches of chains, 3 rounds
    assert out.chain_nfe == 3 and out.nfe == 3 + out.integrator_nfe
    assert out.integrator_nfe == (4 if method == "heun" else 5)  # heun: 2 per step
    assert field.calls == 2 * (out.burn_in_nfe + 3 * out.nfe)
    assert out.x.shape == (10, 2) and out.estimator_calls == 0


def test_tweedie_step_counted_on_vp() -> None:
    field = gaussian(vp(), [0.0, 0.0], 1.0)
    out = _dmcmc(field, nfe=9)
    assert out.integrator_nfe == 6  # EDM with 5 evaluations + the Tweedie step
    assert field.calls == out.burn_in_nfe + 3 * out.nfe


def test_results_do_not_depend_on_chain_batch_size() -> None:
    a = _dmcmc(gaussian(rectified(), [0.5, 0.0], 1.0), chain_batch_size=None)
    b = _dmcmc(gaussian(rectified(), [0.5, 0.0], 1.0), chain_batch_size=1)
    torch.testing.assert_close(a.x, b.x, rtol=1e-12, atol=1e-12)
    assert torch.equal(a.levels, b.levels)


def test_chains_persist_across_calls() -> None:
    field = gaussian(rectified(), [0.0, 0.0], 1.0)
    chains = LangevinGibbs(field, (2,), num_chains=4, dtype=torch.float64)
    sampler = DenoisingMCMC(chains, skip=2, burn_in=2)
    first, second = sampler.sample(4, 7), sampler.sample(4, 7)
    assert first.burn_in_nfe > 0 and second.burn_in_nfe == 0
    assert not torch.equal(first.x, second.x) and chains.rounds == 2


def test_budget_errors_name_the_value() -> None:
    field = gaussian(rectified(), [0.0, 0.0], 1.0)
    with pytest.raises(ValueError, match="nfe=3 is below one round"):
        _dmcmc(field, nfe=3)
    with pytest.raises(ValueError, match="s_max"):
        LangevinGibbs(gaussian(vp(), [0.0], 1.0), (1,), levels=level_grid(10, 0.01, 1e4))


def test_a_gbm_model_is_refused() -> None:
    field = gaussian(rectified(), [0.0, 0.0], 1.0)
    field.path = "gbm"  # what a multiplicative model records
    with pytest.raises(ValueError, match="multiplicative"):
        LangevinGibbs(field, (2,))


def test_classifier_chains_do_not_depend_on_chain_batch_size() -> None:
    from flowkit.mcmc import ClassifierEstimator, NoiseLevelClassifier

    torch.manual_seed(0)
    net = NoiseLevelClassifier((2,), num_levels=16, s_min=0.05, s_max=20.0, hidden=16).double()
    outs = []
    for size in (None, 3):
        est = ClassifierEstimator(net, "posterior")
        outs.append(_dmcmc(gaussian(rectified(), [0.5, 0.0], 1.0), chain_batch_size=size,
                           levels=net.levels, estimator=est))  # fmt: skip
    torch.testing.assert_close(outs[0].x, outs[1].x, rtol=1e-9, atol=1e-9)
    assert outs[0].estimator_calls == 3  # one classifier call per chain step
