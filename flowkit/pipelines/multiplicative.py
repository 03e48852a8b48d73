"""``MultiplicativePipeline``: the GBM model ("Dale meets Langevin") as a diffusers pipeline.

Components: ``model``, a flowkit network whose output is the multiplicative score
``x ∘ ∇ log p`` at flowkit time ``t`` (:mod:`flowkit.objectives.multiplicative`), and
``scheduler``, a :class:`GBMScheduler` whose config carries everything else: the process
(``sigma``, ``mu``), the sampler (``steps``, ``sampler``, ``inner_steps``, ``noise_scale``,
``anneal``, ``clean_steps``, ``min_factor``), the log-normal fitted to the positive data
(``data_log_mean``, ``data_log_std``: per pixel or global) and ``shift`` (images in
``[-1, 1]`` shifted to ``[1, 2]``). The loop is :func:`flowkit.solvers.gbm.sample_gbm`::

    z = randn(shape, generator)                              # or latents=
    x = exp(start.mean + start.std * z)                      # start = marginal at s = 1
    x = sample_gbm(model, x, steps, process, sampler, ...)   # increments from (seed, i)
    images = clamp(x, 1, 2) - 1                              # in [0, 1]

Saving and loading (safetensors and JSON only)::

    pipe.save_pretrained("out")
    pipe = MultiplicativePipeline.from_pretrained("out")   # or flowkit.pipelines.load_pipeline
"""

from __future__ import annotations

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.pipelines.pipeline_utils import DiffusionPipeline, ImagePipelineOutput

# SchedulerMixin must be in this module's namespace: diffusers finds a component's loading
# methods through the base classes it sees in the module model_index.json names
from diffusers.schedulers.scheduling_utils import SchedulerMixin
from torch import Tensor

import flowkit.models  # noqa: F401  (model classes named by model_index.json)
from flowkit.paths.gbm import GBMProcess, LogNormal, from_positive
from flowkit.pipelines.rectified_flow import FlowkitPipelineMixin, SampleOutput, is_image_model
from flowkit.solvers.gbm import check_gbm_options, sample_gbm, sample_gbm_seeded
from flowkit.solvers.result import SampleResult

__all__ = ["GBMScheduler", "MultiplicativePipeline"]


class GBMScheduler(SchedulerMixin, ConfigMixin):
    """The configuration of a GBM sampler (see the module docstring); every option is
    checked here, so a bad saved config fails on loading with the value named.

    Args:
        sigma, mu: the process (:class:`~flowkit.paths.GBMProcess`; ``mu=None`` is
            ``sigma^2 / 2``, recorded as its value).
        steps, sampler, inner_steps, noise_scale, anneal, clean_steps, min_factor: the
            sampler (:func:`~flowkit.solvers.gbm.sample_gbm`); ``steps`` is the default
            number of levels, ``num_inference_steps`` of a call overrides it.
        data_log_mean, data_log_std: the log-normal fitted to the positive data (nested
            lists of one sample's shape, or numbers).
        shift: samples are images shifted to ``[1, 2]`` (returned in ``[0, 1]``); False:
            positive vectors returned as they are.
    """

    config_name = "scheduler_config.json"
    order = 1
    _compatibles: list[str] = []

    @register_to_config
    def __init__(
        self,
        sigma: float = 0.8,
        mu: float | None = None,
        steps: int = 1000,
        sampler: str = "multiplicative",
        inner_steps: int = 1,
        noise_scale: float = 1.0,
        anneal: float = 0.0,
        clean_steps: int = 0,
        min_factor: float = 1e-3,
        data_log_mean: list | float = 0.0,
        data_log_std: list | float = 0.0,
        shift: bool = True,
    ) -> None:
        process = GBMProcess(sigma, mu)
        check_gbm_options(steps, sampler, inner_steps, noise_scale, anneal, clean_steps, min_factor)
        law = LogNormal.from_config(data_log_mean, data_log_std)
        if law.mean.shape != law.std.shape:
            raise ValueError(
                f"data_log_mean {tuple(law.mean.shape)} and data_log_std "
                f"{tuple(law.std.shape)} must have the same shape"
            )
        self.register_to_config(mu=process.mu)

    @property
    def process(self) -> GBMProcess:
        return GBMProcess(self.config.sigma, self.config.mu)

    @property
    def start(self) -> LogNormal:
        """The log-normal the sampler starts from: the data's, pushed to ``s = 1``."""
        law = LogNormal.from_config(self.config.data_log_mean, self.config.data_log_std)
        return self.process.marginal(law, 1.0)

    def sampler_options(self, steps: int | None = None) -> dict:
        """Keyword arguments of :func:`~flowkit.solvers.gbm.sample_gbm` (``steps`` levels,
        default the configured number; ``clean_steps`` is capped at ``steps``)."""
        config = self.config
        steps = config.steps if steps is None else steps
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
            raise ValueError(f"num_inference_steps must be an int >= 1, got {steps!r}")
        return {
            "steps": steps,
            "process": self.process,
            "sampler": config.sampler,
            "inner_steps": config.inner_steps,
            "noise_scale": config.noise_scale,
            "anneal": config.anneal,
            "clean_steps": min(config.clean_steps, steps),
            "min_factor": config.min_factor,
        }


class MultiplicativePipeline(FlowkitPipelineMixin, DiffusionPipeline):
    """Sample the GBM model (see the module docstring).

    Args:
        model: a flowkit network that outputs the multiplicative score.
        scheduler: a :class:`GBMScheduler`.
    """

    model_cpu_offload_seq = "model"

    def __init__(self, model: torch.nn.Module, scheduler: GBMScheduler) -> None:
        super().__init__()
        self.register_modules(model=model, scheduler=scheduler)

    def _finish(self, x: Tensor) -> Tensor:
        return from_positive(x) if self.scheduler.config.shift else x

    @torch.no_grad()
    def sample(
        self,
        indices: range | list[int],
        seed: int = 0,
        num_inference_steps: int | None = None,
        shape: tuple[int, ...] | None = None,
    ) -> SampleResult:
        """Samples ``indices`` of the set seeded by ``seed``: sample ``i`` depends on
        ``(seed, i)`` alone (start and increments). ``x`` is in ``[-1, 1]`` for images
        (``shift``), else the raw positive samples; ``nfe`` is the calls made."""
        from flowkit.pipelines.rectified_flow import sample_shape

        scheduler, model = self.scheduler, self.model
        shape = sample_shape(model) if shape is None else shape
        result = sample_gbm_seeded(
            model,
            scheduler.start,
            shape,
            indices,
            seed,
            self._execution_device,
            **scheduler.sampler_options(num_inference_steps),
        )
        result.x = self._finish(result.x)
        return result

    @torch.no_grad()
    def __call__(
        self,
        batch_size: int = 1,
        num_inference_steps: int | None = None,
        generator: torch.Generator | list[torch.Generator] | None = None,
        output_type: str | None = None,
        return_dict: bool = True,
        class_labels: Tensor | None = None,
        latents: Tensor | None = None,
        seed: int | None = None,
    ) -> ImagePipelineOutput | SampleOutput | tuple:
        """Draw ``batch_size`` samples with ``num_inference_steps`` levels (default: the
        scheduler's ``steps``; ``steps * inner_steps`` model calls).

        Args:
            generator: draws the standard normal ``z`` of the start (diffusers'
                ``randn_tensor``; one generator per sample allowed) and then, unless ``seed``
                is given, the base seed of the per-sample increments.
            output_type, return_dict, class_labels: as in
                :meth:`~flowkit.pipelines.RectifiedFlowPipeline.__call__`.
            latents: the standard normal ``z`` ``(B, *D)`` of the start, used as is.
            seed: base seed of the increments (sample ``k`` uses ``(seed, k)``).
        """
        model, scheduler = self.model, self.scheduler
        image = scheduler.config.shift and (
            is_image_model(model) if latents is None else latents.ndim == 4
        )
        output_type = self._check_output_type(output_type, image)
        z = self._initial_noise(model, batch_size, generator, latents, 1.0)
        if seed is None:
            first = generator[0] if isinstance(generator, list) else generator
            device = first.device if first is not None else "cpu"
            seed = int(torch.randint(0, 2**62, (), generator=first, device=device))
        cond = {} if class_labels is None else {"class_labels": class_labels.to(z.device)}
        x = scheduler.start.sample(z)
        options = scheduler.sampler_options(num_inference_steps)
        x = sample_gbm(model, x, seed=seed, cond=cond, **options).x
        self.maybe_free_model_hooks()
        return self._output(self._finish(x), image, output_type, return_dict)

