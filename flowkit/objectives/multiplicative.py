"""Multiplicative denoising score matching for the GBM model ("Dale meets Langevin").

The network ``h(x, t)`` outputs the multiplicative (Hyvärinen) score ``x ∘ ∇_x log p_s(x)``
at flowkit time ``t = 1 - s`` (not a velocity, whatever its ``prediction`` attribute says).
For data ``x1 > 0`` (images shifted from ``[-1, 1]`` to ``[1, 2]``), ``s ~ U[s_min, 1]``
and ``x_s`` drawn from the GBM (:class:`~flowkit.paths.GBMProcess`), the per-sample loss is
the authors'

    L = sum_pixels [ s sigma^2 h(x_s, t) + log(x_s / x1) - (mu - 1.5 sigma^2) s ]^2 .

Algebra. The conditional target is ``h* = -1 - (log(x_s / x1) - (mu - sigma^2/2) s) /
(sigma^2 s)`` (:meth:`~flowkit.paths.GBMProcess.conditional_score`). Multiplying by
``sigma^2 s``: ``sigma^2 s h* = -log(x_s / x1) + (mu - 1.5 sigma^2) s``, so the bracket is
``sigma^2 s (h - h*)`` and ``L = sigma^4 s^2 |h - h*|^2``: denoising score matching with
weight ``sigma^4 s^2``, minimised by ``E[h* | x_s] = x ∘ ∇ log p_s`` (the marginal
multiplicative score). Writing ``log(x_s / x1) = (mu - sigma^2/2) s + sigma sqrt(s) z``, the
bracket is ``sigma sqrt(s) (sigma sqrt(s) (h + 1) + z)``.

Time index. The authors' code noises ``x`` at ``s = k / N`` and evaluates the bracket (and
the network) at ``(k + 1) / N``, which biases the target by ``O(1 / N)``; here one ``s`` is
drawn per sample and used for the noise, the bracket and the network alike. ``s`` is
continuous on ``[s_min, 1]`` with ``s_min = 1 / N = 1e-3``, the continuous form of their
``k / N``, ``k = 1..N``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from flowkit.objectives.base import Objective
from flowkit.objectives.flow_matching import call_field
from flowkit.paths.gbm import GBMProcess, LogNormal, from_positive, to_positive
from flowkit.solvers.gbm import check_gbm_options, sample_gbm_seeded

__all__ = ["MultiplicativeScoreLoss"]


class MultiplicativeScoreLoss(Objective):
    """``loss(model, x1, x0=None, cond=None, generator=None) -> Tensor (B,)``.

    Args:
        process: the GBM (default ``GBMProcess()``: ``sigma = 0.8``, ``mu = sigma^2 / 2``).
        data_law: the log-normal fitted to the positive data,
            ``fit_lognormal(to_positive(x))`` (:func:`~flowkit.paths.fit_lognormal`); the
            samplers start from ``process.marginal(data_law, 1.0)``. Needed by
            :meth:`generate` and :meth:`pipeline`, not by the loss.
        s_min: the smallest diffusion time drawn, in ``(0, 1)``.
        shift: ``x1`` is in ``[-1, 1]`` and is shifted to ``[1, 2]`` (images, the default);
            ``False``: ``x1`` is already positive and samples are returned as they are.
        steps, sampler, inner_steps, noise_scale, anneal, clean_steps, min_factor: the
            sampler the saved pipeline uses (:func:`~flowkit.solvers.gbm.sample_gbm`).
        snapshot_steps: the (smaller) number of levels :meth:`generate` uses.
    """

    saved_as = "multiplicative"

    def __init__(
        self,
        process: GBMProcess | None = None,
        data_law: LogNormal | None = None,
        s_min: float = 1e-3,
        shift: bool = True,
        steps: int = 1000,
        sampler: str = "multiplicative",
        inner_steps: int = 1,
        noise_scale: float = 1.0,
        anneal: float = 0.0,
        clean_steps: int = 0,
        min_factor: float = 1e-3,
        snapshot_steps: int = 100,
    ) -> None:
        if isinstance(s_min, bool) or not isinstance(s_min, int | float) or not 0 < s_min < 1:
            raise ValueError(f"s_min must be a number in (0, 1), got {s_min!r}")
        check_gbm_options(steps, sampler, inner_steps, noise_scale, anneal, clean_steps, min_factor)
        check_gbm_options(snapshot_steps, sampler, inner_steps, noise_scale, anneal, 0, min_factor)
        self.process = process or GBMProcess()
        self.data_law = data_law
        self.s_min = float(s_min)
        self.shift = bool(shift)
        self.sampler_options = {
            "steps": steps,
            "sampler": sampler,
            "inner_steps": inner_steps,
            "noise_scale": noise_scale,
            "anneal": anneal,
            "clean_steps": clean_steps,
            "min_factor": min_factor,
        }
        self.snapshot_steps = snapshot_steps

    def __repr__(self) -> str:
        return (
            f"MultiplicativeScoreLoss({self.process}, s_min={self.s_min}, "
            f"sampler={self.sampler_options})"
        )

    def __call__(
        self,
        model: nn.Module | Callable,
        x1: Tensor,
        x0: Tensor | None = None,
        cond: Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """Per-sample loss ``(B,)`` for data ``x1`` ``(B, *D)`` (see the module docstring).

        Raises:
            ValueError: ``x0`` is given (the GBM noises the data itself; there are no pairs).
        """
        if x0 is not None:
            raise ValueError("MultiplicativeScoreLoss draws its own noise; got paired x0")
        y = to_positive(x1) if self.shift else x1
        u = torch.rand(y.shape[0], generator=generator, device=y.device, dtype=y.dtype)
        s = self.s_min + (1.0 - self.s_min) * u
        sample = self.process.sample(y, 1.0 - s, generator=generator)
        h = call_field(model, sample.xt, sample.t, cond)
        sb = s.reshape(-1, *([1] * (y.dim() - 1)))
        sigma2, mu = self.process.sigma**2, self.process.mu
        bracket = sigma2 * sb * h + torch.log(sample.xt / y) - (mu - 1.5 * sigma2) * sb
        return bracket.pow(2).flatten(1).sum(1)

    def start(self) -> LogNormal:
        """The samplers' start: ``data_law`` pushed to ``s = 1``."""
        if self.data_law is None:
            raise ValueError(
                "this MultiplicativeScoreLoss has no data_law; pass "
                "data_law=fit_lognormal(to_positive(x)) to sample or save a pipeline"
            )
        return self.process.marginal(self.data_law, 1.0)

    def generate(
        self,
        model: nn.Module | Callable,
        num: int,
        shape: tuple[int, ...],
        seed: int,
        device: torch.device | str | None = None,
    ) -> Tensor:
        """``(num, *shape)`` samples (in ``[-1, 1]`` with ``shift``) with ``snapshot_steps``
        levels of the configured sampler; sample ``i`` from ``(seed, i)``."""
        clean = min(self.sampler_options["clean_steps"], self.snapshot_steps)
        options = {**self.sampler_options, "steps": self.snapshot_steps, "clean_steps": clean}
        result = sample_gbm_seeded(
            model, self.start(), shape, range(num), seed, device, process=self.process, **options
        )
        return from_positive(result.x) if self.shift else result.x

    def pipeline_settings(self) -> dict:
        """The :class:`~flowkit.pipelines.GBMScheduler` settings of the saved pipeline: this
        process, the configured sampler and the fitted start."""
        if self.data_law is None:
            self.start()  # raises the error that explains data_law
        return {
            "sigma": self.process.sigma,
            "mu": self.process.mu,
            "shift": self.shift,
            "data_log_mean": self.data_law.mean.tolist(),
            "data_log_std": self.data_law.std.tolist(),
            **self.sampler_options,
        }
