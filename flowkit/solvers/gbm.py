"""Samplers of the multiplicative (GBM) model: Dale-Langevin and its additive form.

The reverse of ``dX = mu X ds + sigma X dW`` (diffusion time ``s = 1 - t``, see
:mod:`flowkit.paths.gbm`) needs the multiplicative score ``h(x, s) = x ∘ ∇ log p_s(x)``,
which a network gives as ``h = score(x, t)``. On the levels ``s_k = k / N``,
``k = N, ..., 1`` (flowkit times ``t_k = 1 - s_k``), step ``delta = 1 / N``, every level runs
``L`` iterations of one of (elementwise; ``z ~ N(0, I)`` fresh each iteration)::

    multiplicative (Dale-Langevin):
        x <- x ∘ exp( delta sigma^2 h - delta (mu - 1.5 sigma^2) + a_k sqrt(delta) sigma z )
    additive:
        x <- x ∘ [ (1 + 2 delta sigma^2) - delta mu + delta sigma^2 h + a_k sqrt(delta) sigma z ]

with ``h`` evaluated at ``(x, t_k)`` before each iteration. With ``L = 1`` and ``a_k = 1`` the
multiplicative update is exactly Euler-Maruyama of the reverse SDE of ``y = log x``,
``dy = [(mu - sigma^2/2) - sigma^2 (h + 1)] ds + sigma dW`` (its ``y``-score is ``h + 1``),
from ``s_k`` to ``s_{k-1}``, and the additive one is Euler-Maruyama of the reverse SDE of
``x`` itself, ``dx = [mu x - 2 sigma^2 x - sigma^2 x h] ds + sigma x dW``. With
``mu = sigma^2 / 2`` and ``a = sqrt(2)``, a multiplicative iteration is an unadjusted Langevin
step of size ``delta sigma^2`` on ``log p_{s_k}`` in ``log x``; ``L > 1`` iterations per level
are the annealed-Langevin correctors of the authors' sampler.

Noise annealing: ``a_k = noise_scale * s_k ** anneal`` (``anneal = 0``: constant; ``1``:
linearly to 0 with ``s``), and ``a_k = 0`` on the last ``clean_steps`` levels (noise-free
final steps). The multiplicative update keeps ``x > 0`` by construction; the additive
bracket is clamped below at ``min_factor`` (> 0) so that a poor score cannot flip a sign
(with an exact score and ``N >= 100`` the bracket stays near 1 and the clamp is inactive).

NFE: ``N * L`` network calls, counted at the network. Noise: sample ``k`` of the batch draws
its increments from the generator of ``(seed, indices[k])``
(:class:`~flowkit.solvers.increments.PerSampleNoise`), so a sample does not depend on the
batch it was drawn in.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from flowkit.paths.gbm import GBMProcess, LogNormal
from flowkit.solvers.increments import PerSampleNoise
from flowkit.solvers.names import GBM_SAMPLERS
from flowkit.solvers.noise import seeded_noise
from flowkit.solvers.result import SampleResult

__all__ = [
    "GBM_SAMPLERS",
    "check_gbm_options",
    "gbm_noise_factors",
    "gbm_update",
    "sample_gbm",
    "sample_gbm_seeded",
]



def _check_int(name: str, value: object, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"{name} must be an int >= {low}, got {value!r}")
    return value


def _check_float(name: str, value: object, low: float, strict: bool = False) -> float:
    ok = not isinstance(value, bool) and isinstance(value, int | float) and math.isfinite(value)
    if not ok or value < low or (strict and value == low):
        bound = f"> {low}" if strict else f">= {low}"
        raise ValueError(f"{name} must be a finite number {bound}, got {value!r}")
    return float(value)


def check_gbm_options(
    steps: int,
    sampler: str,
    inner_steps: int,
    noise_scale: float,
    anneal: float,
    clean_steps: int,
    min_factor: float,
) -> None:
    """Raise a ``ValueError`` that names the value of any unusable sampler option."""
    if sampler not in GBM_SAMPLERS:
        raise ValueError(f"unknown GBM sampler {sampler!r}; expected one of {list(GBM_SAMPLERS)}")
    _check_int("steps", steps, 1)
    _check_int("inner_steps", inner_steps, 1)
    _check_int("clean_steps", clean_steps, 0)
    if clean_steps > steps:
        raise ValueError(f"clean_steps={clean_steps} exceeds steps={steps}")
    _check_float("noise_scale", noise_scale, 0.0)
    _check_float("anneal", anneal, 0.0)
    _check_float("min_factor", min_factor, 0.0, strict=True)


def gbm_noise_factors(
    steps: int, noise_scale: float = 1.0, anneal: float = 0.0, clean_steps: int = 0
) -> list[float]:
    """``a_k = noise_scale * s_k ** anneal`` for ``s_k = k / steps``, ``k = steps, ..., 1``
    (sampling order), with the last ``clean_steps`` set to 0."""
    factors = [noise_scale * (k / steps) ** anneal for k in range(steps, 0, -1)]
    return [0.0 if i >= steps - clean_steps else a for i, a in enumerate(factors)]


def gbm_update(
    x: Tensor,
    h: Tensor,
    z: Tensor,
    delta: float,
    a: float,
    process: GBMProcess,
    sampler: str = "multiplicative",
    min_factor: float = 1e-3,
) -> Tensor:
    """One iteration of either update (module docstring) from ``x`` with score ``h`` and
    noise ``z``, all ``(B, *D)``."""
    sigma2, noise = process.sigma**2, a * math.sqrt(delta) * process.sigma
    if sampler == "multiplicative":
        drift = -delta * (process.mu - 1.5 * sigma2)
        return x * torch.exp(delta * sigma2 * h + drift + noise * z)
    factor = (1 + 2 * delta * sigma2 - delta * process.mu) + delta * sigma2 * h + noise * z
    return x * factor.clamp_min(min_factor)


@torch.no_grad()
def sample_gbm(
    score: Callable[..., Tensor],
    x: Tensor,
    steps: int = 1000,
    process: GBMProcess | None = None,
    sampler: str = "multiplicative",
    *,
    inner_steps: int = 1,
    noise_scale: float = 1.0,
    anneal: float = 0.0,
    clean_steps: int = 0,
    min_factor: float = 1e-3,
    seed: int = 0,
    indices: Sequence[int] | None = None,
    cond: dict | None = None,
    return_trajectory: bool = False,
) -> SampleResult:
    """Run the reverse GBM from positive ``x`` at ``s = 1`` (``t = 0``) to ``s = 0``.

    Args:
        score: ``score(x, t, **cond) -> (B, *D)``, the multiplicative score ``x ∘ ∇ log p``
            at flowkit times ``t`` ``(B,)``.
        x: ``(B, *D)`` positive start (e.g. the log-normal fitted to the data, pushed to
            ``s = 1`` by :meth:`flowkit.paths.GBMProcess.marginal`).
        steps: number of levels ``N`` (the authors use 1000).
        process: the forward process (default ``GBMProcess()``: ``sigma = 0.8``,
            ``mu = sigma^2 / 2``).
        sampler: ``"multiplicative"`` (Dale-Langevin) or ``"additive"``.
        inner_steps: iterations ``L`` per level.
        noise_scale, anneal, clean_steps: the noise factors ``a_k`` (module docstring).
        min_factor: the lower clamp of the additive bracket.
        seed, indices: sample ``k`` draws its noise from ``(seed, indices[k])``;
            ``indices`` defaults to ``range(B)``.
        cond: keyword arguments passed to every call of ``score``.
        return_trajectory: keep the state after every level.

    Returns:
        :class:`SampleResult` with the positive samples ``x`` (at ``s = 0``), ``nfe`` (the
        calls made: ``N * L``) and, on request, the ``(N + 1, B, *D)`` trajectory at the
        times ``t = 0, 1/N, ..., 1``.
    """
    process = process or GBMProcess()
    check_gbm_options(steps, sampler, inner_steps, noise_scale, anneal, clean_steps, min_factor)
    if not bool((x > 0).all()):
        raise ValueError("sample_gbm needs a positive start x")
    indices = list(range(x.shape[0])) if indices is None else [int(i) for i in indices]
    if len(indices) != x.shape[0]:
        raise ValueError(f"indices has {len(indices)} entries for a batch of {x.shape[0]}")
    noise = PerSampleNoise(x.shape[1:], indices, seed, x.device, x.dtype)
    factors = gbm_noise_factors(steps, noise_scale, anneal, clean_steps)
    delta, cond, calls = 1.0 / steps, cond or {}, 0
    trajectory = [x] if return_trajectory else None
    for i, a in enumerate(factors):
        t = x.new_full((x.shape[0],), i / steps)  # t_k = 1 - s_k, s_k = (N - i) / N
        for _ in range(inner_steps):
            h = score(x, t, **cond).to(x.dtype)
            calls += 1
            z = noise.next() if a > 0 else torch.zeros_like(x)
            x = gbm_update(x, h, z, delta, a, process, sampler, min_factor)
        if trajectory is not None:
            trajectory.append(x)
    times = torch.linspace(0.0, 1.0, steps + 1, dtype=torch.float64)
    stacked = torch.stack(trajectory) if trajectory is not None else None
    return SampleResult(x=x, nfe=calls, trajectory=stacked, times=times)


def sample_gbm_seeded(
    score: Callable[..., Tensor],
    start: LogNormal,
    shape: tuple[int, ...],
    indices: Sequence[int],
    seed: int = 0,
    device: torch.device | str | None = None,
    **options,
) -> SampleResult:
    """:func:`sample_gbm` from ``x = exp(start.mean + start.std * z)``, where row ``k`` of
    ``z`` is :func:`~flowkit.solvers.noise.seeded_noise` of ``(seed, indices[k])`` and the
    increments come from ``(seed, indices[k])`` too: sample ``i`` depends on ``(seed, i)``
    alone. ``shape`` is one sample's ``D``; ``options`` go to :func:`sample_gbm`."""
    indices = [int(i) for i in indices]
    x = start.sample(seeded_noise(tuple(shape), indices, seed).to(device))
    return sample_gbm(score, x, seed=seed, indices=indices, **options)
