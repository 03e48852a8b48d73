"""diffusers' noise-level maps for flow matching, as pure functions of the noise levels.

Every function takes the noise levels ``sigma = 1 - t`` of the steps' starts, a descending
float64 tensor ``(K,)`` in ``(0, 1]`` (the terminal 0 excluded, as in diffusers before it
appends it), and returns levels of the same shape. They are the formulas of diffusers'
``FlowMatchEulerDiscreteScheduler`` (0.42), in the order its ``set_timesteps`` applies them:

1. the shift, static (SD3) or dynamic (Flux, resolution dependent, through ``mu``):

   - :func:`static_shift`: ``sigma' = s sigma / (1 + (s - 1) sigma)``; ``s > 1`` spends more
     steps near the noise (the ``"shifted"`` grid of :func:`flowkit.solvers.time_grid`);
   - :func:`dynamic_shift`: ``sigma' = e^mu / (e^mu + (1 / sigma - 1)^p)`` (exponential) or
     ``mu / (mu + (1 / sigma - 1)^p)`` (linear); exponential with ``mu = log s`` and ``p = 1``
     is the static shift ``s``. :func:`resolution_mu` is the ``mu`` diffusers' Flux and SD3
     pipelines compute from the image's token count;

2. :func:`stretch_to_terminal` (LTX): ``1 - sigma`` rescaled so the last level is ``terminal``;
3. one of diffusers' spacings between the first and last level: :func:`karras_levels`,
   :func:`exponential_levels`, :func:`beta_levels`.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "beta_levels",
    "diffusers_default_levels",
    "diffusers_sigma_range",
    "dynamic_shift",
    "exponential_levels",
    "karras_levels",
    "resolution_mu",
    "static_shift",
    "stretch_to_terminal",
]


def static_shift(sigma: Tensor, shift: float) -> Tensor:
    """``shift * sigma / (1 + (shift - 1) * sigma)``: keeps 0 and 1, and the order."""
    return shift * sigma / (1 + (shift - 1) * sigma)


def dynamic_shift(
    sigma: Tensor, mu: float, kind: str = "exponential", exponent: float = 1.0
) -> Tensor:
    """diffusers' ``time_shift(mu, exponent, sigma)``.

    ``kind="exponential"``: ``e^mu / (e^mu + (1 / sigma - 1)^exponent)``;
    ``kind="linear"``: ``mu / (mu + (1 / sigma - 1)^exponent)``.
    """
    if kind == "exponential":
        return math.exp(mu) / (math.exp(mu) + (1 / sigma - 1) ** exponent)
    if kind == "linear":
        return mu / (mu + (1 / sigma - 1) ** exponent)
    raise ValueError(f"time_shift_type must be 'exponential' or 'linear', got {kind!r}")


def resolution_mu(
    image_seq_len: int,
    base_image_seq_len: int = 256,
    max_image_seq_len: int = 4096,
    base_shift: float = 0.5,
    max_shift: float = 1.15,
) -> float:
    """The ``mu`` of diffusers' ``calculate_shift``: linear in the token count, ``base_shift``
    at ``base_image_seq_len`` and ``max_shift`` at ``max_image_seq_len``."""
    slope = (max_shift - base_shift) / (max_image_seq_len - base_image_seq_len)
    return image_seq_len * slope + base_shift - slope * base_image_seq_len


def stretch_to_terminal(sigma: Tensor, terminal: float) -> Tensor:
    """Scale ``1 - sigma`` so that the last level becomes ``terminal`` (the first, 1, stays)."""
    one_minus = 1 - sigma
    return 1 - one_minus / (one_minus[-1] / (1 - terminal))


def karras_levels(sigma: Tensor, rho: float = 7.0) -> Tensor:
    """Karras et al. (2022): uniform in ``sigma^(1/rho)`` from ``sigma[0]`` to ``sigma[-1]``."""
    hi, lo = float(sigma[0]) ** (1 / rho), float(sigma[-1]) ** (1 / rho)
    ramp = torch.from_numpy(np.linspace(0, 1, sigma.numel()))
    return (hi + ramp * (lo - hi)) ** rho


def exponential_levels(sigma: Tensor) -> Tensor:
    """Uniform in ``log sigma`` from ``sigma[0]`` to ``sigma[-1]``."""
    ends = math.log(float(sigma[0])), math.log(float(sigma[-1]))
    return torch.from_numpy(np.exp(np.linspace(*ends, sigma.numel())))


def beta_levels(sigma: Tensor, alpha: float = 0.6, beta: float = 0.6) -> Tensor:
    """Lee et al. (2024), "Beta sampling is all you need": the levels at the quantiles
    ``1 - linspace(0, 1, K)`` of a Beta(alpha, beta) law, mapped onto ``[sigma[-1], sigma[0]]``."""
    import scipy.stats

    lo, hi = float(sigma[-1]), float(sigma[0])
    quantiles = scipy.stats.beta.ppf(1 - np.linspace(0, 1, sigma.numel()), alpha, beta)
    return torch.from_numpy(lo + quantiles * (hi - lo))


def diffusers_sigma_range(
    num_train_timesteps: int, shift: float, dynamic: bool
) -> tuple[float, float]:
    """``(sigma_min, sigma_max)`` of diffusers' training schedule, in float32 as diffusers
    computes them: ``1 / num_train_timesteps`` and 1, statically shifted unless ``dynamic``."""
    ends = torch.tensor([float(num_train_timesteps), 1.0]) / num_train_timesteps
    if not dynamic:
        ends = static_shift(ends, shift)
    return float(ends[1]), float(ends[0])


def diffusers_default_levels(
    steps: int, num_train_timesteps: int, sigma_min: float, sigma_max: float
) -> Tensor:
    """diffusers' default ``set_timesteps(steps)`` levels before shifting: ``steps`` levels
    evenly spaced in timestep from ``sigma_max`` down to ``sigma_min`` (so the last step is
    ``sigma_min -> 0``), float64 as numpy computes them."""
    scale = num_train_timesteps
    return torch.from_numpy(np.linspace(sigma_max * scale, sigma_min * scale, steps) / scale)
