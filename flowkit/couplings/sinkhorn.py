"""The entropic OT plan of a minibatch, checked against its marginals.

For a cost ``C`` (``n x n``) and uniform marginals ``a = b = 1/n``, Sinkhorn's plan is
``P = diag(u) K diag(v)`` with ``K = exp(-C / reg)``, the scalings ``u, v`` chosen so that
``P 1 = a`` and ``P^T 1 = b``. POT's standard solver (``method="sinkhorn"``) iterates on
``u, v`` themselves: once ``reg`` is small against the spread of ``C``, entries of ``K``
underflow to 0 (``exp(-1 / 1e-3) = 0`` in float64) and the scalings to 0 or infinity. It
then returns without an error a plan of almost no mass (``P.sum() = 1e-34``), or one whose
rows are off by several times their mass, and a coupling drawn from it is close to a random
permutation. The log-domain solver (``method="sinkhorn_log"``) iterates on ``log u, log v``
and does not underflow, at about twice the cost.

:func:`sinkhorn_plan` therefore checks the returned plan: its relative marginal error

    ``err(P) = n * max(max_i |(P 1)_i - 1/n|, max_j |(P^T 1)_j - 1/n|)``

(0 for an exact plan, 1 for a row or column with no mass; infinite for non-finite entries)
must be at most ``tol``. A plan that fails is solved again in the log domain, and one that
fails there too raises ``ValueError``. The check looks for numerical breakdown, not for slow
convergence: the default ``tol = 0.5`` lets a plan whose marginals are off by a few percent
(Sinkhorn stopped by ``num_iter_max``) through, which is harmless for perturb-and-MAP draws
(:mod:`flowkit.couplings.minibatch_ot`): ``log u_i + log v_j`` adds the same constant
``sum_i log u_i + sum_j log v_j`` to the weight of every permutation, so the draw depends on
the scalings only through the entries that underflow.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

LOG_METHOD = "sinkhorn_log"
MARGINAL_TOL = 0.5


def marginal_error(plan: np.ndarray) -> float:
    """``n * max |row or column sum - 1/n|`` of an ``n x n`` plan with uniform marginals;
    ``inf`` if an entry is not finite or negative."""
    n = plan.shape[0]
    if not np.all(np.isfinite(plan)) or np.any(plan < 0):
        return float("inf")
    rows = np.abs(plan.sum(axis=1) - 1.0 / n).max()
    cols = np.abs(plan.sum(axis=0) - 1.0 / n).max()
    return float(n * max(rows, cols))


def sinkhorn_plan(
    ot: Any,
    cost: np.ndarray,
    reg: float,
    method: str = "sinkhorn",
    num_iter_max: int = 1000,
    stop_thr: float = 1e-9,
    tol: float = MARGINAL_TOL,
) -> np.ndarray:
    """The entropic plan of ``cost`` (``n x n``, uniform marginals) with a checked marginal
    error (module docstring): POT's ``method`` first, then ``"sinkhorn_log"`` if the plan
    misses its marginals by more than ``tol``.

    Args:
        ot: the imported POT module.
        cost: the (normalised) cost matrix, float64.
        reg: the entropic regularisation.
        method: POT's Sinkhorn variant tried first.
        num_iter_max, stop_thr: POT's iteration limit and stopping threshold.
        tol: the largest relative marginal error accepted.

    Raises:
        ValueError: the log-domain plan misses its marginals too; names ``reg``, the error
            and the fixes.
    """
    n = cost.shape[0]
    a = np.full(n, 1.0 / n)
    solvers = list(dict.fromkeys((method, LOG_METHOD)))  # the log solver once, last
    errors = []
    for solver in solvers:
        with warnings.catch_warnings():
            # overflow and "did not converge" warnings: the marginal check below decides
            warnings.simplefilter("ignore")
            plan = ot.sinkhorn(
                a, a, cost, reg, method=solver, numItermax=num_iter_max, stopThr=stop_thr
            )
        plan = np.asarray(plan, dtype=np.float64)
        errors.append(marginal_error(plan))
        if errors[-1] <= tol:
            return plan
    found = ", ".join(f"{e:.3g} ({solver})" for e, solver in zip(errors, solvers, strict=True))
    raise ValueError(
        f"MinibatchOT(method='sinkhorn', reg={reg}): the Sinkhorn plan of a batch of {n} misses "
        f"its uniform marginals by a relative error of {found}, more than the {tol} allowed, "
        f"after {num_iter_max} iterations; the cost (divided by its maximum when "
        "normalize_cost) is too sharp for this reg. Use a larger reg, a larger num_iter_max, "
        "or method='exact' (the limit reg -> 0 of this coupling)"
    )
