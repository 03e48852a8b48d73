"""``DMCMCPipeline``: denoising MCMC (Kim & Ye 2022) as a diffusers pipeline.

Components: ``model`` (any flowkit field, with its ``prediction``), ``scheduler`` (a
:class:`DMCMCScheduler`: the path, the level grid and every chain setting, saved as
``scheduler/scheduler_config.json``) and an optional ``estimator`` (a
:class:`~flowkit.mcmc.NoiseLevelClassifier`, safetensors; without one the chains use the
training-free score-norm estimator). ``save_pretrained`` / ``from_pretrained`` round-trip them
and give identical samples for the same seed. The math is in :mod:`flowkit.mcmc.chains`.

Each call starts fresh chains from ``seed`` (output ``i`` is chain ``i mod num_chains``'s output
of round ``i // num_chains``): outputs of one chain are correlated MCMC samples, not
independent draws. :meth:`DMCMCPipeline.sampler` returns a persistent sampler whose chains
continue across calls.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.pipelines.pipeline_utils import DiffusionPipeline
from diffusers.schedulers.scheduling_utils import SchedulerMixin
from diffusers.utils import BaseOutput
from torch import Tensor

import flowkit.mcmc.estimators  # noqa: F401  (diffusers resolves components from sys.modules)
import flowkit.models  # noqa: F401
from flowkit.mcmc.chains import STEP_RULES, LangevinGibbs
from flowkit.mcmc.estimators import (
    ClassifierEstimator,
    NoiseLevelClassifier,
    ScoreNormEstimator,
    level_grid,
)
from flowkit.mcmc.sampler import INTEGRATORS, DenoisingMCMC
from flowkit.paths import get_path
from flowkit.pipelines.rectified_flow import FlowkitPipelineMixin, is_image_model, sample_shape

__all__ = ["DMCMCOutput", "DMCMCPipeline", "DMCMCScheduler"]

GIBBS = ("map", "posterior")


class DMCMCScheduler(SchedulerMixin, ConfigMixin):
    """The settings of denoising MCMC (no state): path, level grid, chains, integrator.

    Args:
        path, path_kwargs: the model's affine path (:func:`flowkit.paths.get_path`).
        num_levels, s_min, s_max: the grid ``s_min (s_max/s_min)^tau``, ``tau = linspace(1,
            1e-3, num_levels)`` (:func:`~flowkit.mcmc.level_grid`).
        skip: chain steps per output. step_size, step_rule: the Langevin step ``eta``.
        gibbs: with a classifier, ``"map"`` or ``"posterior"``.
        num_chains: chains run in parallel (outputs per round).
        method, grid, solver_options: the integrator. burn_in, s_init, warm_start_nfe,
            tweedie: see :class:`~flowkit.mcmc.DenoisingMCMC`.
    """

    config_name = "scheduler_config.json"

    @register_to_config
    def __init__(
        self,
        path: str = "rectified",
        path_kwargs: dict | None = None,
        num_levels: int = 1000,
        s_min: float = 0.01,
        s_max: float = 50.0,
        skip: int = 5,
        step_size: float = 0.5,
        step_rule: str = "constant",
        gibbs: str = "map",
        num_chains: int = 64,
        method: str = "edm",
        grid: str = "edm",
        solver_options: dict | None = None,
        burn_in: int = 20,
        s_init: float = 1.0,
        warm_start_nfe: int = 10,
        tweedie: bool = True,
    ) -> None:
        if step_rule not in STEP_RULES:
            raise ValueError(f"step_rule must be one of {STEP_RULES}, got {step_rule!r}")
        if gibbs not in GIBBS:
            raise ValueError(f"gibbs must be one of {GIBBS}, got {gibbs!r}")
        if method not in INTEGRATORS:
            raise ValueError(f"method must be one of {list(INTEGRATORS)}, got {method!r}")
        level_grid(num_levels, s_min, s_max)  # validates the grid

    @property
    def levels(self) -> Tensor:
        """``(num_levels,)`` float64, decreasing."""
        c = self.config
        return level_grid(c.num_levels, c.s_min, c.s_max)


@dataclass
class DMCMCOutput(BaseOutput):
    """Samples and their cost.

    Attributes:
        samples: ``(B, *D)`` tensor (``"pt"``) or array (``"np"``); images in ``[0, 1]``.
        nfe: network calls per output (chain steps + integrator), counted.
        chain_nfe, integrator_nfe: its split. estimator_calls: classifier calls per output.
        burn_in_nfe: calls spent once starting the chains (per chain batch).
    """

    samples: Tensor | np.ndarray
    nfe: int
    chain_nfe: int
    integrator_nfe: int
    estimator_calls: int
    burn_in_nfe: int


class DMCMCPipeline(FlowkitPipelineMixin, DiffusionPipeline):
    """Denoising MCMC of a flowkit field (module docstring)."""

    model_cpu_offload_seq = "model"
    _optional_components = ["estimator"]

    def __init__(
        self,
        model: torch.nn.Module,
        scheduler: DMCMCScheduler,
        estimator: NoiseLevelClassifier | None = None,
    ) -> None:
        super().__init__()
        self.register_modules(model=model, scheduler=scheduler, estimator=estimator)

    @property
    def path(self):
        config = self.scheduler.config
        return get_path(config.path, **(config.path_kwargs or {}))

    def sampler(self, seed: int = 0, chain_batch_size: int | None = None) -> DenoisingMCMC:
        """A :class:`~flowkit.mcmc.DenoisingMCMC` over this pipeline's parts; its chains
        persist across its ``sample`` calls."""
        c = self.scheduler.config
        levels = self.scheduler.levels
        shape = sample_shape(self.model)
        if self.estimator is not None:
            self.estimator.check_compatible(shape, levels)
            estimator = ClassifierEstimator(self.estimator, c.gibbs)
        else:
            estimator = ScoreNormEstimator(levels)
        device = self._execution_device
        chains = LangevinGibbs(
            self.model, shape, path=self.path, prediction=self.model.prediction, levels=levels,
            estimator=estimator, step_size=c.step_size, step_rule=c.step_rule,
            num_chains=c.num_chains, chain_batch_size=chain_batch_size, seed=seed,
            device=device, dtype=self.model.dtype,
        )  # fmt: skip
        return DenoisingMCMC(
            chains, skip=c.skip, method=c.method, grid=c.grid, solver_options=c.solver_options,
            burn_in=c.burn_in, tweedie=c.tweedie, s_init=c.s_init,
            warm_start_nfe=c.warm_start_nfe,
        )  # fmt: skip

    @torch.no_grad()
    def __call__(
        self,
        batch_size: int = 64,
        nfe: int = 10,
        seed: int = 0,
        chain_batch_size: int | None = None,
        output_type: str | None = None,
        return_dict: bool = True,
    ) -> DMCMCOutput | tuple:
        """Draw ``batch_size`` outputs at ``nfe`` network calls each from fresh chains seeded
        by ``seed`` (results do not depend on ``chain_batch_size``)."""
        image = is_image_model(self.model)
        output_type = self._check_output_type(output_type, image)
        result = self.sampler(seed, chain_batch_size).sample(batch_size, nfe)
        out = self._output(result.x, image, output_type, True)
        samples = out.images if image else out.samples
        cost = (result.nfe, result.chain_nfe, result.integrator_nfe, result.estimator_calls,
                result.burn_in_nfe)  # fmt: skip
        if not return_dict:
            return (samples, *cost)
        return DMCMCOutput(samples, *cost)
