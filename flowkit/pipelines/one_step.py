"""``OneStepPipeline``: samples from a one-step generator, ``x = G(z)``, in one network call.

A one-step generator is the one-step Euler of a (distilled, reflowed) flow: for a flowkit
field ``v`` on the rectified path, ``G(z) = z + v(z, 0)`` (``t`` from 0 to 1 in one step of
size 1). That is how this pipeline reads its ``generator`` component today:

- ``prediction == "velocity"``: ``x = z + v(z, t=0)``;
- ``prediction == "data"``: the data prediction at ``t = 0`` (the same step written through
  :meth:`flowkit.paths.AffinePath.convert`, exact on the rectified path);
- epsilon or score predictions are rejected (their velocity is singular at ``t = 0``).

So a distilled generator saved as a flowkit field (``UNetField`` / ``MLPField`` with
``prediction="velocity"``) and the 1-NFE sample of a rectified flow give the same output as
``RectifiedFlowPipeline(...)(num_inference_steps=1)`` with a ``FlowEulerScheduler``.
"""

from __future__ import annotations

import torch
from diffusers.pipelines.pipeline_utils import DiffusionPipeline, ImagePipelineOutput
from torch import Tensor

from flowkit.paths import check_prediction, rectified
from flowkit.pipelines.rectified_flow import FlowkitPipelineMixin, SampleOutput, is_image_model
from flowkit.solvers.field import VelocityField

__all__ = ["OneStepPipeline"]

_ONE_STEP_PREDICTIONS = ("velocity", "data")


class OneStepPipeline(FlowkitPipelineMixin, DiffusionPipeline):
    """One network call from noise ``z ~ N(0, I)`` to a sample (see the module docstring).

    Args:
        generator: a flowkit field with ``prediction`` ``"velocity"`` or ``"data"``, used as
            ``x = z + v(z, 0)``. (The component is named ``generator``, as in GAN and
            distillation code; the ``generator=`` argument of ``__call__`` is the
            ``torch.Generator`` of the noise, as in every diffusers pipeline.)
    """

    model_cpu_offload_seq = "generator"

    def __init__(self, generator: torch.nn.Module) -> None:
        super().__init__()
        prediction = check_prediction(getattr(generator, "prediction", "velocity"))
        if prediction not in _ONE_STEP_PREDICTIONS:
            raise ValueError(
                f"OneStepPipeline reads its generator as x = z + v(z, 0) and needs a "
                f"{' or '.join(_ONE_STEP_PREDICTIONS)} prediction, got {prediction!r}"
            )
        self.register_modules(generator=generator)

    @torch.no_grad()
    def __call__(
        self,
        batch_size: int = 1,
        num_inference_steps: int = 1,
        generator: torch.Generator | list[torch.Generator] | None = None,
        output_type: str | None = None,
        return_dict: bool = True,
        class_labels: Tensor | None = None,
        latents: Tensor | None = None,
    ) -> ImagePipelineOutput | SampleOutput | tuple:
        """Draw ``batch_size`` samples with one network call.

        Arguments as in :meth:`RectifiedFlowPipeline.__call__`; ``num_inference_steps`` is
        accepted for drop-in use and must be 1. ``latents`` is the noise ``z``.
        """
        if num_inference_steps != 1:
            raise ValueError(
                f"OneStepPipeline takes exactly one step, got num_inference_steps="
                f"{num_inference_steps!r}"
            )
        network = self.generator
        image = is_image_model(network) if latents is None else latents.ndim == 4
        output_type = self._check_output_type(output_type, image)
        z = self._initial_noise(network, batch_size, generator, latents, 1.0)
        cond = {} if class_labels is None else {"class_labels": class_labels.to(z.device)}
        prediction = getattr(network, "prediction", "velocity")
        velocity = VelocityField(network, rectified(), prediction, cond)
        x = z + velocity(z, z.new_zeros(z.shape[0]))
        self.maybe_free_model_hooks()
        return self._output(x, image, output_type, return_dict)
