"""Minibatch OT coupling: optimal, a permutation of the batch, class-conditional, errors."""

import itertools
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from flowkit.couplings.independent import Independent
from flowkit.couplings.minibatch_ot import MinibatchOT, squared_distances


def pair_cost(x0: torch.Tensor, x1: torch.Tensor) -> float:
    return ((x0.double() - x1.double()) ** 2).flatten(1).sum(1).mean().item()


def sorted_rows(x: torch.Tensor) -> torch.Tensor:
    flat = x.reshape(x.shape[0], -1)
    order = sorted(range(flat.shape[0]), key=lambda i: flat[i].tolist())
    return flat[order]


def assert_permutation_of(out: torch.Tensor, given: torch.Tensor) -> None:
    assert out.shape == given.shape
    assert torch.equal(sorted_rows(out), sorted_rows(given))


@pytest.mark.parametrize("n", range(2, 8))
@pytest.mark.parametrize("seed", range(3))
def test_exact_is_the_brute_force_optimum(n: int, seed: int) -> None:
    g = torch.Generator().manual_seed(100 * n + seed)
    x0 = torch.randn(n, 3, generator=g, dtype=torch.float64)  # float64: an exact cost
    x1 = torch.randn(n, 3, generator=g, dtype=torch.float64) + 1.0
    cost = squared_distances(x0, x1)
    best = min(
        sum(cost[p[j], j].item() for j in range(n)) for p in itertools.permutations(range(n))
    )
    for backend in ("scipy", "pot"):
        out0, out1, cond = MinibatchOT(backend=backend)(x0, x1)
        assert out1 is x1 and cond is None
        assert_permutation_of(out0, x0)
        assert pair_cost(out0, x1) * n == pytest.approx(best, rel=1e-9, abs=1e-9)
    # float32 inputs take a float32 cost: the same matching up to float32 rounding
    out32 = MinibatchOT()(x0.float(), x1.float())[0]
    assert pair_cost(out32, x1) * n == pytest.approx(best, rel=1e-6)


def test_squared_distances_match_cdist() -> None:
    g = torch.Generator().manual_seed(0)
    x0, x1 = torch.randn(9, 2, 4, generator=g), torch.randn(7, 2, 4, generator=g)
    expected = torch.cdist(x0.flatten(1).double(), x1.flatten(1).double()) ** 2
    got = squared_distances(x0.double(), x1.double())
    assert got.dtype == torch.float64 and got.shape == (9, 7)
    torch.testing.assert_close(got, expected)
    assert squared_distances(x0.double(), x0.double()).diagonal().abs().max() < 1e-12
    fast = squared_distances(x0, x1)  # float32 inputs: float32 product, float64 result
    assert fast.dtype == torch.float64
    torch.testing.assert_close(fast, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("method", ["exact", "sinkhorn"])
@pytest.mark.parametrize("n", [1, 5, 256])
def test_output_is_a_permutation_of_the_batch(method: str, n: int) -> None:
    g = torch.Generator().manual_seed(n)
    x0 = torch.randn(n, 3, 4, 4, generator=g)
    x1 = torch.randn(n, 3, 4, 4, generator=g)
    cond = torch.randn(n, 6, generator=g)
    out0, out1, out_cond = MinibatchOT(method)(x0, x1, cond)
    assert out1 is x1 and out_cond is cond
    assert_permutation_of(out0, x0)
    perm = MinibatchOT(method).permutation(x0, x1)
    assert torch.equal(torch.sort(perm).values, torch.arange(n))


def test_empty_batch() -> None:
    x = torch.zeros(0, 2)
    out0, out1, _ = MinibatchOT()(x, x.clone())
    assert out0.shape == (0, 2) and out1.shape == (0, 2)
    assert MinibatchOT("sinkhorn")(x, x.clone())[0].shape == (0, 2)


def test_sinkhorn_cost_approaches_exact_as_reg_shrinks() -> None:
    """Large reg: a near-independent random permutation; small reg: the exact one."""
    g = torch.Generator().manual_seed(1)
    x0 = torch.randn(64, 2, generator=g)
    x1 = 0.5 * torch.randn(64, 2, generator=g) + 2.0
    exact = pair_cost(MinibatchOT()(x0, x1)[0], x1)
    independent = pair_cost(x0, x1)
    torch.manual_seed(0)  # the Gumbel perturbation draws from the global torch RNG
    costs = []
    for reg, solver in (
        (1.0, "sinkhorn"),
        (0.1, "sinkhorn"),
        (0.01, "sinkhorn"),
        (0.003, "sinkhorn_log"),
    ):
        out0 = MinibatchOT("sinkhorn", reg=reg, sinkhorn_method=solver, num_iter_max=20_000)(
            x0, x1
        )[0]
        assert_permutation_of(out0, x0)
        costs.append(pair_cost(out0, x1))
    assert all(c >= exact * (1 - 1e-12) for c in costs)
    assert costs[0] > costs[1] > costs[2] > costs[3]
    assert costs[3] <= 1.01 * exact
    assert abs(costs[0] - independent) < 0.05 * independent  # reg 1: about independent
    assert independent > 1.15 * exact  # the problem is not trivial


def test_sinkhorn_log_and_unnormalised_cost() -> None:
    g = torch.Generator().manual_seed(2)
    x0, x1 = torch.randn(32, 2, generator=g), torch.randn(32, 2, generator=g)
    exact = pair_cost(MinibatchOT()(x0, x1)[0], x1)
    out0 = MinibatchOT("sinkhorn", reg=1e-2, sinkhorn_method="sinkhorn_log", num_iter_max=20000)(
        x0, x1
    )[0]
    assert_permutation_of(out0, x0)
    assert exact <= pair_cost(out0, x1) < pair_cost(x0, x1)
    out0 = MinibatchOT("sinkhorn", reg=0.5, normalize_cost=False)(x0, x1)[0]
    assert_permutation_of(out0, x0)


def test_class_conditional_matches_only_within_labels() -> None:
    g = torch.Generator().manual_seed(3)
    n = 60
    labels = torch.randint(0, 4, (n,), generator=g)
    x0 = torch.randn(n, 2, generator=g)
    x0 = torch.cat([x0, torch.arange(n, dtype=torch.float32)[:, None]], 1)  # row id
    x1 = torch.randn(n, 3, generator=g)
    x1[:, 2] = 0.0
    for method in ("exact", "sinkhorn"):
        coupling = MinibatchOT(method, class_conditional=True)
        out0, out1, out_cond = coupling(x0, x1, labels)
        assert out1 is x1 and out_cond is labels
        assert_permutation_of(out0, x0)
        source = out0[:, 2].long()
        assert torch.equal(labels[source], labels)
        # within each label the matching is the exact optimum of that group
        if method == "exact":
            for label in labels.unique():
                idx = (labels == label).nonzero().flatten()
                alone = MinibatchOT()(x0[idx, :2], x1[idx, :2])[0]
                assert pair_cost(out0[idx, :2], x1[idx, :2]) == pytest.approx(
                    pair_cost(alone, x1[idx, :2])
                )
    # an unconditional coupling would cross labels here
    unconditional = MinibatchOT()(x0, x1)[0][:, 2].long()
    assert not torch.equal(labels[unconditional], labels)


def test_ot_lowers_pair_distance_vs_independent() -> None:
    g = torch.Generator().manual_seed(4)
    x0 = torch.randn(128, 8, generator=g)
    x1 = torch.randn(128, 8, generator=g) * 0.3 + 1.0
    independent = pair_cost(*Independent()(x0, x1)[:2])
    for coupling in (MinibatchOT("exact"), MinibatchOT("sinkhorn", reg=0.01)):
        out0, out1, _ = coupling(x0, x1)
        assert pair_cost(out0, out1) < 0.9 * independent


def test_device_dtype_and_grad_are_kept() -> None:
    x0 = torch.randn(16, 3, dtype=torch.float16)
    x1 = torch.randn(16, 3, dtype=torch.float16, requires_grad=True)
    out0, out1, _ = MinibatchOT()(x0, x1)
    assert out0.dtype == torch.float16 and out0.device == x0.device and out1 is x1


def test_errors() -> None:
    with pytest.raises(ValueError, match="method"):
        MinibatchOT("greedy")
    with pytest.raises(ValueError, match="backend"):
        MinibatchOT(backend="cvx")
    with pytest.raises(ValueError, match="reg"):
        MinibatchOT("sinkhorn", reg=0.0)
    x = torch.randn(4, 2)
    with pytest.raises(ValueError, match="shape"):
        MinibatchOT()(x, torch.randn(5, 2))
    with pytest.raises(ValueError, match="shape"):
        MinibatchOT()(x, torch.randn(4, 3))
    with pytest.raises(ValueError, match="cond"):
        MinibatchOT(class_conditional=True)(x, x.clone())
    with pytest.raises(ValueError, match="integer labels"):
        MinibatchOT(class_conditional=True)(x, x.clone(), torch.zeros(4))
    with pytest.raises(ValueError, match="integer labels"):
        MinibatchOT(class_conditional=True)(x, x.clone(), torch.zeros(4, 1, dtype=torch.long))
    assert "sinkhorn" in repr(MinibatchOT("sinkhorn"))


def test_across_ranks_without_process_group_is_the_local_coupling() -> None:
    g = torch.Generator().manual_seed(5)
    x0, x1 = torch.randn(10, 2, generator=g), torch.randn(10, 2, generator=g)
    assert torch.equal(MinibatchOT(across_ranks=True)(x0, x1)[0], MinibatchOT()(x0, x1)[0])


WORKER = textwrap.dedent(
    """
    import sys
    import torch
    import torch.distributed as dist
    from flowkit.couplings.minibatch_ot import MinibatchOT

    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    g = torch.Generator().manual_seed(7)
    n = 12
    x0 = torch.randn(world * n, 2, generator=g)
    x1 = torch.randn(world * n, 2, generator=g) + 1.0
    labels = torch.randint(0, 3, (world * n,), generator=g)
    local = slice(rank * n, (rank + 1) * n)
    for conditional in (False, True):
        coupling = MinibatchOT(across_ranks=True, class_conditional=conditional)
        cond = labels[local] if conditional else None
        out0, out1, out_cond = coupling(x0[local], x1[local], cond)
        assert torch.equal(out1, x1[local])
        full = MinibatchOT(class_conditional=conditional)(x0, x1, labels)[0]
        assert torch.equal(out0, full[local]), (rank, conditional)
        torch.save(out0, f"{sys.argv[1]}/rank{rank}-{int(conditional)}.pt")
    dist.destroy_process_group()
    """
)


@pytest.mark.parametrize("launcher", [pytest.param("torchrun", marks=pytest.mark.slow), "fork"])
def test_across_ranks_two_processes(tmp_path: Path, launcher: str, fork_ranks) -> None:
    """The worker under torchrun (slow), and in two ranks forked from this process with
    torchrun's environment (the default suite's fast counterpart; same asserts)."""
    worker = tmp_path / "worker.py"
    worker.write_text(WORKER)
    if launcher == "fork":
        fork_ranks(worker, [tmp_path])
    else:
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        command = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node=2",
            str(worker),
            str(tmp_path),
        ]
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-3000:]
    for conditional in (0, 1):
        parts = [torch.load(tmp_path / f"rank{r}-{conditional}.pt") for r in range(2)]
        # the two ranks together hold every noise point exactly once
        g = torch.Generator().manual_seed(7)
        x0 = torch.randn(24, 2, generator=g)
        assert_permutation_of(torch.cat(parts), x0)
