r"""Song et al.'s predictor-corrector sampler (score SDEs, 2021), in flowkit time.

Grid ``t_0 < ... < t_K`` with ``K = nfe // (1 + n_corrector_steps)``. Step ``i``:

1. corrector first: ``n_corrector_steps`` Langevin steps at ``t_i``,
   ``x <- x + e score + sqrt(2 e) z`` with Song et al.'s snr rule
   ``e = 2 a_i (snr ||z|| / ||score||)^2``. ``step_size`` says how the norms are taken:

   - ``"noise_level"`` (default): their expected values ``||z|| = sqrt(d)`` and
     ``||score|| = sqrt(d) / sigma(t)`` (the score of ``x_t`` is ``-epsilon / sigma``),
     so ``e = 2 a_i (snr sigma(t))^2``: the same for every sample and every state, which
     keeps the corrector's stationary law ``p_t`` (up to the Langevin step bias) and a
     sample independent of its batch-mates;
   - ``"batch"``: batch means of the per-sample norms, as in Song et al.'s code (a sample
     then depends on the rest of its batch);
   - ``"per_sample"``: per-sample norms. The step then depends on the state
     (``e ~ ||z||^2 / ||score(x)||^2``) and tilts the stationary law: on a
     ``d``-dimensional Gaussian the variance grows by about ``4.5 / d`` (0.15% on
     32x32x3 images, a factor 2 in 2-D).

   ``a_i = 1 - beta_i`` on VP and sub-VP (Song et al.'s ``sde.alphas``), with the
   discrete ``beta_i`` of the path over the grid, ``1 - beta_i = alpha(t_i)^2 /
   alpha(t_{i+1})^2`` (DDPM's ``prod (1 - beta) = alpha^2``); ``a_i = 1`` otherwise.
2. predictor: one Euler-Maruyama step of the path's reverse diffusion (the
   ``euler_maruyama`` step of :mod:`flowkit.solvers.sde`, ``eps = noise_scale * g``,
   noise-free where ``alpha = 0`` or where the step would overshoot);
   on the last step the predictor is the noise-free denoising step instead: Tweedie's
   ``x = E[x1 | x_{t_{K-1}}]``, the "x0" prediction at the last evaluated time. It spends
   the last step's predictor evaluation, so the sampler makes exactly
   ``K (1 + n_corrector_steps)`` evaluations and never evaluates the field at ``t_K``
   (``t = 1`` on the rectified path, where ``sigma = 0``).

Each corrector step and each predictor costs one evaluation (score and velocity of one
state come from one network output).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from flowkit.paths import AffinePath
from flowkit.solvers.increments import PerSampleNoise
from flowkit.solvers.result import SampleResult
from flowkit.solvers.sde import (
    VelocityField,
    coefficients_at,
    reverse_diffusion_sq,
    reverse_sde_step,
    setup,
)

_DISCRETE_BETA_PATHS = ("vp", "subvp")


STEP_SIZES = ("noise_level", "batch", "per_sample")


def langevin_step(
    counted: VelocityField,
    x: Tensor,
    t: float,
    snr: float,
    alpha_i: float,
    noise: PerSampleNoise,
    step_size: str = "noise_level",
) -> Tensor:
    """One Langevin corrector step at time ``t`` with Song et al.'s snr step size."""
    score = counted.evaluate(x, t).score
    z = noise.next()
    if step_size == "noise_level":
        sigma = coefficients_at(counted.path, t)[1]
        step = torch.full(
            (x.shape[0],), 2 * alpha_i * (snr * sigma) ** 2, dtype=x.dtype, device=x.device
        )
    else:
        score_norm = torch.linalg.vector_norm(score.flatten(1), dim=1)
        z_norm = torch.linalg.vector_norm(z.flatten(1), dim=1)
        if step_size == "batch":
            score_norm, z_norm = score_norm.mean().expand_as(score_norm), z_norm.mean()
        step = 2 * alpha_i * (snr * z_norm / score_norm.clamp_min(1e-30)) ** 2
    step = step.reshape((-1,) + (1,) * (x.dim() - 1))
    return x + step * score + torch.sqrt(2 * step) * z


def sample_pc(
    field: Callable[..., Tensor],
    x: Tensor,
    nfe: int | None = None,
    grid: str | Sequence[float] | Tensor = "uniform",
    *,
    path: AffinePath | None = None,
    prediction: str | None = None,
    t0: float | None = None,
    t1: float | None = None,
    snr: float = 0.16,
    n_corrector_steps: int = 1,
    step_size: str = "noise_level",
    noise_scale: float = 1.0,
    seed: int = 0,
    indices: Sequence[int] | Tensor | None = None,
    grid_options: dict | None = None,
    return_trajectory: bool = False,
    cond: dict | None = None,
) -> SampleResult:
    """Predictor-corrector sampling (module docstring); arguments as :func:`sample_sde`.

    Args:
        snr: the corrector's signal-to-noise ratio (0.16 for CIFAR-10 in Song et al.).
        n_corrector_steps: Langevin steps before every predictor step (0: predictor only).
        step_size: ``"noise_level"``, ``"batch"`` or ``"per_sample"`` (module docstring).
    """
    if step_size not in STEP_SIZES:
        raise ValueError(f"step_size must be one of {list(STEP_SIZES)}, got {step_size!r}")
    if not snr > 0:
        raise ValueError(f"snr must be > 0, got snr={snr}")
    if int(n_corrector_steps) != n_corrector_steps or n_corrector_steps < 0:
        raise ValueError(f"n_corrector_steps must be an integer >= 0, got {n_corrector_steps}")
    n_corrector_steps = int(n_corrector_steps)
    per_step = 1 + n_corrector_steps
    counted, times, noise = setup(
        field, x, nfe, grid, "pc", lambda n: n // per_step, per_step, path=path,
        prediction=prediction, t0=t0, t1=t1, noise_scale=noise_scale, seed=seed,
        indices=indices, cond=cond, grid_options=grid_options,
    )  # fmt: skip
    path = counted.path
    points = times.tolist()
    steps = len(points) - 1
    trajectory = [x] if return_trajectory else None
    with torch.no_grad():
        for i, (t, t_next) in enumerate(zip(points[:-1], points[1:], strict=True)):
            a, s, _, _ = coefficients_at(path, t)
            alpha_i = 1.0
            if path.name in _DISCRETE_BETA_PATHS:
                alpha_i = (a / coefficients_at(path, t_next)[0]) ** 2
            for _ in range(n_corrector_steps):
                x = langevin_step(counted, x, t, snr, alpha_i, noise, step_size)
            ev = counted.evaluate(x, t)
            if i == steps - 1:
                x = ev.x0
            else:
                eps_sq = 0.0 if noise_scale == 0 else noise_scale**2 * reverse_diffusion_sq(path, t)
                x = reverse_sde_step(ev, x, t_next - t, eps_sq, s, noise)
            if trajectory is not None:
                trajectory.append(x)
    stacked = torch.stack(trajectory) if trajectory is not None else None
    return SampleResult(x=x, nfe=counted.calls, trajectory=stacked, times=times)


__all__ = ["langevin_step", "sample_pc"]
