"""``RectifiedFlowPipeline``: a diffusers pipeline over a flowkit field and a flow scheduler.

The loop, in diffusers' style (``model`` is any flowkit field, ``scheduler`` a
:class:`~flowkit.pipelines.FlowEulerScheduler` or :class:`~flowkit.pipelines.FlowHeunScheduler`)::

    x = path.prior_std * randn(shape, generator)              # t = 0, noise
    for ts in scheduler.timesteps:                             # descending, 1000 * sigma
        t = from_diffusers_flow(ts).t                          # t = 1 - ts / 1000
        v = path.convert(model(x, t), x, t, model.prediction, "velocity")
        x = scheduler.step(to_diffusers_flow(t, v).model_output, ts, x).prev_sample

gives the samples of ``flowkit.solvers.sample_ode(model, x, nfe=scheduler.order * steps,
method="euler" | "heun", grid=times, path=path)`` on the scheduler's own noise levels
(``times = 1 - scheduler.sigmas``: its ``grid`` under its ``shift``), to float rounding. The
path is the scheduler's config entry ``path`` (with ``path_kwargs``); the prediction type is
the model's own ``prediction``. The scheduler's grid always ends at ``t = 1``; ``sample_ode``
stops at ``path.t_max``, which is below 1 on the VP, sub-VP and VE paths, so on those the two
agree only with ``sample_ode(..., t1=1.0)``.

Saving and loading (safetensors and JSON only; see :mod:`flowkit.pipelines.loading`)::

    pipe.save_pretrained("out")
    pipe = RectifiedFlowPipeline.from_pretrained("out")   # or flowkit.pipelines.load_pipeline
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from diffusers.pipelines.pipeline_utils import DiffusionPipeline, ImagePipelineOutput
from diffusers.utils import BaseOutput
from diffusers.utils.torch_utils import randn_tensor
from torch import Tensor

# the component modules, imported so that diffusers can resolve a model_index.json that names
# them (it looks them up in sys.modules only), also when this file is loaded as a diffusers
# custom pipeline
import flowkit.models  # noqa: F401
import flowkit.pipelines.schedulers  # noqa: F401
from flowkit.paths import get_path
from flowkit.paths.diffusers_flow import from_diffusers_flow, to_diffusers_flow
from flowkit.solvers.field import VelocityField

__all__ = ["FlowkitPipelineMixin", "RectifiedFlowPipeline", "SampleOutput"]

OUTPUT_TYPES = ("pil", "np", "pt")


@dataclass
class SampleOutput(BaseOutput):
    """Output of a pipeline over a vector (non-image) model such as ``MLPField``.

    Attributes:
        samples: ``(B, dim)`` tensor (``output_type="pt"``) or numpy array (``"np"``), the raw
            samples (no rescaling).
    """

    samples: Tensor | np.ndarray


def is_image_model(model: torch.nn.Module) -> bool:
    """True for image fields (a config with ``in_channels`` and ``sample_size``)."""
    config = getattr(model, "config", {})
    return "in_channels" in config and "sample_size" in config


def sample_shape(model: torch.nn.Module) -> tuple[int, ...]:
    """The shape of one sample: ``(C, H, W)`` for image models, ``(dim,)`` for vector ones."""
    config = getattr(model, "config", {})
    if is_image_model(model):
        size = config["sample_size"]
        if size is None:
            raise ValueError(
                "the model's config has sample_size=None; pass latents= to fix the sample shape"
            )
        height, width = (size, size) if isinstance(size, int) else tuple(size)
        return (config["in_channels"], height, width)
    if "dim" in config:
        return (config["dim"],)
    raise ValueError(
        f"cannot tell the sample shape of {type(model).__name__}: its config has neither "
        "(in_channels, sample_size) nor dim; pass latents="
    )


class FlowkitPipelineMixin:
    """Noise, output conversion and safe loading shared by flowkit's pipelines."""

    def _check_output_type(self, output_type: str | None, image: bool) -> str:
        if output_type is None:
            return "pil" if image else "pt"
        if output_type not in OUTPUT_TYPES:
            raise ValueError(
                f"output_type must be one of {list(OUTPUT_TYPES)}, got {output_type!r}"
            )
        if output_type == "pil" and not image:
            raise ValueError(
                "output_type='pil' needs an image model; this pipeline's model gives vectors: "
                "use output_type='pt' (tensor) or 'np' (array)"
            )
        return output_type

    def _initial_noise(
        self,
        model: torch.nn.Module,
        batch_size: int,
        generator: torch.Generator | list[torch.Generator] | None,
        latents: Tensor | None,
        scale: float,
    ) -> Tensor:
        device, dtype = self._execution_device, model.dtype
        if latents is not None:
            return latents.to(device=device, dtype=dtype)
        if isinstance(generator, list) and len(generator) != batch_size:
            raise ValueError(
                f"got a list of {len(generator)} generators for batch_size={batch_size}; give "
                "one generator per sample"
            )
        shape = (batch_size, *sample_shape(model))
        noise = randn_tensor(shape, generator=generator, device=device, dtype=dtype)
        return noise if scale == 1.0 else noise * scale

    def _output(
        self, x: Tensor, image: bool, output_type: str, return_dict: bool
    ) -> ImagePipelineOutput | SampleOutput | tuple:
        if image:
            images = (x / 2 + 0.5).clamp(0, 1)
            if output_type != "pt":
                images = images.cpu().permute(0, 2, 3, 1).float().numpy()
                if output_type == "pil":
                    images = self.numpy_to_pil(images)
            return ImagePipelineOutput(images=images) if return_dict else (images,)
        samples = x if output_type == "pt" else x.cpu().numpy()
        return SampleOutput(samples=samples) if return_dict else (samples,)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, **kwargs):
        """diffusers' ``from_pretrained`` with flowkit's classes importable and, for a local
        directory, every weights file checked first (a missing or corrupt file raises an
        error that names it). Only safetensors are read (``use_safetensors=True``)."""
        import os

        from flowkit.pipelines.loading import check_pipeline_dir

        if os.path.isdir(pretrained_model_name_or_path):
            check_pipeline_dir(pretrained_model_name_or_path)
        from diffusers.utils import is_accelerate_available

        kwargs.setdefault("use_safetensors", True)
        kwargs.setdefault("low_cpu_mem_usage", is_accelerate_available())
        return super().from_pretrained(pretrained_model_name_or_path, **kwargs)


class RectifiedFlowPipeline(FlowkitPipelineMixin, DiffusionPipeline):
    """Sample a flowkit field with a flowkit flow scheduler (see the module docstring).

    Args:
        model: a flowkit field (``UNetField``, ``MLPField``, ...) with ``.prediction``.
        scheduler: a ``FlowEulerScheduler`` or ``FlowHeunScheduler``; its config's ``path``
            (and ``path_kwargs``) name the path used to read the model's prediction.
    """

    model_cpu_offload_seq = "model"

    def __init__(self, model: torch.nn.Module, scheduler) -> None:
        super().__init__()
        self.register_modules(model=model, scheduler=scheduler)

    def accelerate(
        self,
        *,
        xformers: str = "auto",
        channels_last: bool | None = None,
        compile: bool = False,
        autocast_dtype: torch.dtype | None = None,
    ) -> RectifiedFlowPipeline:
        """GPU options shared with the trainer (:func:`flowkit.models.acceleration.accelerate`):
        xformers attention when available on CUDA, channels-last, ``torch.compile`` of the
        model (the saved weights stay the uncompiled module's), and bf16/fp16 autocast of
        its forward pass. Call after moving the pipeline to its device."""
        from flowkit.models.acceleration import accelerate

        device = next(self.model.parameters()).device
        self._runner = accelerate(
            self.model, device, xformers=xformers, channels_last=channels_last, compile=compile
        )
        self._autocast_dtype = autocast_dtype
        return self

    @property
    def path(self):
        """The affine path of the scheduler's config (rectified when it names none)."""
        config = self.scheduler.config
        return get_path(config.get("path", "rectified"), **(config.get("path_kwargs") or {}))

    @torch.no_grad()
    def __call__(
        self,
        batch_size: int = 1,
        num_inference_steps: int | None = 4,
        generator: torch.Generator | list[torch.Generator] | None = None,
        output_type: str | None = None,
        return_dict: bool = True,
        class_labels: Tensor | None = None,
        latents: Tensor | None = None,
    ) -> ImagePipelineOutput | SampleOutput | tuple:
        """Draw ``batch_size`` samples with ``num_inference_steps`` scheduler steps.

        Args:
            batch_size: number of samples (ignored when ``latents`` is given).
            num_inference_steps: steps on the scheduler's grid; the model is called
                ``scheduler.order * num_inference_steps`` times (Heun: 2 per step, one fewer
                with ``final_euler``). None with a scheduler configured with an explicit grid.
            generator: a ``torch.Generator`` or one per sample (diffusers' ``randn_tensor``).
            output_type: for image models ``"pil"`` (list of ``PIL.Image``, the default),
                ``"np"`` (``(B, H, W, C)`` float in ``[0, 1]``) or ``"pt"`` (``(B, C, H, W)``
                tensor in ``[0, 1]``), the model's ``[-1, 1]`` mapped to ``[0, 1]``; for vector
                models ``"pt"`` (the default) or ``"np"``, the raw samples (``"pil"`` raises).
            return_dict: return an ``ImagePipelineOutput`` / :class:`SampleOutput` rather
                than the tuple ``(images,)`` / ``(samples,)``.
            class_labels: int64 ``(B,)`` labels for class-conditional models.
            latents: the initial state at ``t = 0``, used as is (already scaled by
                ``path.prior_std``), instead of drawing noise.
        """
        model, scheduler = self.model, self.scheduler
        image = is_image_model(model) if latents is None else latents.ndim == 4
        output_type = self._check_output_type(output_type, image)
        path = self.path
        x = self._initial_noise(model, batch_size, generator, latents, path.prior_std)
        cond = {} if class_labels is None else {"class_labels": class_labels.to(x.device)}
        runner = getattr(self, "_runner", None) or model
        velocity = VelocityField(runner, path, getattr(model, "prediction", "velocity"), cond)
        autocast_dtype = getattr(self, "_autocast_dtype", None)
        scale = scheduler.config.num_train_timesteps
        if scheduler.config.prediction != velocity.prediction:  # where the grid may start
            scheduler.register_to_config(prediction=velocity.prediction)
        scheduler.set_timesteps(num_inference_steps, device=x.device)
        for ts in self.progress_bar(scheduler.timesteps):
            t = from_diffusers_flow(ts.to(torch.float64), num_train_timesteps=scale).t
            with torch.autocast(
                x.device.type,
                dtype=autocast_dtype or torch.bfloat16,
                enabled=autocast_dtype is not None,
            ):
                v = velocity(x, t.to(x.dtype).expand(x.shape[0])).to(x.dtype)
            model_output = to_diffusers_flow(t, v, num_train_timesteps=scale).model_output
            x = scheduler.step(model_output, ts, x).prev_sample

        self.maybe_free_model_hooks()
        return self._output(x, image, output_type, return_dict)
