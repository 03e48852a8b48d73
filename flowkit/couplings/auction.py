"""Torch-native assignment by Bertsekas' auction algorithm with epsilon scaling (GPU and CPU).

Rows of the ``n x n`` cost are bidders, columns are objects with prices ``p``. Every round,
each unassigned row ``i`` (all of them at once: the Jacobi auction, one batched ``topk``)
finds its best column ``j = argmax_k (-C_ik - p_k)`` and the second best value, and bids
``p_j + (best - second) + eps``; each column goes to its highest bidder at that price and its
previous owner becomes unassigned. A phase ends when every row holds a column; ``eps`` is then
divided by ``factor`` and a new phase starts from the current prices (epsilon scaling), down
to ``eps_final``. Pairs that are still eps-optimal at the new ``eps`` are kept (warm start);
only the others bid again.

Bound. At the end every row is within ``eps`` of its best column at the final prices
(eps-complementary slackness), so the matching's cost exceeds the optimum by at most
``n * eps_final``: the *mean* cost of a pair is within ``eps_final`` of the optimal mean.
Here ``eps_final = rel_eps * S`` with ``S`` the spread of the cost after subtracting each row's
minimum (a shift that changes no matching's ranking), so the guaranteed mean-pair gap is
``rel_eps * S``; the a-posteriori duality gap (primal cost minus the dual value of the final
prices, a certified upper bound on the true gap up to rounding) is returned too and is
usually far below the bound. ``eps_final`` is never below ``16 * finfo(dtype).eps * S`` so
that a bid always moves a price in the cost's precision (float32 on a GPU).

Everything is torch on the cost's device; no data leaves the GPU except a few scalars a
round (the number of unassigned rows).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class AuctionResult:
    """``sigma[j]``: the row matched to column ``j``; ``gap``: certified duality gap of the
    total cost (>= cost - optimum, up to rounding); ``bound``: the a-priori bound
    ``n * eps_final`` on the same; ``rounds`` and ``phases`` of the auction."""

    sigma: Tensor
    gap: float
    bound: float
    rounds: int
    phases: int


def auction_assignment(
    cost: Tensor,
    rel_eps: float = 1e-5,
    factor: float = 4.0,
    max_rounds: int = 1_000_000,
) -> AuctionResult:
    """Minimum-cost perfect matching of the square ``cost`` by the epsilon-scaling auction.

    Args:
        cost: ``(n, n)`` float tensor on any device; solved in its dtype (float32 or float64;
            others as float32).
        rel_eps: the final ``eps`` relative to the row-shifted cost spread ``S``: the returned
            matching's mean pair cost is within ``rel_eps * S`` of the optimum's.
        factor: ``eps`` divided by this between phases.
        max_rounds: total bidding rounds before giving up (RuntimeError).
    """
    if cost.ndim != 2 or cost.shape[0] != cost.shape[1]:
        raise ValueError(f"cost must be a square matrix, got shape {tuple(cost.shape)}")
    if not rel_eps > 0 or not factor > 1:
        raise ValueError(f"need rel_eps > 0 and factor > 1, got {rel_eps} and {factor}")
    n, device = cost.shape[0], cost.device
    if cost.dtype not in (torch.float32, torch.float64):
        cost = cost.float()
    if n <= 1:
        return AuctionResult(torch.arange(n, device=device), 0.0, 0.0, 0, 0)
    dtype = cost.dtype
    # benefit of row i for column j, shifted per row into [-S, 0]
    benefit = cost.amin(1, keepdim=True) - cost
    spread = float(-benefit.amin())
    if not spread > 0:  # every matching costs the same
        return AuctionResult(torch.arange(n, device=device), 0.0, 0.0, 0, 0)
    eps_final = max(rel_eps, 16 * torch.finfo(dtype).eps) * spread
    eps = max(spread / factor, eps_final)
    prices = torch.zeros(n, dtype=dtype, device=device)
    rows = torch.arange(n, device=device)
    owner = torch.full((n,), -1, dtype=torch.long, device=device)  # column -> row
    held = torch.full((n,), -1, dtype=torch.long, device=device)  # row -> column
    neg_inf = torch.full((n,), float("-inf"), dtype=dtype, device=device)
    none = torch.full((n,), -1, dtype=torch.long, device=device)
    rounds = phases = 0
    while True:
        phases += 1
        if phases > 1:
            # keep the pairs that are still eps-optimal at the new eps; the others bid again
            slack = (benefit - prices).amax(1) - (benefit[rows, held] - prices[held])
            drop = slack > eps
            owner[held[drop]] = -1
            held[drop] = -1
        while True:
            bidders = torch.nonzero(held < 0).squeeze(1)
            if bidders.numel() == 0:
                break
            rounds += 1
            if rounds > max_rounds:
                raise RuntimeError(
                    f"auction did not finish in {max_rounds} rounds (batch {n}, eps {eps:.3g}); "
                    "raise rel_eps or max_rounds"
                )
            top = (benefit[bidders] - prices).topk(2, dim=1)
            target = top.indices[:, 0]
            bid = prices[target] + (top.values[:, 0] - top.values[:, 1]) + eps
            best = neg_inf.scatter_reduce(0, target, bid, "amax")
            wins = bid >= best[target]
            winner = none.scatter_reduce(0, target[wins], bidders[wins], "amax")
            won = torch.nonzero(winner >= 0).squeeze(1)
            previous = owner[won]
            held[previous[previous >= 0]] = -1
            new = winner[won]
            owner[won] = new
            held[new] = won
            prices[won] = best[won]
        if eps <= eps_final:
            break
        eps = max(eps / factor, eps_final)
    # certified gap: dual value of the prices minus the primal benefit (float64 sums)
    primal = benefit[rows, held].double().sum()
    dual = prices.double().sum() + (benefit - prices).amax(1).double().sum()
    gap = max(float(dual - primal), 0.0)
    return AuctionResult(owner, gap, n * eps_final, rounds, phases)
