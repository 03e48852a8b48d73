"""diffusers' flow-matching configuration on flowkit's schedulers.

flowkit's :class:`~flowkit.pipelines.FlowEulerScheduler` and
:class:`~flowkit.pipelines.FlowHeunScheduler` take every config key of diffusers'
``FlowMatchEulerDiscreteScheduler`` (and so of ``FlowMatchHeunDiscreteScheduler``) besides their
own (``grid``, ``grid_options``, ``prediction``, ``path``, ``path_kwargs``, ``final_euler``):

- ``shift`` (static, SD3), or ``use_dynamic_shifting`` with ``time_shift_type``
  (``set_timesteps(mu=...)``, Flux; ``base_shift``, ``max_shift``, ``base_image_seq_len``,
  ``max_image_seq_len`` are what pipelines compute ``mu`` from), ``shift_terminal``,
  ``use_karras_sigmas`` / ``use_exponential_sigmas`` / ``use_beta_sigmas`` and
  ``stochastic_sampling`` (Euler); the math is in :mod:`flowkit.pipelines.time_shift`;
- ``invert_sigmas`` (Mochi's inverted schedule) is recorded but only ``False`` is supported.

``from_config`` works across the two families, both ways, and keeps the settings: diffusers
reads ``shift`` and the dynamic-shifting keys from a flowkit config (flowkit's own keys ride
along in its config), and a config written by a diffusers flow-matching scheduler (no
``grid``) gives ``grid="diffusers"``, diffusers' own spacing, so that the flowkit scheduler
takes the same noise levels as the one it replaces.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Mapping

from torch import Tensor

from flowkit.pipelines import time_shift as shifts

__all__ = ["DIFFUSERS_FLOW_SCHEDULERS", "FlowMatchConfigMixin"]

DIFFUSERS_FLOW_SCHEDULERS = ("FlowMatchEulerDiscreteScheduler", "FlowMatchHeunDiscreteScheduler")
FLOWKIT_FLOW_SCHEDULERS = ("FlowEulerScheduler", "FlowHeunScheduler")
# flowkit's own keys (and the resolved shift), kept out of ``_use_default_values`` so that they
# travel, as diffusers' "hidden" config entries, through a diffusers scheduler and back
_ALWAYS_RECORDED = ("grid", "grid_options", "prediction", "path", "path_kwargs", "shift")
_SPACINGS = ("use_karras_sigmas", "use_exponential_sigmas", "use_beta_sigmas")


def _number(name: str, value: object, low: float, high: float = math.inf) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low < value < high:
        bounds = f"in ({low}, {high})" if high < math.inf else f"> {low}"
        raise ValueError(f"{name} must be a number {bounds}, got {value!r}")
    return float(value)


def _from_diffusers(config: object, kwargs: dict) -> bool:
    """Whether ``config`` was written by a diffusers flow-matching scheduler: no ``grid``, and
    a ``shift`` (in memory) or the class name (saved)."""
    if not isinstance(config, Mapping) or "grid" in config or "grid" in kwargs:
        return False
    return "shift" in config or config.get("_class_name") in DIFFUSERS_FLOW_SCHEDULERS


class FlowMatchConfigMixin:
    """Shift, noise-level options and cross-family ``from_config`` (see the module docstring).

    After ``_setup_shift()``: ``shift`` (settable with :meth:`set_shift`), and ``sigma_min`` /
    ``sigma_max``, the ends of diffusers' training schedule, as diffusers sets them.
    """

    _compatibles = [*DIFFUSERS_FLOW_SCHEDULERS, *FLOWKIT_FLOW_SCHEDULERS]

    @classmethod
    def _get_compatibles(cls) -> list[type]:
        """The classes of ``_compatibles``, from diffusers or flowkit (diffusers' own lookup
        searches the ``diffusers`` namespace only)."""
        diffusers = importlib.import_module("diffusers")
        flowkit = importlib.import_module("flowkit.pipelines.schedulers")
        names = dict.fromkeys([cls.__name__, *cls._compatibles])
        return [getattr(flowkit, n, None) or getattr(diffusers, n) for n in names]

    @classmethod
    def from_config(cls, config=None, return_unused_kwargs: bool = False, **kwargs):
        """diffusers' ``from_config``; a diffusers flow-matching config (no ``grid``; a
        ``shift``, or the class name that a saved one records) gets ``grid="diffusers"`` and
        ``final_euler=True``: the noise levels and steps of the scheduler it came from."""
        if _from_diffusers(config, kwargs):
            config = {**config, "grid": "diffusers", "grid_options": None}
            if "final_euler" in cls._get_init_keys(cls):  # diffusers' Heun ends with Euler
                config = {"final_euler": True, **config}
        return super().from_config(config, return_unused_kwargs=return_unused_kwargs, **kwargs)

    def _setup_shift(self, shift: float | None, stochastic: bool = True) -> None:
        """Check the diffusers keys of the config and resolve ``shift``: None is 1, or the
        ``"shifted"`` grid's own ``grid_options["shift"]`` (that grid is the uniform grid under
        this static shift, so diffusers reads the shift from the config too)."""
        config = self.config
        if config.grid == "shifted":
            own = (config.grid_options or {}).get("shift", 3.0)
            if shift is not None and shift != own:
                raise ValueError(
                    f"shift={shift!r} disagrees with grid='shifted' and its shift {own!r}; the "
                    "shifted grid is the uniform grid with shift: give one of them"
                )
            if config.use_dynamic_shifting:
                raise ValueError(
                    "grid='shifted' is a static shift; with use_dynamic_shifting=True use "
                    "grid='uniform' or grid='diffusers'"
                )
            shift = own
        shift = _number("shift", 1.0 if shift is None else shift, 0.0)
        for name in ("use_dynamic_shifting", "invert_sigmas", "stochastic_sampling", *_SPACINGS):
            if not isinstance(config[name], bool):
                raise ValueError(f"{name} must be a bool, got {config[name]!r}")
        if sum(config[name] for name in _SPACINGS) > 1:
            raise ValueError(f"only one of {list(_SPACINGS)} can be True")
        if config.invert_sigmas:
            raise ValueError(
                f"invert_sigmas=True (Mochi's inverted schedule) is not supported by "
                f"{type(self).__name__}; use diffusers' FlowMatchEulerDiscreteScheduler"
            )
        if config.stochastic_sampling and not stochastic:
            raise ValueError(
                f"stochastic_sampling=True is an Euler option; {type(self).__name__} does not "
                "support it (use FlowEulerScheduler)"
            )
        if config.time_shift_type not in ("exponential", "linear"):
            raise ValueError(
                f"time_shift_type must be 'exponential' or 'linear', got {config.time_shift_type!r}"
            )
        if config.shift_terminal:  # None and 0 are off, as in diffusers
            _number("shift_terminal", config.shift_terminal, 0.0, 1.0)
        self.register_to_config(shift=shift)
        unset = [k for k in config.get("_use_default_values", []) if k not in _ALWAYS_RECORDED]
        self.register_to_config(_use_default_values=unset)
        self._shift = shift
        self.sigma_min, self.sigma_max = shifts.diffusers_sigma_range(
            config.num_train_timesteps, shift, config.use_dynamic_shifting
        )

    @property
    def shift(self) -> float:
        """The static shift ``set_timesteps()`` applies (unused with dynamic shifting)."""
        return self._shift

    def set_shift(self, shift: float) -> None:
        """Change the static shift for the next ``set_timesteps()`` (as diffusers; the config
        keeps the value the scheduler was built with)."""
        self._shift = _number("shift", shift, 0.0)

    def time_shift(self, mu: float, sigma: float, t: Tensor) -> Tensor:
        """diffusers' dynamic shift of the levels ``t`` (see
        :func:`~flowkit.pipelines.time_shift.dynamic_shift`; ``sigma`` is its exponent)."""
        return shifts.dynamic_shift(t, mu, self.config.time_shift_type, sigma)

    def _shape(self, levels: Tensor, mu: float | None) -> Tensor:
        """The steps' start levels ``(K,)`` after the shift, ``shift_terminal`` and spacing
        options, in diffusers' order."""
        config = self.config
        if config.use_dynamic_shifting:
            if mu is None:
                raise ValueError(
                    "set_timesteps() needs mu= when use_dynamic_shifting=True (diffusers "
                    "pipelines compute it from the token count, see "
                    "flowkit.pipelines.time_shift.resolution_mu)"
                )
            levels = self.time_shift(float(mu), 1.0, levels)
        elif self._shift != 1.0:
            levels = shifts.static_shift(levels, self._shift)
        if config.shift_terminal:
            levels = shifts.stretch_to_terminal(levels, config.shift_terminal)
        if config.use_karras_sigmas:
            levels = shifts.karras_levels(levels)
        elif config.use_exponential_sigmas:
            levels = shifts.exponential_levels(levels)
        elif config.use_beta_sigmas:
            levels = shifts.beta_levels(levels)
        return levels
