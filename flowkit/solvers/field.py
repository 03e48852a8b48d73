"""Wrapping a field for a solver: prediction conversion, conditioning, call counting."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from flowkit.paths import PATHS, AffinePath, check_prediction, get_path, rectified


class Evaluation:
    """One raw network output at ``(x, t)``, readable as any prediction type (converted
    lazily and cached)."""

    def __init__(self, path: AffinePath, prediction: str, out: Tensor, x: Tensor, t: Tensor):
        self.path, self.prediction, self.out, self.x, self.t = path, prediction, out, x, t
        self._cache: dict[str, Tensor] = {prediction: out}

    def as_(self, dst: str) -> Tensor:
        """The output converted to ``dst`` (``velocity``, ``epsilon``, ``data``, ``score``)."""
        dst = check_prediction(dst)
        if dst not in self._cache:
            self._cache[dst] = self.path.convert(self.out, self.x, self.t, self.prediction, dst)
        return self._cache[dst]

    @property
    def velocity(self) -> Tensor:
        return self.as_("velocity")

    @property
    def epsilon(self) -> Tensor:
        return self.as_("epsilon")

    @property
    def x0(self) -> Tensor:
        """The data (``x1``) prediction: the diffusion literature's "x0-prediction", EDM's ``D``."""
        return self.as_("data")

    @property
    def score(self) -> Tensor:
        return self.as_("score")


_MODULE_GETATTR = torch.nn.Module.__getattr__


def _attribute(obj: object, name: str, default: object = None) -> object:
    """``getattr(obj, name, default)``, without the exception ``torch.nn.Module.__getattr__``
    raises for a missing name (microseconds a sampler call): for a plain module the same
    lookup in its parameters, buffers and submodules, else ``getattr`` itself."""
    cls = type(obj)
    plain = cls.__getattribute__ is object.__getattribute__
    if not plain or getattr(cls, "__getattr__", None) is not _MODULE_GETATTR:
        return getattr(obj, name, default)
    try:
        return object.__getattribute__(obj, name)
    except AttributeError:
        pass
    state = obj.__dict__
    for store in ("_parameters", "_buffers", "_modules"):
        found = state.get(store)
        if found is not None and name in found:
            return found[name]
    return default


def recorded_path(field: Callable[..., Tensor]) -> AffinePath:
    """The path a field says it lives on: its own ``path`` attribute (a diffusers teacher's
    discrete VP path), or the ``path`` / ``path_kwargs`` its config records (every saved
    flowkit model), else the rectified path (a plain function)."""
    own = vars(field).get("path") if hasattr(field, "__dict__") else None
    if isinstance(own, AffinePath):
        return own
    config = _attribute(field, "config")
    name = config.get("path") if isinstance(config, dict) else None
    if isinstance(name, str) and name in PATHS:
        return get_path(name, **(config.get("path_kwargs") or {}))
    return rectified()


class VelocityField:
    """``field(x, t, **cond)`` seen as a velocity ``v(x, t)``, counting its calls.

    ``t`` may be a python float (broadcast to ``(B,)``) or a ``(B,)`` tensor. The path is
    the one given, else the field's own ``path`` attribute, else the rectified path. A field
    predicting epsilon, x0 or score is turned into a velocity through ``path.convert``
    (epsilon and score only from :attr:`start_time` on, where ``alpha`` is not near 0);
    :meth:`evaluate` makes one call and returns an :class:`Evaluation` readable as any
    prediction type, so a sampler that needs, say, velocity and score pays one call.

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
        self.path = path or recorded_path(field)
        own = prediction or _attribute(field, "prediction", "velocity")
        self.prediction = check_prediction(own)  # type: ignore[arg-type]
        self.cond = cond or {}
        self.calls = 0
        self._shape_checked = False
        self._start_time: float | None = None

    @property
    def start_time(self) -> float:
        """The earliest time this field converts to a velocity: ``path.t_min(prediction)``
        (0 for velocity and data predictions; ``alpha(t) >= 1e-3`` for epsilon and score,
        e.g. ``t = 1e-3`` on the rectified path). The default start of the samplers."""
        if self._start_time is None:
            self._start_time = self.path.t_min(self.prediction)
        return self._start_time

    def check_start(self, t0: float | Tensor, caller: str = "sample_ode") -> None:
        """Raise if a run that starts at ``t0`` (a float, or per-sample ``(B,)`` times) would
        read the field where its prediction does not convert to a velocity (``t0`` below
        :attr:`start_time`, up to 1e-12)."""
        earliest = self.start_time
        if isinstance(t0, (int, float)):  # no tensor round trip (the sampler's fixed cost)
            t0 = float(t0)
        else:
            t0 = float(torch.as_tensor(t0, dtype=torch.float64).min())
        if t0 < earliest - 1e-12:
            alpha = float(self.path.coefficients(torch.tensor([t0], dtype=torch.float64))[0])
            raise ValueError(
                f"{caller} cannot start a field predicting {self.prediction!r} at t0={t0} on "
                f"the {self.path.name} path: converting it to a velocity divides by "
                f"alpha(t0)={alpha:.3g} (x1 = (x_t - sigma * epsilon) / alpha), which multiplies "
                f"any error in the prediction by sigma / alpha. Start at "
                f"t0 >= {earliest:.6g} (path.t_min({self.prediction!r}), the default when t0 "
                f"is not given), or sample a velocity or data prediction"
            )

    def times(self, x: Tensor, t: float | Tensor) -> Tensor:
        """``t`` as a ``(B,)`` tensor on ``x``'s device and dtype."""
        if not isinstance(t, Tensor):
            return x.new_full((x.shape[0],), t)
        return t.expand(x.shape[0]) if t.dim() == 0 else t

    def evaluate(self, x: Tensor, t: float | Tensor) -> Evaluation:
        """One counted field evaluation at ``(x, t)``."""
        t_batch = self.times(x, t)
        out = self.field(x, t_batch, **self.cond)
        self.calls += 1
        if not self._shape_checked:
            self._check_shape(out, x)
        return Evaluation(self.path, self.prediction, out, x, t_batch)

    def _check_shape(self, out: Tensor, x: Tensor) -> None:
        """Once per field: shapes do not change along a trajectory."""
        if out.shape != x.shape:
            raise ValueError(
                f"the field returned shape {tuple(out.shape)} for an input of shape "
                f"{tuple(x.shape)}; a field must return the shape of x"
            )
        self._shape_checked = True

    def predict(self, x: Tensor, t: float | Tensor, *targets: str) -> tuple[Tensor, ...]:
        """One field evaluation, returned as each of ``targets`` (prediction types)."""
        evaluation = self.evaluate(x, t)
        return tuple(evaluation.as_(target) for target in targets)

    def __call__(self, x: Tensor, t: float | Tensor) -> Tensor:
        if self.prediction == "velocity":  # the hot path of a sampler: no Evaluation
            out = self.field(x, self.times(x, t), **self.cond)
            self.calls += 1
            if not self._shape_checked:  # folded into the first step
                self._check_shape(out, x)
            return out
        return self.predict(x, t, "velocity")[0]
