r"""Denoising Langevin-Gibbs chains (Kim & Ye 2022) over ``(y, s)``, finished by a solver.

State of chain ``c``: the rescaled data ``y = x_t / alpha(t)`` and a noise level ``s`` from the
grid of :func:`~flowkit.mcmc.estimators.level_grid` (:mod:`flowkit.mcmc.levels`). One chain
step, at the chain's level ``s`` (time ``t = t(s)``, ``a = alpha(t)``):

1. score in ``y``: ``g = a * score(a y, t)`` -- one network call for the whole batch;
2. Langevin on ``y``: ``y <- y + (eta(s) / 2) g + sqrt(eta(s)) z``, with ``eta(s) =
   step_size`` (``step_rule="constant"``, the authors' code: ``eta = 0.8`` on CIFAR-10) or
   ``eta(s) = step_size * s^2`` (``step_rule="level"``, Song & Ermon's annealed rule: the same
   step relative to the level's width);
3. Gibbs on ``s``: ``s <- estimate(y)``: a classifier's MAP level or a posterior draw, or the
   training-free score-norm estimate (which measures ``y`` before the move, from ``g``; the
   pair it records is that ``y`` with its measured level).

Per round, every chain takes ``skip`` steps and keeps the least-noisy state it visited
(starting from its state at the round's start). That state ``y*`` at level ``s*`` is
integrated from its own time ``t(s*)`` (``x = alpha y*``) to the data end by any flowkit
solver with per-sample start times (EDM stochastic Heun on the EDM grid by default, as the
paper), then, where the solver stops at ``sigma(t_end) > 0``, one Tweedie step (the data
prediction). Chains persist across rounds and calls: consecutive outputs of one chain are
correlated (they are MCMC samples, not independent draws).

Randomness is per chain: the Langevin noise of chain ``c`` at its ``n``-th step reads
``(seed, c)``'s :data:`~flowkit.solvers.noise.MCMC_STREAM` at position ``n``, a posterior
Gibbs draw its ``MCMC_GIBBS_STREAM``, the integrator's noise output ``round * num_chains +
c``'s increment stream, and the initial state ``(seed, c)``'s noise. So results do not depend
on ``chain_batch_size`` (how many chains share a network call), given a per-sample network.

Accounting (``DMCMCResult``): ``nfe`` is the network calls one output costs, counted at the
network: ``skip`` chain calls plus the integrator's (plus Tweedie); ``estimator_calls``
the classifier's, apart; ``burn_in_nfe`` the calls made once to start the chains.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from dataclasses import field as dataclass_field

import torch
from torch import Tensor

from flowkit.mcmc.estimators import (
    ClassifierEstimator,
    ScoreNormEstimator,
    level_grid,
    nearest_level,
)
from flowkit.mcmc.levels import level_of_time, time_of_level
from flowkit.paths import AffinePath, GBMProcess
from flowkit.paths.affine import broadcast_like
from flowkit.solvers.field import VelocityField
from flowkit.solvers.noise import (
    MCMC_STREAM,
    even_numel,
    numel,
    sample_keys,
    seeded_noise,
    standard_normal,
)
from flowkit.solvers.result import SampleResult

STEP_RULES = ("constant", "level")


@dataclass
class DMCMCResult(SampleResult):
    """:class:`~flowkit.solvers.result.SampleResult` of denoising MCMC.

    Attributes:
        nfe: network calls per output: ``chain_nfe + integrator_nfe``.
        chain_nfe: Langevin score calls per output (``skip``).
        integrator_nfe: the integrator's calls, Tweedie step included.
        estimator_calls: classifier calls per output (0 for the score-norm estimator).
        burn_in_nfe: network calls spent once, starting the chains (0 after the first call).
        levels: ``(B,)`` the noise level ``s*`` each output was integrated from.
        chains: ``(B,)`` the chain each output came from.
    """

    chain_nfe: int = 0
    integrator_nfe: int = 0
    estimator_calls: int = 0
    burn_in_nfe: int = 0
    levels: Tensor | None = None
    chains: Tensor | None = None
    extra: dict = dataclass_field(default_factory=dict)


def _own_path(field: object) -> object:
    """The path a field records: its config's ``path`` (diffusers models) or attribute."""
    config = getattr(field, "config", None)
    if isinstance(config, dict) and "path" in config:
        return config["path"]
    return vars(field).get("path") if hasattr(field, "__dict__") else None


class LangevinGibbs:
    """Chains in ``(y, s)`` for one field (module docstring).

    Args:
        field: ``field(x, t, **cond)``; ``path`` / ``prediction`` say how to read it.
        sample_shape: the per-sample shape ``D``.
        levels: ``(K,)`` the level grid (decreasing), default ``level_grid(1000, 0.01, s_max)``
            with ``s_max`` 50 capped at the path's largest level.
        estimator: a :class:`ClassifierEstimator` or :class:`ScoreNormEstimator` (default).
        step_size, step_rule: ``eta`` (see the module docstring).
        num_chains: chains run in parallel; ``chain_batch_size`` of them share a network call.
        seed: the base seed of every random number.
    """

    def __init__(
        self,
        field: Callable[..., Tensor],
        sample_shape: tuple[int, ...],
        *,
        path: AffinePath | None = None,
        prediction: str | None = None,
        levels: Tensor | None = None,
        estimator: ClassifierEstimator | ScoreNormEstimator | None = None,
        step_size: float = 0.5,
        step_rule: str = "constant",
        num_chains: int = 64,
        chain_batch_size: int | None = None,
        seed: int = 0,
        cond: dict | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        given = path if path is not None else _own_path(field)
        if isinstance(given, GBMProcess) or given == "gbm" or (
            path is not None and not isinstance(path, AffinePath)
        ):
            raise ValueError(
                f"denoising MCMC needs a model on an affine path, got path {given!r}: a "
                "multiplicative (GBM) model has no noise scale sigma/alpha to run chains on"
            )
        if step_rule not in STEP_RULES:
            raise ValueError(f"step_rule must be one of {STEP_RULES}, got {step_rule!r}")
        if not step_size > 0:
            raise ValueError(f"step_size must be > 0, got {step_size}")
        self.counted = VelocityField(field, path, prediction, cond)
        self.path = self.counted.path
        self.t_lo = self.counted.start_time
        top = float(level_of_time(self.path, torch.tensor([self.t_lo]))[0])
        self.levels = (level_grid(1000, 0.01, min(50.0, top)) if levels is None else
                       torch.as_tensor(levels, dtype=torch.float64))  # fmt: skip
        if float(self.levels[0]) > top * (1 + 1e-9):
            raise ValueError(
                f"the level grid reaches s_max={float(self.levels[0]):.6g}, above the largest "
                f"noise level {top:.6g} the {self.path.name} path reaches for a "
                f"{self.counted.prediction!r} field; lower s_max"
            )
        steps = self.levels[1:] - self.levels[:-1]
        if self.levels.dim() != 1 or self.levels.numel() < 2 or not bool((steps < 0).all()):
            raise ValueError(
                f"levels must be a strictly decreasing (K,) grid with K >= 2 (level_grid makes "
                f"one), got shape {tuple(self.levels.shape)}"
            )
        self.times = time_of_level(self.path, self.levels, self.t_lo, self.path.t_max)
        self.estimator = estimator or ScoreNormEstimator(self.levels)
        if isinstance(self.estimator, ClassifierEstimator):
            self.estimator.classifier.check_compatible(tuple(sample_shape), self.levels)
        self.sample_shape = tuple(int(s) for s in sample_shape)
        self.step_size, self.step_rule = float(step_size), step_rule
        self.num_chains = int(num_chains)
        self.chain_batch_size = int(chain_batch_size or num_chains)
        self.seed, self.device, self.dtype = seed, device, dtype
        self.y: Tensor | None = None
        self.k: Tensor | None = None
        self.steps = 0  # Langevin steps taken by every chain
        self.rounds = 0

    # -- one step -------------------------------------------------------------------------

    def eta(self, s: Tensor) -> Tensor:
        """``(B,)`` Langevin step sizes at levels ``s``."""
        if self.step_rule == "constant":
            return torch.full_like(s, self.step_size)
        return self.step_size * s**2

    def score_y(self, y: Tensor, k: Tensor) -> Tensor:
        """``grad_y log p_s(y) = alpha(t) score(alpha(t) y, t)`` at levels ``levels[k]``."""
        t = self.times.to(k.device)[k]
        alpha = self.path.coefficients(t)[0]
        a = broadcast_like(alpha.to(y.dtype), y)
        return a * self.counted.evaluate(a * y, t.to(y.dtype)).as_("score")

    def _noise(self, chains: list[int], step: int) -> Tensor:
        keys = sample_keys(self.seed, chains, MCMC_STREAM)
        stride = even_numel(self.sample_shape)
        rows = standard_normal(keys, step * stride, stride)[:, : numel(self.sample_shape)]
        z = torch.from_numpy(rows.copy()).reshape(len(chains), *self.sample_shape)
        return z.to(self.device, self.dtype)

    def step(
        self, y: Tensor, k: Tensor, chains: list[int], step: int, gibbs: bool = True
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """One Langevin(-Gibbs) step of chains ``chains``; returns ``(y, k, y_seen, k_seen)``:
        the new state and the (state, measured level) pair to compare for the lowest level."""
        s = self.levels.to(y.device)[k]
        g = self.score_y(y, k)
        eta = broadcast_like(self.eta(s).to(y.dtype), y)
        y_new = y + eta / 2 * g + eta.sqrt() * self._noise(chains, step)
        if not gibbs:
            return y_new, k, y_new, k
        if isinstance(self.estimator, ScoreNormEstimator):
            k_seen = self.estimator(s, g)
            return y_new, k_seen, y, k_seen
        k_new = self.estimator(y_new, chains, self.seed, step)
        return y_new, k_new, y_new, k_new

    # -- chains ---------------------------------------------------------------------------

    def _slices(self) -> list[list[int]]:
        ids = list(range(self.num_chains))
        size = self.chain_batch_size
        return [ids[i : i + size] for i in range(0, len(ids), size)]

    def initialize(self, burn_in: int = 0, s_init: float | None = None) -> int:
        """Start every chain at ``y = s_init z`` (``z`` from ``(seed, c)``), level ``s_init``
        (default the grid's largest), then ``burn_in`` Langevin-Gibbs steps. Returns the
        network calls made per chain batch."""
        start = float(self.levels[0]) if s_init is None else float(s_init)
        k0 = int((self.levels - start).abs().argmin())
        z = seeded_noise(self.sample_shape, range(self.num_chains), self.seed, self.dtype)
        self.y = (start * z).to(self.device)
        self.k = torch.full((self.num_chains,), k0, dtype=torch.long, device=self.device)
        self.steps = 0
        return self.run(burn_in)

    def set_state(self, y: Tensor, s: Tensor | float) -> None:
        """Put every chain at ``y (num_chains, *D)`` and the grid level nearest to ``s``."""
        s = torch.as_tensor(s, dtype=torch.float64).expand(self.num_chains)
        self.y = y.to(self.device, self.dtype).clone()
        self.k = nearest_level(self.levels, s).to(self.y.device)
        self.steps = 0

    def run(self, n_steps: int, gibbs: bool = True) -> int:
        """``n_steps`` Langevin(-Gibbs) steps of every chain (no output). Returns network calls
        per chain batch. ``gibbs=False`` holds each chain at its level (a plain Langevin
        chain targeting ``p_s(y)``)."""
        assert self.y is not None and self.k is not None
        before = self.counted.calls
        for chains in self._slices():
            y, k = self.y[chains], self.k[chains]
            for j in range(n_steps):
                y, k, _, _ = self.step(y, k, chains, self.steps + j, gibbs)
            self.y[chains], self.k[chains] = y, k
        self.steps += n_steps
        return (self.counted.calls - before) // max(len(self._slices()), 1)

    def round(self, skip: int) -> tuple[Tensor, Tensor]:
        """``skip`` Langevin-Gibbs steps of every chain; returns per chain the least-noisy
        ``(y*, level index k*)`` seen in the round (ties: the earliest)."""
        assert self.y is not None and self.k is not None
        y_best, k_best = self.y.clone(), self.k.clone()
        with torch.no_grad():
            for chains in self._slices():
                y, k = self.y[chains], self.k[chains]
                yb, kb = y.clone(), k.clone()
                for j in range(skip):
                    y, k, y_seen, k_seen = self.step(y, k, chains, self.steps + j)
                    better = k_seen > kb  # a larger index is a lower level
                    yb = torch.where(broadcast_like(better, yb), y_seen, yb)
                    kb = torch.where(better, k_seen, kb)
                self.y[chains], self.k[chains] = y, k
                y_best[chains], k_best[chains] = yb, kb
        self.steps += skip
        return y_best, k_best


def check_budget(nfe: int, skip: int) -> int:
    """The integrator's share ``nfe - skip`` of a per-output budget; at least 1."""
    if skip < 1:
        raise ValueError(f"skip (chain steps per output) must be >= 1, got skip={skip}")
    if nfe is None or nfe < skip + 1:
        raise ValueError(
            f"nfe={nfe} is below one round of denoising MCMC: skip={skip} chain steps plus at "
            f"least one integrator evaluation need nfe >= {skip + 1}"
        )
    return nfe - skip


