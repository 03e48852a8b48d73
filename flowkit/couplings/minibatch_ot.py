"""Minibatch optimal-transport coupling: pair noise and data by an optimal permutation.

Within a batch of ``B`` noise points ``x0`` and ``B`` data points ``x1``, the coupling
solves the assignment problem for the squared Euclidean cost

    ``min_sigma  sum_i || x0[sigma(i)] - x1[i] ||^2``

and returns ``(x0[sigma], x1, cond)``: ``x1`` and ``cond`` stay where they are and ``x0``
is reordered, so the output is a *permutation* of the batch it was given. Unlike
torchcfm's ``OTPlanSampler``, which samples pairs from the plan with replacement (and so
duplicates some points and drops others), no point is ever repeated or dropped.

``method="exact"`` solves the assignment on a CPU (:mod:`flowkit.couplings.assignment`):
by default with LAPJV (``lap.lapjv``, the ``ot`` extra) when installed, else with
``scipy.optimize.linear_sum_assignment``; ``backend="lapjv"`` / ``"scipy"`` pick one, and
``backend="pot"`` uses POT's network simplex ``ot.emd``. The cost is computed with one matmul
in the inputs' precision and given to LAPJV / scipy in it (float32 for float32 inputs).

``method="auction"`` solves it in torch on the inputs' device (a GPU included) with the
epsilon-scaling auction (:mod:`flowkit.couplings.auction`): the mean pair cost is within
``auction_eps * S`` of the optimum (``S`` the spread of the row-shifted cost), and the
certified duality gap of the last batch is kept in ``last_auction``. ``method="sinkhorn"``
solves the entropic problem with POT's ``ot.sinkhorn`` and draws a permutation that
follows the entropic plan ``P`` by perturb-and-MAP: the maximum-weight matching of
``log P + Gumbel noise`` (global torch RNG). Rounding ``P`` itself (its heaviest matching)
would not do: for a large ``reg`` the plan is about uniform minus a term proportional to
the cost, whose heaviest matching is the cheapest one, so the "soft" coupling would be the
exact one at every ``reg``. With the noise, ``reg -> 0`` concentrates on the optimal
permutation and a large ``reg`` gives a near-uniform random permutation (the independent
coupling); no point is repeated or dropped either way.

A small ``reg`` makes POT's standard Sinkhorn underflow and return a plan of almost no mass,
whose draws are close to random permutations. The plan's marginals are therefore checked
(:func:`flowkit.couplings.sinkhorn.sinkhorn_plan`): a plan that misses them is solved again
with the log-domain ``sinkhorn_log``, and one that misses them there too raises
``ValueError`` naming ``reg``. Pass ``sinkhorn_method="sinkhorn_log"`` to skip the first try
when ``reg`` is known to be small.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

from flowkit.couplings.assignment import resolve_backend, solve_assignment
from flowkit.couplings.auction import AuctionResult, auction_assignment
from flowkit.couplings.sinkhorn import MARGINAL_TOL, sinkhorn_plan

_METHODS = ("exact", "sinkhorn", "auction")
_BACKENDS = ("auto", "lapjv", "scipy", "pot")


def _import_pot() -> Any:
    try:
        import ot
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise ImportError(
            "this minibatch OT option needs POT (Python Optimal Transport); install the "
            "'ot' extra: pip install 'flowkit[ot]'"
        ) from error
    return ot


def squared_distances(x0: Tensor, x1: Tensor, dtype: torch.dtype | None = torch.float64) -> Tensor:
    """Squared Euclidean distances between the flattened rows of ``x0`` and ``x1``.

    ``|a|^2 + |b|^2 - 2 a.b`` clamped at zero, computed in the inputs' precision (float32
    for float32 or half inputs, float64 for float64 inputs) on their device (the CPU for
    devices without float64), returned as a ``(B0, B1)`` tensor of ``dtype`` (float64 by
    default; ``None`` keeps the precision it was computed in).
    The float32 product is 3-5x faster than a float64 one on a CPU (batch 256-1024,
    3072-dimensional data); the assignment is then optimal for the cost up to float32
    rounding of its entries. Pass float64 tensors for a float64 cost.
    """
    device = x0.device if x0.device.type in ("cpu", "cuda") else torch.device("cpu")
    work = torch.float64 if torch.float64 in (x0.dtype, x1.dtype) else torch.float32
    a = x0.detach().reshape(x0.shape[0], -1).to(device=device, dtype=work)
    b = x1.detach().reshape(x1.shape[0], -1).to(device=device, dtype=work)
    cost = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * (a @ b.T)
    cost = cost.clamp_(min=0.0)
    return cost if dtype is None else cost.to(dtype)


class MinibatchOT:
    """Couple noise and data by an optimal permutation of the noise within the batch.

    Args:
        method: ``"exact"`` (assignment problem), ``"auction"`` (torch auction on the inputs'
            device, near-exact with a bound) or ``"sinkhorn"`` (entropic OT rounded to
            the nearest permutation, see the module docstring).
        reg: entropic regularisation of ``"sinkhorn"`` (on the max-normalised cost when
            ``normalize_cost``).
        class_conditional: match only points with the same label; ``cond`` must then be an
            integer ``(B,)`` tensor of labels.
        normalize_cost: divide the cost by its maximum before Sinkhorn (makes ``reg``
            independent of the data's scale). The exact assignment is unaffected.
        num_iter_max: iteration limit of ``ot.sinkhorn`` (or of ``ot.emd`` with
            ``backend="pot"``).
        stop_thr: stopping threshold of ``ot.sinkhorn``.
        backend: solver of ``"exact"``: ``"auto"`` (default: ``"lapjv"`` when the ``lap``
            package is installed, else ``"scipy"``), ``"lapjv"``, ``"scipy"`` or ``"pot"``.
        auction_eps: ``"auction"``'s final epsilon relative to the cost spread (the bound on
            the mean pair gap to the optimum, see :mod:`flowkit.couplings.auction`).
        sinkhorn_method: POT's Sinkhorn variant tried first; ``"sinkhorn_log"`` is slower
            but stable for very small ``reg`` (below about 1e-3 on a normalised cost). A plan
            that misses its marginals is solved again with ``"sinkhorn_log"``.
        marginal_tol: the largest relative marginal error ``n * max |row or column sum -
            1/n|`` a Sinkhorn plan may have (see :mod:`flowkit.couplings.sinkhorn`).
        across_ranks: under ``torch.distributed``, gather the batches of every rank, solve
            one assignment on rank 0 and give each rank its own ``x1`` (and ``cond``) with
            the noise assigned to it (which may come from any rank). Every rank must pass
            the same batch size. Without an initialised process group (or with one rank)
            it is the per-batch coupling.

    Returns ``(x0[perm], x1, cond)``: ``x1`` and ``cond`` are returned unchanged and ``x0``
    is reordered so that ``(x0_i, x1_i)`` are the matched pairs.
    """

    def __init__(
        self,
        method: str = "exact",
        reg: float = 0.05,
        class_conditional: bool = False,
        normalize_cost: bool = True,
        num_iter_max: int = 1000,
        stop_thr: float = 1e-9,
        backend: str = "auto",
        sinkhorn_method: str = "sinkhorn",
        across_ranks: bool = False,
        marginal_tol: float = MARGINAL_TOL,
        auction_eps: float = 1e-5,
    ) -> None:
        if method not in _METHODS:
            raise ValueError(f"method must be one of {_METHODS}, got {method!r}")
        if backend not in _BACKENDS:
            raise ValueError(f"backend must be one of {_BACKENDS}, got {backend!r}")
        if not reg > 0:
            raise ValueError(f"reg must be positive, got {reg}")
        if num_iter_max < 1:
            raise ValueError(f"num_iter_max must be at least 1, got {num_iter_max}")
        if not auction_eps > 0:
            raise ValueError(f"auction_eps must be positive, got {auction_eps}")
        if not marginal_tol > 0:
            raise ValueError(f"marginal_tol must be positive, got {marginal_tol}")
        self.method = method
        self.reg = float(reg)
        self.class_conditional = class_conditional
        self.normalize_cost = normalize_cost
        self.num_iter_max = int(num_iter_max)
        self.stop_thr = float(stop_thr)
        self.backend = backend
        self.sinkhorn_method = sinkhorn_method
        self.across_ranks = across_ranks
        self.marginal_tol = float(marginal_tol)
        self.auction_eps = float(auction_eps)
        self.last_auction: AuctionResult | None = None
        if method == "exact" and backend != "pot":
            resolve_backend(backend)  # a missing lap fails here, naming the extra
        if method == "sinkhorn" or backend == "pot":
            _import_pot()  # fail at construction, not at the first batch

    # ------------------------------------------------------------------ solving
    def _match(self, cost: np.ndarray) -> np.ndarray:
        """``sigma`` with ``sigma[j]`` the row (noise) matched to column (data) ``j``."""
        n = cost.shape[0]
        if n <= 1:
            return np.arange(n)
        if self.method == "exact" and self.backend != "pot":
            return solve_assignment(cost, self.backend)
        else:
            ot = _import_pot()
            a = np.full(n, 1.0 / n)
            if self.method == "exact":
                # emd stops once optimal; the cap only has to be large enough (batch 4096
                # needs about 1e6 iterations, more than POT's default 1e5)
                limit = max(self.num_iter_max, 100_000, 10 * n * n)
                plan, log = ot.emd(a, a, cost, numItermax=limit, log=True)
                if log.get("result_code") != 1:
                    raise RuntimeError(
                        f"POT's emd stopped before the optimum at batch {n} "
                        f"({log.get('warning')}); raise num_iter_max or use backend='auto'"
                    )
            else:
                scaled = cost
                if self.normalize_cost:
                    top = cost.max()
                    scaled = cost / top if top > 0 else cost
                plan = sinkhorn_plan(
                    ot,
                    scaled,
                    self.reg,
                    method=self.sinkhorn_method,
                    num_iter_max=self.num_iter_max,
                    stop_thr=self.stop_thr,
                    tol=self.marginal_tol,
                )
            plan = np.asarray(plan, dtype=np.float64)
            if self.method == "sinkhorn":
                # Perturb and MAP: the heaviest matching of log-plan + Gumbel noise draws a
                # permutation that follows the plan (rounding the plan alone would return
                # the exact assignment at any reg). Global torch RNG: a trainer's
                # checkpoint restores it.
                uniform = torch.rand(plan.shape, dtype=torch.float64).numpy()
                gumbel = -np.log(-np.log(uniform.clip(1e-300, 1 - 1e-16)))
                weights = -(np.log(np.maximum(plan, 1e-300)) + gumbel)
            else:
                weights = -plan  # the exact plan is a permutation matrix already
        return solve_assignment(weights, "auto" if self.backend == "pot" else self.backend)

    def _auction(self, cost: Tensor) -> Tensor:
        result = auction_assignment(cost, rel_eps=self.auction_eps)
        if self.last_auction is None:
            self.last_auction = result
        else:  # class-conditional: one problem per label, gaps and bounds add up
            last = self.last_auction
            self.last_auction = AuctionResult(
                result.sigma,
                last.gap + result.gap,
                last.bound + result.bound,
                last.rounds + result.rounds,
                last.phases + result.phases,
            )
        return result.sigma

    def permutation(self, x0: Tensor, x1: Tensor, cond: Tensor | None = None) -> Tensor:
        """The int64 permutation ``perm`` (on ``x0``'s device) such that ``x0[perm]`` is
        matched to ``x1`` row by row, for the local batch."""
        self._check(x0, x1, cond)
        n = x0.shape[0]
        if self.method == "auction":
            return self._permutation_auction(x0, x1, cond)
        sigma = np.arange(n)
        if n > 1:
            # exact on lapjv / scipy: the cost in the inputs' precision; POT and Sinkhorn: float64
            native = self.method == "exact" and self.backend != "pot"
            cost = squared_distances(x0, x1, None if native else torch.float64).cpu().numpy()
            if self.class_conditional:
                labels = cond.detach().cpu().numpy()
                for label in np.unique(labels):
                    idx = np.flatnonzero(labels == label)
                    sigma[idx] = idx[self._match(cost[np.ix_(idx, idx)])]
            else:
                sigma = self._match(cost)
        return torch.as_tensor(sigma, dtype=torch.long).to(x0.device)

    def _permutation_auction(self, x0: Tensor, x1: Tensor, cond: Tensor | None) -> Tensor:
        n = x0.shape[0]
        self.last_auction = None
        cost = squared_distances(x0, x1, None)  # on the inputs' device, in their precision
        if not self.class_conditional:
            return self._auction(cost).to(x0.device)
        sigma = torch.arange(n, device=cost.device)
        labels = cond.detach().to(cost.device)
        for label in torch.unique(labels):
            idx = torch.nonzero(labels == label).squeeze(1)
            sigma[idx] = idx[self._auction(cost[idx][:, idx])]
        return sigma.to(x0.device)

    def _check(self, x0: Tensor, x1: Tensor, cond: Tensor | None) -> None:
        if x0.shape != x1.shape:
            raise ValueError(f"x0 has shape {tuple(x0.shape)} but x1 has {tuple(x1.shape)}")
        if x0.dim() < 1:
            raise ValueError("x0 and x1 must have a batch dimension")
        if self.class_conditional:
            if cond is None:
                raise ValueError("class_conditional=True needs the labels as cond")
            if cond.shape != (x0.shape[0],) or cond.dtype.is_floating_point or cond.is_complex():
                raise ValueError(
                    f"class_conditional=True needs integer labels of shape ({x0.shape[0]},), "
                    f"got {cond.dtype} of shape {tuple(cond.shape)}"
                )

    # ------------------------------------------------------------------ calling
    def __call__(
        self, x0: Tensor, x1: Tensor, cond: Tensor | None = None
    ) -> tuple[Tensor, Tensor, Tensor | None]:
        if self.across_ranks and _world_size() > 1:
            return self._across_ranks(x0, x1, cond)
        perm = self.permutation(x0, x1, cond)
        return x0[perm], x1, cond

    def _across_ranks(
        self, x0: Tensor, x1: Tensor, cond: Tensor | None
    ) -> tuple[Tensor, Tensor, Tensor | None]:
        import torch.distributed as dist

        self._check(x0, x1, cond)
        world, rank = dist.get_world_size(), dist.get_rank()
        n = x0.shape[0]
        sizes = [torch.zeros(1, dtype=torch.long, device=x0.device) for _ in range(world)]
        dist.all_gather(sizes, torch.tensor([n], dtype=torch.long, device=x0.device))
        if any(int(s.item()) != n for s in sizes):
            raise ValueError(
                "MinibatchOT(across_ranks=True) needs the same batch size on every rank, got "
                f"{[int(s.item()) for s in sizes]}"
            )
        if n == 0:
            return x0, x1, cond

        def gather(t: Tensor) -> Tensor:
            parts = [torch.empty_like(t) for _ in range(world)]
            dist.all_gather(parts, t.detach().contiguous())
            return torch.cat(parts)

        all_x0 = gather(x0)
        all_x1 = gather(x1)
        all_cond = gather(cond) if self.class_conditional else None
        if rank == 0:
            perm = self.permutation(all_x0, all_x1, all_cond)
        else:
            perm = torch.empty(world * n, dtype=torch.long, device=x0.device)
        dist.broadcast(perm, src=0)
        return all_x0[perm[rank * n : (rank + 1) * n]], x1, cond

    def __repr__(self) -> str:
        parts = [f"method={self.method!r}"]
        if self.method == "sinkhorn":
            parts.append(f"reg={self.reg}")
        if self.method == "auction":
            parts.append(f"auction_eps={self.auction_eps:g}")
        if self.backend != "auto":
            parts.append(f"backend={self.backend!r}")
        if self.class_conditional:
            parts.append("class_conditional=True")
        if self.across_ranks:
            parts.append("across_ranks=True")
        return f"MinibatchOT({', '.join(parts)})"


def _world_size() -> int:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size()
    return 1
