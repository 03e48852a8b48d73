"""Adapters that turn any diffusers model into a flowkit field."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import Tensor, nn

from flowkit.models.field_utils import broadcast_time, check_prediction

__all__ = ["DiffusersField"]


class DiffusersField(nn.Module):
    """Field ``(x, t, class_labels, **kw) -> x.shape`` around a diffusers-style model.

    Calls ``model(x, timestep, class_labels=..., **kw)`` with
    ``timestep = timestep_fn(t)`` if given, else ``t * time_scale``, and unwraps the output's
    ``.sample`` (a plain tensor output is returned as is). ``class_labels`` is passed only
    when given, so models without that argument work unconditionally.

    The timestep map is where a model's own time convention enters: a UNet trained by
    flowkit uses ``999 t``; a DDPM model (data at timestep 0) needs a ``timestep_fn`` such as
    ``lambda t: 999 * (1 - t)`` together with the matching ``prediction`` ("epsilon"), and
    the path conversions in ``flowkit.paths`` do the rest.

    Args:
        model: module called as ``model(sample, timestep, ...)``.
        time_scale: factor from ``t`` in ``[0, 1]`` to the model's timestep.
        prediction: what the output means: "velocity", "epsilon", "data" or
            "score" ("x0": a deprecated alias of "data").
        timestep_fn: map from times ``(B,)`` to timesteps ``(B,)``; overrides ``time_scale``.
    """

    def __init__(
        self,
        model: nn.Module,
        time_scale: float = 999.0,
        prediction: str = "velocity",
        timestep_fn: Callable[[Tensor], Tensor] | None = None,
    ):
        super().__init__()
        self.model = model
        self.time_scale = time_scale
        self.prediction = check_prediction(prediction)
        self.timestep_fn = timestep_fn

    def forward(
        self, x: Tensor, t: Tensor | float, class_labels: Tensor | None = None, **kw: Any
    ) -> Tensor:
        """Evaluate the field at ``x`` ``(B, ...)`` and times ``t`` ``(B,)`` or a number."""
        t = broadcast_time(t, x)
        timestep = self.timestep_fn(t) if self.timestep_fn is not None else t * self.time_scale
        if class_labels is not None:
            kw["class_labels"] = class_labels
        out = self.model(x, timestep, **kw)
        if isinstance(out, Tensor):
            return out
        if hasattr(out, "sample"):
            return out.sample
        raise TypeError(
            f"{type(self.model).__name__} returned {type(out).__name__}; expected a tensor or an "
            "output with a .sample tensor"
        )
