"""diffusers schedulers that sample flowkit's ODE solvers on flowkit's time grids.

A diffusers-style loop over these schedulers::

    scheduler.set_timesteps(steps)
    for ts in scheduler.timesteps:
        x = scheduler.step(model(x, ts), ts, x).prev_sample

reproduces ``flowkit.solvers.sample_ode(field, x, nfe=order * steps, method=...)`` for the
field that the diffusers-convention ``model`` wraps (``model(x, ts) = -field(x, 1 - ts/1000)``,
see :mod:`flowkit.pipelines.convention`): same grid and steps, so the same result up to
float rounding (of the time in the model call, and of the fused update below).

The schedulers speak diffusers' convention (descending ``timesteps = 1000 * sigma``, model
output ``noise - x1``) and take their grid from :func:`flowkit.solvers.time_grid` (``t``
ascending, ``sigma = 1 - t`` through :func:`~flowkit.pipelines.convention.to_diffusers_flow`).
In ``sigma`` the Euler step ``x + (sigma_next - sigma) * model_output`` is the flowkit step
``x + (t_next - t) * v`` with both signs flipped. It is computed as one fused
``torch.add(x, model_output, alpha=dt)`` (one kernel and one allocation instead of two; the
result can differ from ``x + dt * model_output`` in the last bit).

Differences from diffusers' flow-matching schedulers, on purpose:
    - the default grid is uniform in ``t`` and ends at ``sigma = 0``; diffusers'
      ``set_timesteps(n)`` uses ``linspace(1, 1/num_train_timesteps, n)`` and then appends 0,
      so its last step is ``0.001 -> 0`` (pass ``sigmas=`` to either to share a grid);
    - :class:`FlowHeunScheduler` by default takes a Heun step on every interval, the last one
      included (its corrector calls the model at ``sigma = 0``, where a velocity model is well
      defined), as ``sample_ode(method="heun")`` does; diffusers'
      ``FlowMatchHeunDiscreteScheduler`` finishes with an Euler step (``final_euler=True``).
      ``num_inference_steps`` counts steps, so a loop makes ``2 * num_inference_steps`` model
      calls (one fewer with ``final_euler``);
    - the state stays in the sample's dtype (no float32 upcast), as in ``sample_ode``;
    - no shift parameter, dynamic shifting or stochastic sampling: the grid belongs to the
      solvers (SD3's shift is ``grid="shifted", grid_options={"shift": 3.0}``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.schedulers.scheduling_utils import SchedulerMixin, SchedulerOutput
from torch import Tensor

from flowkit.pipelines.convention import from_diffusers_flow, to_diffusers_flow
from flowkit.solvers.grids import time_grid

__all__ = ["FlowEulerScheduler", "FlowHeunScheduler", "SchedulerOutput"]


class _FlowScheduler(SchedulerMixin, ConfigMixin):
    """Grid, step counting and forward process shared by the Euler and Heun schedulers."""

    order = 1
    init_noise_sigma = 1.0
    _compatibles: list[str] = []

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


class FlowEulerScheduler(_FlowScheduler):
    """Euler on flowkit's time grid, in diffusers' flow-matching convention.

    One model call per step: ``x_next = x + (sigma_next - sigma) * model_output``. A loop
    over ``set_timesteps(n)`` reproduces ``sample_ode(field, x, nfe=n, method="euler")`` and,
    on the same ``sigmas``, diffusers' ``FlowMatchEulerDiscreteScheduler`` (without shift).
    """

    order = 1

    @register_to_config
    def __init__(
        self,
        num_train_timesteps: int = 1000,
        grid: str | Sequence[float] = "uniform",
        grid_options: dict | None = None,
    ) -> None:
        """
        Args:
            num_train_timesteps: the scale of the timesteps (``timestep = scale * sigma``).
            grid: a named grid of :func:`flowkit.solvers.time_grid` (``"uniform"`` in ``t``,
                ``"shifted"`` (SD3), ``"edm"``, ``"cosine"``), or an explicit increasing list
                of times ``t`` (0 = noise) that ends at 1, used as is by ``set_timesteps()``.
            grid_options: the named grid's options, e.g. ``{"shift": 3.0}``.
        """
        self._setup(num_train_timesteps, grid, grid_options)

    def step(
        self,
        model_output: Tensor,
        timestep: float | Tensor,
        sample: Tensor,
        return_dict: bool = True,
    ) -> SchedulerOutput | tuple[Tensor]:
        """One Euler step from ``timestep`` to the next noise level.

        Args:
            model_output: the model's flow prediction ``noise - x1`` at ``(sample, timestep)``.
            timestep: the current element of ``timesteps`` (locates the first step only;
                later calls are counted, as in diffusers).
            sample: the current state.
            return_dict: return a ``SchedulerOutput`` (else the tuple ``(prev_sample,)``).
        """
        index = self._next_index(timestep)
        sigmas = self._sigma_values
        prev_sample = torch.add(sample, model_output, alpha=sigmas[index + 1] - sigmas[index])
        self._advance(index)
        if not return_dict:
            return (prev_sample,)
        return SchedulerOutput(prev_sample=prev_sample)


class FlowHeunScheduler(_FlowScheduler):
    """Heun (explicit trapezoid) on flowkit's time grid, in diffusers' convention.

    Two model calls per step, with diffusers' ``FlowMatchHeunDiscreteScheduler`` pattern:
    ``timesteps`` is ``[s0, s1, s1, s2, s2, ..., s_{K-1}, s_{K-1}, 0] * 1000`` — a predictor
    call at the start of each step and a corrector call at its end (the step's end is the next
    step's start, hence the repeats). The predictor returns the Euler point
    ``x + (s1 - s0) d0``; the corrector returns ``x + (s1 - s0) (d0 + d1) / 2``. A loop over
    ``set_timesteps(n)`` reproduces ``sample_ode(field, x, nfe=2 n, method="heun")``. With
    ``final_euler=True`` the final ``0`` call is dropped and the last step is Euler: the
    layout and arithmetic of diffusers' scheduler, and of
    ``sample_ode(field, x, nfe=2 n - 1, method="heun", final_euler=True)``.

    ``sigmas`` holds the noise level of every call followed by a trailing 0.
    """

    order = 2

    @register_to_config
    def __init__(
        self,
        num_train_timesteps: int = 1000,
        grid: str | Sequence[float] = "uniform",
        grid_options: dict | None = None,
        final_euler: bool = False,
    ) -> None:
        """
        Args:
            num_train_timesteps, grid, grid_options: as in :class:`FlowEulerScheduler`.
            final_euler: take the last step with Euler (no corrector call at ``sigma = 0``),
                as EDM and diffusers' ``FlowMatchHeunDiscreteScheduler`` do; ``n`` steps then
                cost ``2 n - 1`` calls, as ``sample_ode(method="heun", final_euler=True)``.
        """
        if not isinstance(final_euler, bool):
            raise ValueError(f"final_euler must be a bool, got {final_euler!r}")
        self._setup(num_train_timesteps, grid, grid_options)

    def _call_sigmas(self, sigma: Tensor) -> Tensor:
        repeated = [sigma[:1], sigma[1:-1].repeat_interleave(2)]
        return torch.cat(repeated if self.config.final_euler else [*repeated, sigma[-1:]])

    def _reset_state(self) -> None:
        self._derivative: Tensor | None = None
        self._sample: Tensor | None = None

    @property
    def state_in_first_order(self) -> bool:
        """True when the next ``step()`` is a predictor (the start of a step)."""
        return self._derivative is None

    def set_begin_index(self, begin_index: int = 0) -> None:
        if begin_index % 2:
            raise ValueError(
                f"begin_index must start a Heun step (an even index), got {begin_index}"
            )
        super().set_begin_index(begin_index)

    def step(
        self,
        model_output: Tensor,
        timestep: float | Tensor,
        sample: Tensor,
        return_dict: bool = True,
    ) -> SchedulerOutput | tuple[Tensor]:
        """The predictor or corrector half of a Heun step (see the class docstring).

        Args:
            model_output: the model's flow prediction ``noise - x1`` at ``(sample, timestep)``.
            timestep: the current element of ``timesteps``.
            sample: the current state (after a predictor call: the Euler point it returned).
            return_dict: return a ``SchedulerOutput`` (else the tuple ``(prev_sample,)``).
        """
        index = self._next_index(timestep)
        sigmas = self._sigma_values
        if index % 2 == 0:  # predictor: Euler to the end of the step
            self._derivative = model_output
            self._sample = sample
            prev_sample = torch.add(sample, model_output, alpha=sigmas[index + 1] - sigmas[index])
        else:  # corrector: trapezoid from the step's start
            if self._derivative is None:
                raise RuntimeError(
                    "a Heun corrector step came without its predictor; loop over "
                    "scheduler.timesteps from an even index"
                )
            dt = sigmas[index] - sigmas[index - 1]
            prev_sample = torch.add(self._sample, self._derivative + model_output, alpha=dt / 2)
            self._reset_state()
        self._advance(index)
        if not return_dict:
            return (prev_sample,)
        return SchedulerOutput(prev_sample=prev_sample)
