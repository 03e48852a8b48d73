"""The noise levels of flowkit's flow schedulers, built by ``set_timesteps()`` in four stages:

1. the base levels, descending and ending at the terminal level ``1 - path.t_max`` (0 on
   the rectified and cosine paths, as in diffusers; ``1e-3`` on VP and sub-VP, ``1e-5`` on
   VE, where samplers stop short of the data end, so that the pipeline ends where
   ``sample_ode`` does): the configured grid (a named grid of
   :func:`flowkit.solvers.time_grid` in ``t`` from ``path.t_min(prediction)`` to
   ``path.t_max``, an explicit list of times (its end, ``t = 1``, read as ``t_max``), or
   ``"diffusers"``, diffusers' spacing ``linspace(sigma_max, sigma_min, K)`` then
   the terminal level), or the ``sigmas`` / ``timesteps / num_train_timesteps`` given to the
   call (the terminal level appended, as diffusers appends 0);
2. diffusers' shaping of the ``K`` step starts (:meth:`FlowMatchConfigMixin._shape`): the
   static ``shift`` or the dynamic one from ``mu``, ``shift_terminal``, karras / exponential /
   beta spacing (the identity with the default config);
3. the layout of the model calls (Heun repeats the inner levels); ``sigmas`` = the call
   levels followed by the terminal level;
4. ``timesteps = num_train_timesteps * sigmas[:-1]`` in float32 (as diffusers), or the
   ``timesteps`` given, as given.

The steps read the float64 levels (``_sigma_values``); ``sigmas`` is their float32 copy.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from flowkit.paths.diffusers_flow import to_diffusers_flow
from flowkit.pipelines.scheduler_config import FlowMatchConfigMixin
from flowkit.pipelines.time_shift import diffusers_default_levels
from flowkit.solvers.grids import GRIDS, time_grid

__all__ = ["SCHEDULER_GRIDS", "FlowLevelsMixin", "Levels"]

SCHEDULER_GRIDS = (*GRIDS, "diffusers")

Levels = Sequence[float] | Tensor


class FlowLevelsMixin(FlowMatchConfigMixin):
    """The grid, the given levels and their layout (see the module docstring)."""

    def _check_grid_config(self, grid: str | Sequence[float], grid_options: dict | None) -> None:
        """Validate the configured grid; an explicit one is recorded as plain floats."""
        if isinstance(grid, str):
            if grid not in SCHEDULER_GRIDS:
                raise ValueError(
                    f"unknown grid {grid!r}; expected one of {list(SCHEDULER_GRIDS)} or a list "
                    "of times"
                )
            if grid == "diffusers" and grid_options:
                raise ValueError(f"grid 'diffusers' takes no options, got {grid_options!r}")
            if grid != "diffusers":  # unknown options raise here
                time_grid(grid, 2, **(grid_options or {}))
        else:
            if grid_options:
                raise ValueError(f"grid_options apply to named grids only, got {grid_options!r}")
            times = self._checked_grid(time_grid(grid, 0))
            self.register_to_config(grid=times.tolist())  # plain floats for the JSON config

    @staticmethod
    def _checked_grid(times: Tensor) -> Tensor:
        if float(times[0]) < 0 or float(times[-1]) != 1.0:
            raise ValueError(
                "a scheduler grid must lie in [0, 1] and end at t = 1 (sigma = 0), got times "
                f"{times.tolist()}"
            )
        return times

    @staticmethod
    def _given_levels(num_inference_steps: int | None, sigmas: Levels, name: str) -> Tensor:
        levels = torch.as_tensor(sigmas, dtype=torch.float64).flatten().cpu()
        if levels.numel() < 1:
            raise ValueError(f"{name} must hold at least one noise level")
        if num_inference_steps is not None and num_inference_steps != levels.numel():
            raise ValueError(
                f"num_inference_steps={num_inference_steps} does not match the "
                f"{levels.numel()} {name} given"
            )
        if not bool(levels[-1] > 0):
            raise ValueError(
                f"{name} must not include the terminal 0: the scheduler appends it, as "
                f"diffusers does; got {levels.tolist()}"
            )
        if not bool((levels[1:] < levels[:-1]).all()) or float(levels[0]) > 1:
            raise ValueError(f"{name} must decrease from at most 1, got {levels.tolist()}")
        return torch.cat([levels, levels.new_zeros(1)])

    def _span(self) -> tuple[float, float]:
        """The times a named grid spans: from ``path.t_min(prediction)`` (0 unless an
        epsilon or score model would divide by ``alpha(0) = 0``) to ``path.t_max``, as
        ``sample_ode``'s defaults; ``(0, 1)`` without a recorded path."""
        from flowkit.paths import get_path

        if self.config.path is None:
            return 0.0, 1.0
        path = get_path(self.config.path, **(self.config.path_kwargs or {}))
        return path.t_min(self.config.prediction), path.t_max

    def _terminal(self) -> float:
        """The last noise level, ``1 - path.t_max`` (0 on the rectified path)."""
        return 1.0 - self._span()[1]

    def _levels(
        self, num_inference_steps: int | None, sigmas: Levels | None, timesteps: Levels | None
    ) -> Tensor:
        """The float64 base noise levels ``(K + 1,)``, descending, ending at 0."""
        scale = self.config.num_train_timesteps
        if sigmas is not None:
            return self._given_levels(num_inference_steps, sigmas, "sigmas")
        if timesteps is not None:
            given = torch.as_tensor(timesteps, dtype=torch.float64) / scale
            return self._given_levels(num_inference_steps, given, "timesteps / num_train_timesteps")
        grid = self.config.grid
        if not isinstance(grid, str):
            times = self._checked_grid(time_grid(grid, 0))
            if num_inference_steps is not None and num_inference_steps != times.numel() - 1:
                raise ValueError(
                    f"num_inference_steps={num_inference_steps} does not match the configured "
                    f"grid of {times.numel() - 1} steps; pass None to use it"
                )
        elif isinstance(num_inference_steps, bool) or not isinstance(num_inference_steps, int):
            raise ValueError(
                f"num_inference_steps must be a positive int (or pass sigmas=), got "
                f"{num_inference_steps!r}"
            )
        elif grid == "diffusers":
            if num_inference_steps < 1:
                raise ValueError(f"a grid needs at least 1 step, got steps={num_inference_steps}")
            levels = diffusers_default_levels(
                num_inference_steps, scale, self.sigma_min, self.sigma_max
            )
            return torch.cat([levels, levels.new_zeros(1)])
        else:  # the shifted grid is the uniform grid under the static shift of _shape()
            name = "uniform" if grid == "shifted" else grid
            options = {} if grid == "shifted" else self.config.grid_options or {}
            times = time_grid(name, num_inference_steps, *self._span(), **options)
        return to_diffusers_flow(times, num_train_timesteps=scale).sigma

    def _call_sigmas(self, sigma: Tensor) -> Tensor:
        """The level of every model call, given the ``(K + 1,)`` levels of the grid."""
        return sigma[:-1]

    def _build(
        self,
        num_inference_steps: int | None,
        device: str | torch.device | None,
        sigmas: Levels | None,
        mu: float | None,
        timesteps: Levels | None,
    ) -> tuple[int, Tensor, Tensor, list[float]]:
        base = self._levels(num_inference_steps, sigmas, timesteps)
        terminal = base.new_full((1,), self._terminal())
        base = torch.cat([base[:-1], terminal])
        levels = torch.cat([self._shape(base[:-1], mu), terminal])
        if not bool((levels[1:] < levels[:-1]).all()):
            raise ValueError(
                f"the shaped noise levels {levels.tolist()} do not decrease; check shift, "
                "mu, shift_terminal and the spacing options"
            )
        call_sigmas = self._call_sigmas(levels)
        values = torch.cat([call_sigmas, terminal])
        values32 = values.to(dtype=torch.float32)
        if timesteps is None:
            calls = values32[:-1] * self.config.num_train_timesteps
        else:
            given = torch.as_tensor(timesteps, dtype=torch.float32).flatten().cpu()
            calls = self._call_sigmas(torch.cat([given, given.new_full((1,), float(terminal))]))
        return base.numel() - 1, calls.to(device), values32.to(device), values.tolist()
