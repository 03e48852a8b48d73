"""The step counting, ``set_timesteps()`` and forward process shared by flowkit's flow
schedulers (the noise levels are built in :mod:`flowkit.pipelines.scheduler_levels`)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from diffusers.configuration_utils import ConfigMixin
from diffusers.schedulers.scheduling_utils import SchedulerMixin
from torch import Tensor

from flowkit.paths.diffusers_flow import from_diffusers_flow
from flowkit.pipelines.scheduler_levels import FlowLevelsMixin, Levels


class FlowSchedulerBase(FlowLevelsMixin, SchedulerMixin, ConfigMixin):
    """Noise levels, step counting and forward process shared by the Euler and Heun schedulers."""

    order = 1
    init_noise_sigma = 1.0

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
        shift: float | None,
        stochastic: bool = True,
    ) -> None:
        if isinstance(num_train_timesteps, bool) or not (
            isinstance(num_train_timesteps, int) and num_train_timesteps > 0
        ):
            raise ValueError(
                f"num_train_timesteps must be a positive int, got {num_train_timesteps!r}"
            )
        self._check_grid_config(grid, grid_options)
        self._setup_shift(shift, stochastic)
        self.timesteps: Tensor | None = None
        self.sigmas: Tensor | None = None
        self.num_inference_steps: int | None = None
        self._sigma_values: list[float] = []
        self._step_index: int | None = None
        self._begin_index: int | None = None
        # set_timesteps() is called once per pipeline call: the levels are built once per
        # (num_inference_steps, device, shift, mu)
        self._built: dict[tuple, tuple[int, Tensor, Tensor, list[float]]] = {}
        self._reset_state()

    def set_timesteps(
        self,
        num_inference_steps: int | None = None,
        device: str | torch.device | None = None,
        sigmas: Levels | None = None,
        mu: float | None = None,
        timesteps: Levels | None = None,
    ) -> None:
        """Build ``timesteps`` (descending, one per model call) and ``sigmas`` (their noise
        levels followed by a trailing 0) for a loop of ``num_inference_steps`` steps, with
        diffusers' ``FlowMatchEulerDiscreteScheduler.set_timesteps`` signature.

        Args:
            num_inference_steps: the number of steps on the configured grid; with an explicit
                grid in the config, ``sigmas`` or ``timesteps`` it may be omitted.
            device: where ``timesteps`` and ``sigmas`` live.
            sigmas: explicit decreasing noise levels, one per step, in ``(0, 1]``; the terminal
                0 is appended and the configured shift applied, as in diffusers.
            mu: the dynamic shift (needed with ``use_dynamic_shifting``, ignored without).
            timesteps: explicit decreasing timesteps, one per step, used as given; without
                ``sigmas`` the levels are ``timesteps / num_train_timesteps`` (then shifted).

        Raises:
            ValueError: a missing or non-positive step count, a count that disagrees with the
                grid, ``sigmas`` or ``timesteps``; levels that do not decrease or that include
                the final 0; no ``mu`` with dynamic shifting.
        """
        # as diffusers, only dynamic shifting reads mu; a plain float keys the cache
        mu = float(mu) if mu is not None and self.config.use_dynamic_shifting else None
        if sigmas is not None and timesteps is not None and len(sigmas) != len(timesteps):
            raise ValueError(
                f"sigmas and timesteps must have the same length, got {len(sigmas)} and "
                f"{len(timesteps)}"
            )
        key = (num_inference_steps, str(device), self._shift, mu)
        plain_count = num_inference_steps is None or type(num_inference_steps) is int
        cacheable = plain_count and sigmas is None and timesteps is None
        built = self._built.get(key) if cacheable else None
        if built is None:
            built = self._build(num_inference_steps, device, sigmas, mu, timesteps)
            if cacheable:
                self._built[key] = built
        steps, calls, values, self._sigma_values = built
        self.num_inference_steps = steps
        # copies, so that a caller editing them cannot change the cached grid
        self.timesteps, self.sigmas = calls.clone(), values.clone()
        self._step_index = None
        self._begin_index = None
        self._reset_state()

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

    def index_for_timestep(
        self, timestep: float | Tensor, schedule_timesteps: Tensor | None = None
    ) -> int:
        """The index of ``timestep`` in ``schedule_timesteps`` (default ``timesteps``); of a
        repeated one (Heun), the second, which starts a step, as in diffusers."""
        if schedule_timesteps is None:
            self._check_ready()
            schedule_timesteps = self.timesteps
        if isinstance(timestep, Tensor):
            timestep = timestep.to(schedule_timesteps.device)
        indices = (schedule_timesteps == timestep).nonzero()
        if len(indices) == 0:
            raise ValueError(
                f"timestep {float(timestep)} is not one of this scheduler's timesteps "
                f"{schedule_timesteps.tolist()}"
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

    def scale_noise(
        self, sample: Tensor, timestep: float | Tensor, noise: Tensor | None = None
    ) -> Tensor:
        """The forward process: ``(1 - sigma) sample + sigma noise`` at ``sigma =
        timestep / num_train_timesteps``, in the sample's dtype.

        ``timestep`` is a number, a 0-d or one-element tensor (broadcast over the batch, as in
        diffusers' img2img pipelines) or one per sample ``(B,)``; it need not be on the
        inference grid. ``sample`` and ``noise``: ``(B, ...)``.
        """
        from flowkit.paths import rectified

        if noise is None or noise.shape != sample.shape:
            raise ValueError(
                f"noise must have the sample's shape {tuple(sample.shape)}, got "
                f"{None if noise is None else tuple(noise.shape)}"
            )
        batch = sample.shape[0]
        precision = torch.promote_types(sample.dtype, torch.float32)
        timestep = torch.as_tensor(timestep).to(device=sample.device, dtype=precision).flatten()
        if timestep.numel() not in (1, batch):
            raise ValueError(
                f"timestep must hold 1 or batch size {batch} values, got shape "
                f"{tuple(timestep.shape)}"
            )
        t = from_diffusers_flow(timestep, num_train_timesteps=self.config.num_train_timesteps).t
        noisy = rectified().sample(x0=noise, x1=sample, t=t.expand(batch)).xt
        return noisy.to(sample.dtype)

    def __len__(self) -> int:
        return self.config.num_train_timesteps
