"""Assignment backends (LAPJV, scipy) and the torch auction: the optimum on small batches
(brute force), the optimum of scipy on larger ones, the auction's gap bound, a permutation
always, the automatic backend and its fallback, and the auction across ranks."""

import itertools
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.optimize import linear_sum_assignment

from flowkit.couplings import assignment
from flowkit.couplings.assignment import resolve_backend, solve_assignment
from flowkit.couplings.auction import auction_assignment
from flowkit.couplings.minibatch_ot import MinibatchOT, squared_distances

HAS_LAP = assignment.has_lap()  # the 'ot' / 'dev' extras install lap
EXACT = ("lapjv", "scipy") if HAS_LAP else ("scipy",)
needs_lap = pytest.mark.skipif(not HAS_LAP, reason="needs the lap package (the 'ot' extra)")


def matching_cost(cost: torch.Tensor | np.ndarray, sigma) -> float:
    cost = torch.as_tensor(np.asarray(cost), dtype=torch.float64)
    sigma = torch.as_tensor(np.asarray(sigma), dtype=torch.long)
    return cost[sigma, torch.arange(cost.shape[0])].sum().item()


def is_permutation(sigma, n: int) -> bool:
    return torch.equal(torch.as_tensor(np.asarray(sigma)).long().sort().values, torch.arange(n))


def batch(n: int, seed: int, d: int = 3, dtype=torch.float64) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    x0 = torch.randn(n, d, generator=g, dtype=dtype)
    x1 = torch.randn(n, d, generator=g, dtype=dtype) + 1.0
    return x0, x1


@pytest.mark.parametrize("n", range(1, 8))
def test_every_backend_is_the_brute_force_optimum(n: int) -> None:
    for seed in range(3):
        x0, x1 = batch(n, 10 * n + seed)
        cost = squared_distances(x0, x1)
        best = min(matching_cost(cost, p) for p in itertools.permutations(range(n)))
        for backend in EXACT:
            sigma = solve_assignment(cost.numpy(), backend)
            assert is_permutation(sigma, n)
            assert matching_cost(cost, sigma) == pytest.approx(best, rel=1e-12, abs=1e-12)
        result = auction_assignment(cost, rel_eps=1e-9)
        assert is_permutation(result.sigma, n)
        assert matching_cost(cost, result.sigma) <= best + result.bound + 1e-9
        assert matching_cost(cost, result.sigma) - best <= result.gap + 1e-9
        for method, backend in [("exact", b) for b in (*EXACT, "auto")] + [("auction", "auto")]:
            out0, out1, _ = MinibatchOT(method, backend=backend)(x0, x1)
            assert out1 is x1
            sigma = [int(torch.nonzero((x0 == row).all(1))[0]) for row in out0]
            assert is_permutation(sigma, n)
            assert matching_cost(cost, sigma) == pytest.approx(best, rel=1e-9, abs=1e-9)


@pytest.mark.parametrize("n", [64, 256])
def test_lapjv_and_auction_reach_scipys_optimum(n: int) -> None:
    x0, x1 = batch(n, n, d=16, dtype=torch.float32)
    for dtype in (torch.float32, torch.float64):
        cost = squared_distances(x0.to(dtype), x1.to(dtype), None)
        assert cost.dtype == dtype  # one matmul in the inputs' precision
        rows, cols = linear_sum_assignment(cost.numpy())
        best = matching_cost(cost, rows[np.argsort(cols)])
        sigma = solve_assignment(cost.numpy(), EXACT[0])
        assert is_permutation(sigma, n)
        assert matching_cost(cost, sigma) == pytest.approx(best, rel=1e-9)
        result = auction_assignment(cost)
        assert is_permutation(result.sigma, n)
        found = matching_cost(cost, result.sigma)
        assert best - 1e-6 * best <= found <= best + result.bound
        # the certified gap bounds the true one (up to float32 rounding of the sums)
        assert found - best <= result.gap + 1e-5 * best
        assert result.gap <= result.bound * (1 + 1e-3) + 1e-5 * best
    # through the coupling, float32 inputs: equal optimum to scipy
    coupling = MinibatchOT("auction")
    out0 = coupling(x0, x1)[0]
    exact0 = MinibatchOT(backend="scipy")(x0, x1)[0]
    cost = ((out0.double() - x1.double()) ** 2).sum()
    best = ((exact0.double() - x1.double()) ** 2).sum()
    assert best * (1 - 1e-6) <= cost <= best + coupling.last_auction.bound + 1e-6 * best


def test_auction_bound_holds_with_a_coarse_eps() -> None:
    x0, x1 = batch(128, 3, d=8)
    cost = squared_distances(x0, x1)
    rows, cols = linear_sum_assignment(cost.numpy())
    best = matching_cost(cost, rows[np.argsort(cols)])
    for rel_eps in (1e-1, 1e-2, 1e-3):
        result = auction_assignment(cost, rel_eps=rel_eps)
        assert is_permutation(result.sigma, 128)
        found = matching_cost(cost, result.sigma)
        assert best - 1e-9 <= found <= best + result.bound + 1e-9
        assert found - best <= result.gap + 1e-9 <= result.bound + 1e-6


def test_ties_and_duplicates_still_give_a_permutation() -> None:
    x = torch.zeros(6, 2)
    x[3:] = 1.0  # three copies of two points
    for method in ("exact", "auction"):
        out0 = MinibatchOT(method)(x, x.flip(0))[0]
        assert torch.equal(out0, x.flip(0))
    cost = torch.ones(5, 5)
    assert is_permutation(auction_assignment(cost).sigma, 5)
    for backend in EXACT:
        assert is_permutation(solve_assignment(cost.numpy(), backend), 5)


def test_auction_class_conditional_matches_only_within_a_class() -> None:
    x0, x1 = batch(40, 1, d=4)
    labels = torch.arange(40) % 3
    coupling = MinibatchOT("auction", class_conditional=True)
    out0, _, cond = coupling(x0, x1, labels)
    assert cond is labels
    exact0 = MinibatchOT(class_conditional=True)(x0, x1, labels)[0]
    torch.testing.assert_close(out0, exact0)  # the same optimum, class by class
    assert coupling.last_auction.bound > 0


@needs_lap
def test_auto_prefers_lapjv_and_falls_back_to_scipy(monkeypatch) -> None:
    assert resolve_backend("auto") == "lapjv"
    assert "lapjv" in repr(MinibatchOT(backend="lapjv")) and "auto" not in repr(MinibatchOT())
    monkeypatch.setitem(sys.modules, "lap", None)  # import lap now raises ImportError
    assignment.has_lap.cache_clear()
    try:
        assert resolve_backend("auto") == "scipy"
        x0, x1 = batch(5, 0)
        torch.testing.assert_close(
            MinibatchOT()(x0, x1)[0], MinibatchOT(backend="scipy")(x0, x1)[0]
        )
        with pytest.raises(ImportError, match=r"flowkit\[ot\]"):
            MinibatchOT(backend="lapjv")
    finally:
        assignment.has_lap.cache_clear()


def test_errors() -> None:
    with pytest.raises(ValueError, match="backend"):
        resolve_backend("hungarian")
    with pytest.raises(ValueError, match="square"):
        solve_assignment(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="auction_eps"):
        MinibatchOT("auction", auction_eps=0.0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_auction_on_cuda_matches_the_cpu_optimum() -> None:  # pragma: no cover - GPU only
    x0, x1 = batch(512, 0, d=64, dtype=torch.float32)
    out0 = MinibatchOT("auction")(x0.cuda(), x1.cuda())[0]
    assert out0.device.type == "cuda"
    exact0 = MinibatchOT()(x0, x1)[0]
    cost = ((out0.cpu().double() - x1.double()) ** 2).sum()
    best = ((exact0.double() - x1.double()) ** 2).sum()
    assert cost <= best * (1 + 1e-5)


def test_auction_across_ranks_is_one_global_problem(tmp_path: Path, fork_ranks) -> None:
    def worker(rank: int) -> None:
        import torch.distributed as dist

        dist.init_process_group("gloo")
        world = dist.get_world_size()
        x0, x1 = batch(world * 10, 9, d=2, dtype=torch.float32)
        local = slice(rank * 10, (rank + 1) * 10)
        out0, out1, _ = MinibatchOT("auction", across_ranks=True)(x0[local], x1[local])
        assert torch.equal(out1, x1[local])
        full = MinibatchOT("auction")(x0, x1)[0]
        assert torch.equal(out0, full[local]), rank
        torch.save(out0, tmp_path / f"rank{rank}.pt")
        dist.destroy_process_group()

    fork_ranks(worker)
    parts = torch.cat([torch.load(tmp_path / f"rank{r}.pt") for r in range(2)])
    x0, _ = batch(20, 9, d=2, dtype=torch.float32)
    assert torch.equal(parts[torch.argsort(parts[:, 0])], x0[torch.argsort(x0[:, 0])])


@needs_lap
def test_a_lapjv_answer_that_is_not_a_permutation_falls_back_to_scipy(monkeypatch) -> None:
    import lap

    monkeypatch.setattr(lap, "lapjv", lambda c, return_cost: (0.0, None, np.zeros(len(c), int)))
    x0, x1 = batch(6, 4)
    cost = squared_distances(x0, x1).numpy()
    rows, cols = linear_sum_assignment(cost)
    assert np.array_equal(solve_assignment(cost, "lapjv"), rows[np.argsort(cols)])
