"""Sinkhorn couplings at a small reg: the plan's marginals are checked, an underflowing plan is
solved again in the log domain, and a plan that fails there too is refused by name."""

import numpy as np
import pytest
import torch

from flowkit.couplings.minibatch_ot import MinibatchOT, squared_distances
from flowkit.couplings.sinkhorn import marginal_error

ot = pytest.importorskip("ot")

SMALL_REG = 2e-4  # on the max-normalised cost of the batch below: POT's standard solver underflows


def batch() -> tuple[torch.Tensor, torch.Tensor]:
    """B = 64 points of N(0, I_8) and of N(1, I_8)."""
    g = torch.Generator().manual_seed(0)
    return torch.randn(64, 8, generator=g), torch.randn(64, 8, generator=g) + 1.0


def pair_cost(x0: torch.Tensor, x1: torch.Tensor) -> float:
    return ((x0.double() - x1.double()) ** 2).sum(1).mean().item()


def standard_plan(x0: torch.Tensor, x1: torch.Tensor, reg: float) -> np.ndarray:
    cost = squared_distances(x0, x1).numpy()
    a = np.full(len(cost), 1.0 / len(cost))
    with pytest.warns(UserWarning):  # POT's "numerical errors" / "did not converge"
        return ot.sinkhorn(a, a, cost / cost.max(), reg, numItermax=1000, stopThr=1e-9)


def test_small_reg_sinkhorn_is_close_to_the_exact_optimum() -> None:
    x0, x1 = batch()
    # the premise: POT's standard solver underflows to a plan of (almost) no mass
    with np.errstate(all="ignore"):
        assert standard_plan(x0, x1, SMALL_REG).sum() < 1e-6
    exact = pair_cost(MinibatchOT()(x0, x1)[0], x1)
    random = pair_cost(x0, x1)
    assert random > 1.5 * exact  # the problem is not trivial
    for seed in range(3):
        torch.manual_seed(seed)  # the Gumbel perturbation draws from the global torch RNG
        out0 = MinibatchOT("sinkhorn", reg=SMALL_REG)(x0, x1)[0]
        assert pair_cost(out0, x1) <= 1.02 * exact  # before the fix: 1.5x, random 1.9x


def test_small_reg_sinkhorn_is_still_a_permutation() -> None:
    x0, x1 = batch()
    torch.manual_seed(0)
    coupling = MinibatchOT("sinkhorn", reg=SMALL_REG)
    perm = coupling.permutation(x0, x1)
    assert torch.equal(torch.sort(perm).values, torch.arange(64))
    out0, out1, cond = coupling(x0, x1)
    assert out1 is x1 and cond is None
    assert torch.equal(torch.sort(out0, dim=0).values, torch.sort(x0, dim=0).values)
    assert len({tuple(row.tolist()) for row in out0}) == 64  # no point repeated or dropped


def test_log_domain_solver_runs_only_when_the_plan_misses_its_marginals(monkeypatch) -> None:
    calls = []
    solve = ot.sinkhorn

    def recording(*args, method="sinkhorn", **kwargs):
        calls.append(method)
        return solve(*args, method=method, **kwargs)

    monkeypatch.setattr(ot, "sinkhorn", recording)
    x0, x1 = batch()
    MinibatchOT("sinkhorn", reg=0.05)(x0, x1)
    assert calls == ["sinkhorn"]
    calls.clear()
    MinibatchOT("sinkhorn", reg=SMALL_REG)(x0, x1)
    assert calls == ["sinkhorn", "sinkhorn_log"]
    calls.clear()
    MinibatchOT("sinkhorn", reg=SMALL_REG, sinkhorn_method="sinkhorn_log")(x0, x1)
    assert calls == ["sinkhorn_log"]


def test_too_small_reg_raises_naming_reg_the_error_and_the_fix() -> None:
    x0, x1 = batch()
    with pytest.raises(ValueError, match=r"reg=1e-05") as error:
        MinibatchOT("sinkhorn", reg=1e-5)(x0, x1)
    message = str(error.value)
    assert "marginals" in message and "(sinkhorn_log)" in message
    assert "larger reg" in message and "method='exact'" in message
    with pytest.raises(ValueError, match="marginal_tol"):
        MinibatchOT("sinkhorn", marginal_tol=0.0)


def test_marginal_error_is_relative_to_the_uniform_marginals() -> None:
    n = 4
    assert marginal_error(np.full((n, n), 1.0 / n**2)) == pytest.approx(0.0, abs=1e-12)
    assert marginal_error(np.eye(n) / n) == pytest.approx(0.0, abs=1e-12)
    empty_row = np.full((n, n), 1.0 / (n * (n - 1)))
    empty_row[0] = 0.0
    assert marginal_error(empty_row) == pytest.approx(1.0)
    assert marginal_error(np.full((n, n), 1e-40)) == pytest.approx(1.0)
    assert marginal_error(np.full((n, n), np.nan)) == float("inf")
