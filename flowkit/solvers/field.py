"""Wrapping a field for a solver: prediction conversion, conditioning, call counting."""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor

from flowkit.paths import AffinePath, check_prediction, rectified


class VelocityField:
    """``field(x, t, **cond)`` seen as a velocity ``v(x, t)``, counting its calls.

    ``t`` may be a python float (broadcast to ``(B,)``) or a ``(B,)`` tensor. A field
    predicting epsilon, x0 or score is turned into a velocity through ``path.convert``;
    :meth:`predict` returns any other prediction types from the same single evaluation.

    Attributes:
        calls: how many times the underlying field was evaluated.
    """

    def __init__(
        self,
        field: Callable[..., Tensor],
        path: AffinePath | None = None,
        prediction: str | None = None,
        cond: dict | None = None,
    ) -> None:
        self.field = field
        self.path = path or rectified()
        self.prediction = check_prediction(prediction or getattr(field, "prediction", "velocity"))
        self.cond = cond or {}
        self.calls = 0
        self._shape_checked = False

    def times(self, x: Tensor, t: float | Tensor) -> Tensor:
        """``t`` as a ``(B,)`` tensor on ``x``'s device and dtype."""
        if not isinstance(t, Tensor):
            return x.new_full((x.shape[0],), t)
        return t.expand(x.shape[0]) if t.dim() == 0 else t

    def predict(self, x: Tensor, t: float | Tensor, *targets: str) -> tuple[Tensor, ...]:
        """One field evaluation, returned as each of ``targets`` (prediction types)."""
        t_batch = self.times(x, t)
        out = self.field(x, t_batch, **self.cond)
        self.calls += 1
        if not self._shape_checked:  # once: shapes do not change along a trajectory
            if out.shape != x.shape:
                raise ValueError(
                    f"the field returned shape {tuple(out.shape)} for an input of shape "
                    f"{tuple(x.shape)}; a field must return the shape of x"
                )
            self._shape_checked = True
        return tuple(
            out
            if target == self.prediction
            else self.path.convert(out, x, t_batch, self.prediction, target)
            for target in targets
        )

    def __call__(self, x: Tensor, t: float | Tensor) -> Tensor:
        if self.prediction == "velocity" and self._shape_checked:  # the hot path of a sampler
            self.calls += 1
            return self.field(x, self.times(x, t), **self.cond)
        return self.predict(x, t, "velocity")[0]
