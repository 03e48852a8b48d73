r"""Denoising MCMC sampling: rounds of Langevin-Gibbs chains, each round's least-noisy states
integrated to the data end (:mod:`flowkit.mcmc.chains` has the math).

Output ``i`` is chain ``i mod num_chains``'s output of round ``i // num_chains``: the first
``num_chains`` outputs are one per chain, the next ones the chains' next states. Outputs of
one chain are correlated MCMC samples; chains persist across calls to
:meth:`DenoisingMCMC.sample`, which continues where the previous call stopped.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

from flowkit.mcmc.chains import DMCMCResult, LangevinGibbs, check_budget
from flowkit.mcmc.levels import time_of_level
from flowkit.paths.affine import broadcast_like
from flowkit.solvers.names import SDE_METHODS
from flowkit.solvers.noise import seeded_noise
from flowkit.solvers.ode import sample_ode
from flowkit.solvers.per_sample import PER_SAMPLE_ODE_METHODS, PER_SAMPLE_SDE_METHODS
from flowkit.solvers.sde import sample_sde

INTEGRATORS = PER_SAMPLE_SDE_METHODS + PER_SAMPLE_ODE_METHODS
_MIN_NFE = {"midpoint": 2, "heun": 2, "rk4": 4}


class DenoisingMCMC:
    """Denoising Langevin-Gibbs sampling (Kim & Ye 2022) of one field.

    Args:
        chains: the :class:`~flowkit.mcmc.chains.LangevinGibbs` chains (field, levels,
            estimator, step size, number of chains, seed).
        skip: chain steps per output (the authors' ``n_skip``).
        method: the integrator: ``edm`` (default, EDM stochastic Heun as the paper),
            ``euler_maruyama``, ``flow_sde``, ``euler``, ``midpoint``, ``heun``, ``rk4``.
        grid: its time grid (``edm``: Karras et al.'s ``rho = 7`` levels from each chain's own
            level).
        solver_options: extra keyword arguments of the integrator (e.g. EDM's ``S_churn``).
        burn_in: Langevin-Gibbs steps run once before the first output.
        s_init, warm_start_nfe: how the chains start (once): each chain's noise ``(seed, c)``
            is integrated by Heun on the EDM grid with ``warm_start_nfe`` evaluations from the
            path's start to the level ``s_init`` (the authors instead sample fully and add
            noise of level 0.5); ``warm_start_nfe=0`` starts at ``y = s_max z`` instead.
        tweedie: end with one data-prediction step where the integrator stops at
            ``sigma(t_end) > 0`` (VP, VE); it counts as one evaluation.
    """

    def __init__(
        self,
        chains: LangevinGibbs,
        *,
        skip: int = 5,
        method: str = "edm",
        grid: str = "edm",
        solver_options: dict | None = None,
        burn_in: int = 20,
        tweedie: bool = True,
        s_init: float = 1.0,
        warm_start_nfe: int = 10,
    ) -> None:
        self.s_init, self.warm_start_nfe = float(s_init), int(warm_start_nfe)
        if method not in INTEGRATORS:
            raise ValueError(f"unknown integrator {method!r}; expected one of {list(INTEGRATORS)}")
        check_budget(skip + 1, skip)
        self.chains, self.skip, self.method, self.grid = chains, int(skip), method, grid
        self.solver_options = dict(solver_options or {})
        self.burn_in, self.tweedie = int(burn_in), tweedie
        path = chains.path
        self.t_end = path.t_max if method in SDE_METHODS else min(1.0, path.t_max)
        sigma_end = float(path.coefficients(torch.tensor([self.t_end], dtype=torch.float64))[1])
        self.needs_tweedie = tweedie and sigma_end > 0

    def integrator_budget(self, nfe: int) -> int:
        """The integrator's evaluations in a per-output budget ``nfe`` (``ValueError`` naming
        ``nfe`` when it does not cover ``skip`` chain steps and one integrator step)."""
        need = self.skip + _MIN_NFE.get(self.method, 1) + int(self.needs_tweedie)
        if nfe is None or nfe < need:
            raise ValueError(
                f"nfe={nfe} is below one round of denoising MCMC: skip={self.skip} chain steps"
                f" + {_MIN_NFE.get(self.method, 1)} evaluation(s) of one {self.method!r} step"
                f"{' + 1 Tweedie step' if self.needs_tweedie else ''} need nfe >= {need}"
            )
        return check_budget(nfe, self.skip) - int(self.needs_tweedie)

    def _integrate(self, y: Tensor, k: Tensor, budget: int, indices: list[int]) -> Tensor:
        chains = self.chains
        path, field = chains.path, chains.counted
        t0 = chains.times.to(k.device)[k].cpu()
        t0 = t0.clamp(max=self.t_end - 1e-4)  # a chain at the path's last level still steps
        alpha = path.coefficients(t0)[0]
        x = broadcast_like(alpha.to(y.device, y.dtype), y) * y
        common = dict(path=path, prediction=field.prediction, t0=t0, cond=field.cond)
        if self.method in SDE_METHODS:
            out = sample_sde(field.field, x, budget, self.method, self.grid, seed=chains.seed,
                             indices=indices, t1=self.t_end, **common,
                             **self.solver_options)  # fmt: skip
        else:
            out = sample_ode(field.field, x, budget, self.method, self.grid, t1=self.t_end,
                             **common, **self.solver_options)  # fmt: skip
        self._integrator_calls += out.nfe
        x = out.x
        if self.needs_tweedie:
            t = x.new_full((x.shape[0],), self.t_end)
            x = field.evaluate(x, t).as_("data")
            self._integrator_calls += 1
        return x

    def start(self) -> int:
        """Start the chains (warm start, then ``burn_in`` steps); returns the network calls
        per chain batch."""
        chains = self.chains
        if self.warm_start_nfe <= 0:
            return chains.initialize(self.burn_in)
        z = seeded_noise(chains.sample_shape, range(chains.num_chains), chains.seed, chains.dtype)
        z = z.to(chains.device) * chains.path.prior_std
        s = torch.tensor([self.s_init], dtype=torch.float64)
        t1 = float(time_of_level(chains.path, s, chains.t_lo, chains.path.t_max)[0])
        field = chains.counted
        ys, calls = [], 0
        for ids in chains._slices():
            out = sample_ode(field.field, z[ids], self.warm_start_nfe, "heun", "edm",
                             path=chains.path, prediction=field.prediction, t0=chains.t_lo,
                             t1=t1, cond=field.cond, final_euler=True)  # fmt: skip
            calls = out.nfe
            alpha = float(chains.path.coefficients(torch.tensor([t1], dtype=torch.float64))[0])
            ys.append(out.x / alpha)
        chains.set_state(torch.cat(ys), self.s_init)
        return calls + chains.run(self.burn_in)

    def sample(self, num: int, nfe: int) -> DMCMCResult:
        """``num`` outputs at ``nfe`` network calls each (``skip`` chain steps + the
        integrator); continues the chains of earlier calls.

        Returns a :class:`~flowkit.mcmc.chains.DMCMCResult`: ``x (num, *D)``, the counted
        ``nfe`` per output, its split, classifier calls and the burn-in's cost.
        """
        budget = self.integrator_budget(nfe)
        chains = self.chains
        burn = 0
        if chains.y is None:
            burn = self.start()
        n_slices = len(chains._slices())
        outputs, levels, owners = [], [], []
        chain_calls = integrator_calls = estimator_calls = 0
        rounds = math.ceil(num / chains.num_chains)
        for _ in range(rounds):
            before, est_before = chains.counted.calls, chains.estimator.calls
            y_best, k_best = chains.round(self.skip)
            chain_calls += chains.counted.calls - before
            estimator_calls += chains.estimator.calls - est_before
            self._integrator_calls = 0
            xs = []
            for ids in chains._slices():
                index = [chains.rounds * chains.num_chains + c for c in ids]
                xs.append(self._integrate(y_best[ids], k_best[ids], budget, index))
            integrator_calls += self._integrator_calls
            outputs.append(torch.cat(xs))
            levels.append(chains.levels[k_best.cpu()])
            owners.append(torch.arange(chains.num_chains))
            chains.rounds += 1
        per = rounds * n_slices
        x = torch.cat(outputs)[:num]
        return DMCMCResult(
            x=x,
            nfe=(chain_calls + integrator_calls) // per,
            chain_nfe=chain_calls // per,
            integrator_nfe=integrator_calls // per,
            estimator_calls=estimator_calls // per,
            burn_in_nfe=burn,
            levels=torch.cat(levels)[:num],
            chains=torch.cat(owners)[:num],
        )


def sample_dmcmc(
    field: Callable[..., Tensor],
    sample_shape: tuple[int, ...],
    num: int,
    nfe: int,
    *,
    skip: int = 5,
    method: str = "edm",
    grid: str = "edm",
    solver_options: dict | None = None,
    burn_in: int = 20,
    tweedie: bool = True,
    s_init: float = 1.0,
    warm_start_nfe: int = 10,
    **chain_options,
) -> DMCMCResult:
    """One-shot denoising MCMC: build the chains (``chain_options`` go to
    :class:`~flowkit.mcmc.chains.LangevinGibbs`) and draw ``num`` outputs at ``nfe`` each."""
    chains = LangevinGibbs(field, sample_shape, **chain_options)
    sampler = DenoisingMCMC(
        chains, skip=skip, method=method, grid=grid, solver_options=solver_options,
        burn_in=burn_in, tweedie=tweedie, s_init=s_init, warm_start_nfe=warm_start_nfe,
    )  # fmt: skip
    return sampler.sample(num, nfe)


class DMCMCStream:
    """Outputs of denoising MCMC by global index, for callers that ask in batches of
    indices (``flowkit fid``, :meth:`flowkit.loading.LoadedModel.sample`).

    Output ``i`` is chain ``i mod num_chains``'s output of round ``i // num_chains`` of the
    sampler that ``make()`` builds; it depends on ``(seed, i)`` and the settings alone (the
    chain noise is seeded per chain, the integrator's per output index), never on how the
    indices are batched. The chains persist: asking for indices in increasing order runs
    every round once. A round is computed whole and kept until a later call asks for no
    index of it; asking again for an index of a round already dropped starts the chains
    afresh from ``make()`` and replays them (same values, paid again). A process that asks
    for every ``W``-th index (a rank of ``torchrun``) still runs every chain of every round
    it touches.
    """

    def __init__(self, make: Callable[[], DenoisingMCMC], nfe: int) -> None:
        self.make, self.nfe = make, int(nfe)
        self.sampler: DenoisingMCMC | None = None
        self.done = 0  # rounds run by the current sampler
        self.kept: dict[int, DMCMCResult] = {}

    def _restart(self) -> None:
        self.sampler, self.done, self.kept = self.make(), 0, {}
        self.sampler.integrator_budget(self.nfe)  # a bad nfe fails before any chain step

    def take(self, indices: list[int]) -> DMCMCResult:
        """Outputs ``indices`` (in that order), with the per-output cost of their rounds;
        ``burn_in_nfe`` is what starting the chains cost in this call (0 when they ran)."""
        if self.sampler is None:
            self._restart()
        size = self.sampler.chains.num_chains
        wanted = sorted({i // size for i in indices})
        if any(r < self.done and r not in self.kept for r in wanted):
            self._restart()
        burn = 0
        while self.done <= wanted[-1]:
            result = self.sampler.sample(size, self.nfe)
            burn += result.burn_in_nfe
            if self.done in wanted:
                self.kept[self.done] = result
            self.done += 1
        self.kept = {r: v for r, v in self.kept.items() if r >= wanted[0]}
        rows = [self.kept[i // size] for i in indices]
        pick = torch.tensor([i % size for i in indices])
        first = self.kept[wanted[0]]
        return DMCMCResult(
            x=torch.stack([r.x[int(c)] for r, c in zip(rows, pick, strict=True)]),
            nfe=first.nfe,
            chain_nfe=first.chain_nfe,
            integrator_nfe=first.integrator_nfe,
            estimator_calls=first.estimator_calls,
            burn_in_nfe=burn,
            levels=torch.stack([r.levels[int(c)] for r, c in zip(rows, pick, strict=True)]),
            chains=pick,
        )
