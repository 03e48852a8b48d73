r"""``objective.kind: noise_level`` of ``flowkit train``: the noise-level classifier's loss.

The trainer's loop, EMA, checkpoints and resume train a
:class:`~flowkit.mcmc.estimators.NoiseLevelClassifier` on the run's data with the authors'
cross-entropy over the geometric grid ``s_k = s_min (s_max/s_min)^{tau_k}``
(:func:`~flowkit.mcmc.estimators.noise_level_loss`: ``k`` uniform, ``y = x1 + s_k eps``).
The run saves the classifier alone as ``RUN/pipeline/`` (``config.json`` recording the data
shape and the grid, safetensors weights): ``saved_as = "estimator"``. It makes no samples
(``has_samples = False``: no snapshots). ``flowkit sample MODEL --method dmcmc --estimator
RUN`` reads it back through :func:`~flowkit.mcmc.estimators.load_estimator`.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from flowkit.mcmc.estimators import level_grid, noise_level_loss
from flowkit.objectives.base import Objective

GRID_KEYS = ("num_levels", "s_min", "s_max")


class NoiseLevelObjective(Objective):
    """Per-sample cross-entropy of a noise-level classifier on the grid
    ``level_grid(num_levels, s_min, s_max)`` (module docstring).

    The classifier is trained on the data the run reads (``x1``); ``x0`` and ``cond`` are
    not used (the estimator is unconditional, as denoising MCMC's chains are).
    """

    saved_as: ClassVar[str] = "estimator"
    has_samples: ClassVar[bool] = False

    def __init__(self, num_levels: int = 1000, s_min: float = 0.01, s_max: float = 50.0) -> None:
        self.levels = level_grid(num_levels, s_min, s_max)
        self.num_levels, self.s_min, self.s_max = int(num_levels), float(s_min), float(s_max)

    def __call__(
        self,
        model: nn.Module,
        x1: Tensor,
        x0: Tensor | None = None,
        cond: Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        return noise_level_loss(model, x1, generator=generator, levels=self.levels)

    def pipeline_settings(self) -> dict[str, Any]:
        """The grid, as the classifier's config records it."""
        return {"num_levels": self.num_levels, "s_min": self.s_min, "s_max": self.s_max}
