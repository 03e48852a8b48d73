"""What the trainer relies on in an objective, declared instead of probed.

Every loss is a callable ``loss(model, x1, x0=None, cond=None, generator=None, **batch)
-> Tensor[B]`` (per sample, never reduced; ``cond`` the class labels ``(B,)`` or None, as
couplings take them; the loss calls the field with ``class_labels=cond``) and subclasses
:class:`Objective`, whose class attributes and methods say the rest:

- ``needs_pairs``: it trains on paired ``(x0, x1)`` data (reflow pairs), so a run without
  them is refused before the first step;
- ``boundaries``: for phased pairs, the times ``(K + 1,)`` at which it reads the teacher's
  states ``xb`` ``(B, K + 1, *D)`` from the batch (None: it reads none);
- ``saved_as``: the pipeline the trainer saves the model in: ``"flow"`` (an ODE pipeline
  on ``path``), ``"multiplicative"`` (a GBM pipeline with :meth:`pipeline_settings`) or
  ``"estimator"`` (the network alone, a diffusers-style component: a noise-level
  classifier for denoising MCMC, which is no generative model);
- ``has_samples``: whether the model it trains makes samples at all (False: the trainer
  writes no sample snapshots);
- :meth:`generate`: its own sampler for training snapshots (None: the flow sampler).
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import Tensor, nn

SAVED_AS = ("flow", "multiplicative", "estimator")


class Objective:
    """Base of flowkit's losses (see the module docstring)."""

    needs_pairs: ClassVar[bool] = False
    saved_as: ClassVar[str] = "flow"
    has_samples: ClassVar[bool] = True
    boundaries: Tensor | None = None

    def __call__(
        self,
        model: nn.Module,
        x1: Tensor,
        x0: Tensor | None = None,
        cond: Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        raise NotImplementedError

    def pipeline_settings(self) -> dict[str, Any]:
        """The scheduler settings of the saved pipeline beyond the path and prediction."""
        return {}

    def generate(
        self,
        model: nn.Module,
        num: int,
        shape: tuple[int, ...],
        seed: int,
        device: torch.device | str | None = None,
    ) -> Tensor | None:
        """``(num, *shape)`` snapshot samples by the objective's own sampler, sample ``i``
        from ``(seed, i)``; None to use the flow sampler on the objective's path."""
        return None
