"""The grid, timestep and state bookkeeping shared by flowkit's flow schedulers."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from diffusers.configuration_utils import ConfigMixin
from diffusers.schedulers.scheduling_utils import SchedulerMixin
from torch import Tensor

from flowkit.pipelines.convention import from_diffusers_flow, to_diffusers_flow
from flowkit.solvers.grids import time_grid


class FlowSchedulerBase(SchedulerMixin, ConfigMixin):
    """Grid, step counting and forward process shared by the Euler and Heun schedulers."""

    order = 1
    init_noise_sigma = 1.0
    _compatibles: list[str] = []

    @staticmethod
    def _check_recorded(prediction: str, path: str, path_kwargs: dict | None) -> None:
        """Validate the config entries kept for pipelines (``step()`` does not read them)."""
        from flowkit.paths import check_prediction, get_path

        check_prediction(prediction)
        get_path(path, **(path_kwargs or {}))  # unknown names and parameters raise here

    def _setup(
        self,
        num_train_timesteps: int,
        grid: str | Sequence[float],
        grid_options: dict | None,
    ) -> None:
        if isinstance(num_train_timesteps, bool) or not (
            isinstance(num_train_timesteps, int) and num_train_timesteps > 0
        ):
            raise ValueError(
                f"num_train_timesteps must be a positive int, got {num_train_timesteps!r}"
            )
        if isinstance(grid, str):
            time_grid(grid, 2, **(grid_options or {}))  # unknown names and options raise here
        else:
            if grid_options:
                raise ValueError(f"grid_options apply to named grids only, got {grid_options!r}")
            times = self._checked_grid(time_grid(grid, 0))
            self.register_to_config(grid=times.tolist())  # plain floats for the JSON config
        self.timesteps: Tensor | None = None
        self.sigmas: Tensor | None = None
        self.num_inference_steps: int | None = None
        self._sigma_values: list[float] = []
        self._step_index: int | None = None
        self._begin_index: int | None = None
        # set_timesteps() is called once per pipeline call: grids are built once per
        # (num_inference_steps, device); the config cannot change after __init__
        self._built: dict[tuple, tuple[int, Tensor, Tensor, list[float]]] = {}
        self._reset_state()

    # -- grid -------------------------------------------------------------------------------

    @staticmethod
    def _checked_grid(times: Tensor) -> Tensor:
        if float(times[0]) < 0 or float(times[-1]) != 1.0:
            raise ValueError(
                "a scheduler grid must lie in [0, 1] and end at t = 1 (sigma = 0), got times "
                f"{times.tolist()}"
            )
        return times

    def _grid(self, num_inference_steps: int | None, sigmas: Sequence[float] | None) -> Tensor:
        """The float64 times ``t`` (ascending, ending at 1) of the step grid."""
        if sigmas is not None:
            levels = torch.as_tensor(sigmas, dtype=torch.float64).flatten()
            if levels.numel() < 1:
                raise ValueError("sigmas must hold at least one noise level")
            if num_inference_steps is not None and num_inference_steps != levels.numel():
                raise ValueError(
                    f"num_inference_steps={num_inference_steps} does not match the "
                    f"{levels.numel()} sigmas given"
                )
            if not bool(levels[-1] > 0):
                raise ValueError(
                    "sigmas must not include the terminal 0: the scheduler appends it, as "
                    f"diffusers does; got {levels.tolist()}"
                )
            levels = torch.cat([levels, levels.new_zeros(1)])
            times = from_diffusers_flow(sigma=levels).t
            if not bool((times[1:] > times[:-1]).all()) or float(levels[0]) > 1:
                raise ValueError(f"sigmas must decrease from at most 1, got {sigmas!r}")
            return times
        grid = self.config.grid
        if not isinstance(grid, str):
            times = self._checked_grid(time_grid(grid, 0))
            if num_inference_steps is not None and num_inference_steps != times.numel() - 1:
                raise ValueError(
                    f"num_inference_steps={num_inference_steps} does not match the configured "
                    f"grid of {times.numel() - 1} steps; pass None to use it"
                )
            return times
        if isinstance(num_inference_steps, bool) or not isinstance(num_inference_steps, int):
            raise ValueError(
                f"num_inference_steps must be a positive int (or pass sigmas=), got "
                f"{num_inference_steps!r}"
            )
        # raises on steps < 1
        return time_grid(grid, num_inference_steps, **(self.config.grid_options or {}))

    def _call_sigmas(self, sigma: Tensor) -> Tensor:
        """The sigma of every model call, given the ``(K + 1,)`` grid of noise levels."""
        return sigma[:-1]

    def set_timesteps(
        self,
        num_inference_steps: int | None = None,
        device: str | torch.device | None = None,
        sigmas: Sequence[float] | Tensor | None = None,
    ) -> None:
        """Build ``timesteps`` (descending, one per model call) and ``sigmas`` (their noise
        levels followed by a trailing 0) for a loop of ``num_inference_steps`` steps.

        Args:
            num_inference_steps: the number of steps on the configured grid; with an explicit
                grid in the config or with ``sigmas`` it may be omitted.
            device: where ``timesteps`` and ``sigmas`` live.
            sigmas: explicit decreasing noise levels, one per step, in ``(0, 1]``; the terminal
                0 is appended (as in diffusers' ``set_timesteps(sigmas=...)``).

        Raises:
            ValueError: a missing or non-positive step count, a count that disagrees with the
                grid or ``sigmas``, sigmas that do not decrease or that include the final 0.
        """
        key = (num_inference_steps, str(device))
        cacheable = sigmas is None and (
            num_inference_steps is None or type(num_inference_steps) is int
        )
        built = self._built.get(key) if cacheable else None
        if built is None:
            built = self._build(num_inference_steps, device, sigmas)
            if cacheable:
                self._built[key] = built
        steps, timesteps, values, self._sigma_values = built
        self.num_inference_steps = steps
        # copies, so that a caller editing them cannot change the cached grid
        self.timesteps, self.sigmas = timesteps.clone(), values.clone()
        self._step_index = None
        self._begin_index = None
        self._reset_state()

    def _build(
        self,
        num_inference_steps: int | None,
        device: str | torch.device | None,
        sigmas: Sequence[float] | Tensor | None,
    ) -> tuple[int, Tensor, Tensor, list[float]]:
        times = self._grid(num_inference_steps, sigmas)
        grid = to_diffusers_flow(times, num_train_timesteps=self.config.num_train_timesteps)
        call_sigmas = self._call_sigmas(grid.sigma)
        values = torch.cat([call_sigmas, call_sigmas.new_zeros(1)])
        timesteps = self.config.num_train_timesteps * call_sigmas
        return (
            times.numel() - 1,
            timesteps.to(device=device, dtype=torch.float32),
            values.to(device=device, dtype=torch.float32),
            values.tolist(),
        )

    # -- step counting (as in diffusers) ----------------------------------------------------

    @property
    def step_index(self) -> int | None:
        """The index of the next ``step()`` call in ``timesteps`` (None before the first)."""
        return self._step_index

    @property
    def begin_index(self) -> int | None:
        """The index of the first step, when a pipeline set it (img2img)."""
        return self._begin_index

    def set_begin_index(self, begin_index: int = 0) -> None:
        """Start the next loop at ``timesteps[begin_index]`` (set by img2img pipelines)."""
        self._begin_index = begin_index

    def index_for_timestep(self, timestep: float | Tensor) -> int:
        """The index of ``timestep`` in ``timesteps``; of a repeated one (Heun), the second,
        which starts a step, as in diffusers."""
        self._check_ready()
        if isinstance(timestep, Tensor):
            timestep = timestep.to(self.timesteps.device)
        indices = (self.timesteps == timestep).nonzero()
        if len(indices) == 0:
            raise ValueError(
                f"timestep {float(timestep)} is not one of this scheduler's timesteps "
                f"{self.timesteps.tolist()}"
            )
        return int(indices[1 if len(indices) > 1 else 0])

    def _check_ready(self) -> None:
        if self.timesteps is None:
            raise RuntimeError(f"call {type(self).__name__}.set_timesteps() before sampling")

    def _next_index(self, timestep: float | Tensor) -> int:
        if isinstance(timestep, int) or (
            isinstance(timestep, Tensor) and not timestep.is_floating_point()
        ):
            raise ValueError(
                "step() takes one of scheduler.timesteps as timestep, not an integer index "
                f"(as from enumerate); got {timestep!r}"
            )
        index = self._step_index
        if index is None:
            self._check_ready()
            index = self._begin_index
            if index is None:
                index = self.index_for_timestep(timestep)
        return index

    def _advance(self, index: int) -> None:
        index += 1
        if index >= len(self.timesteps):  # the next loop locates its first timestep again
            self._step_index = None
            self._reset_state()
        else:
            self._step_index = index

    def _reset_state(self) -> None:
        pass

    # -- the rest of diffusers' scheduler interface -----------------------------------------

    def scale_model_input(self, sample: Tensor, timestep: float | Tensor | None = None) -> Tensor:
        """Flow models take the sample as is."""
        return sample

    def scale_noise(self, sample: Tensor, timestep: float | Tensor, noise: Tensor) -> Tensor:
        """The forward process: ``(1 - sigma) sample + sigma noise`` at ``timestep``.

        ``timestep`` is a number, a 0-d tensor or one per sample ``(B,)``; it need not be on
        the inference grid.
        """
        from flowkit.paths import rectified

        if noise is None or noise.shape != sample.shape:
            raise ValueError(
                f"noise must have the sample's shape {tuple(sample.shape)}, got "
                f"{None if noise is None else tuple(noise.shape)}"
            )
        t = from_diffusers_flow(
            torch.as_tensor(timestep, device=sample.device, dtype=sample.dtype),
            num_train_timesteps=self.config.num_train_timesteps,
        ).t
        t = t.expand(sample.shape[0]) if t.dim() == 0 else t
        return rectified().sample(x0=noise, x1=sample, t=t).xt

    def __len__(self) -> int:
        return self.config.num_train_timesteps
