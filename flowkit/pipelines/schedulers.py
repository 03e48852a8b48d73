"""diffusers schedulers that sample flowkit's ODE solvers on flowkit's time grids.

A diffusers-style loop over these schedulers::

    scheduler.set_timesteps(steps)
    for ts in scheduler.timesteps:
        x = scheduler.step(model(x, ts), ts, x).prev_sample

reproduces ``flowkit.solvers.sample_ode(field, x, nfe=order * steps, method=...)`` for the
field that the diffusers-convention ``model`` wraps (``model(x, ts) = -field(x, 1 - ts/1000)``,
see :mod:`flowkit.paths.diffusers_flow`): same grid and steps, so the same result up to
float rounding (of the time in the model call, and of the fused update below).

The schedulers speak diffusers' convention (descending ``timesteps = 1000 * sigma``, model
output ``noise - x1``) and take their grid from :func:`flowkit.solvers.time_grid` (``t``
ascending, ``sigma = 1 - t`` through :func:`~flowkit.paths.diffusers_flow.to_diffusers_flow`).
In ``sigma`` the Euler step ``x + (sigma_next - sigma) * model_output`` is the flowkit step
``x + (t_next - t) * v`` with both signs flipped. It is computed as one fused
``torch.add(x, model_output, alpha=dt)`` (one kernel and one allocation instead of two; the
result can differ from ``x + dt * model_output`` in the last bit).

They are drop-in replacements for diffusers' ``FlowMatchEulerDiscreteScheduler`` /
``FlowMatchHeunDiscreteScheduler`` in diffusers pipelines: the same ``set_timesteps``
(``sigmas``, ``mu``, ``timesteps``), ``step`` (``generator``, churn, ``per_token_timesteps``),
``scale_noise``, ``shift`` / ``set_shift`` / ``sigma_min`` / ``sigma_max`` and config keys
(:mod:`flowkit.pipelines.scheduler_config`); ``Scheduler.from_config(other.config)`` works
across the two families and keeps the settings. Differences, on purpose:

    - the default grid is uniform in ``t`` and ends at ``sigma = 0``; diffusers'
      ``set_timesteps(n)`` uses ``linspace(1, 1/num_train_timesteps, n)`` and then appends 0,
      so its last step is ``0.001 -> 0``. ``grid="diffusers"`` is diffusers' spacing, and the
      grid a config written by a diffusers scheduler gets (or pass ``sigmas=`` to both);
    - :class:`FlowHeunScheduler` by default takes a Heun step on every interval, the last one
      included (its corrector calls the model at ``sigma = 0``, where a velocity model is well
      defined), as ``sample_ode(method="heun")`` does; diffusers'
      ``FlowMatchHeunDiscreteScheduler`` finishes with an Euler step (``final_euler=True``).
      ``num_inference_steps`` counts steps, so a loop makes ``2 * num_inference_steps`` model
      calls (one fewer with ``final_euler``);
    - the state stays in the sample's dtype (no float32 upcast), as in ``sample_ode``;
    - ``timesteps`` / ``sigmas`` exist only after ``set_timesteps()`` (no training schedule),
      and a finished loop can run again without a new ``set_timesteps()``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from diffusers.configuration_utils import register_to_config

# SchedulerMixin is looked up in this module by diffusers' pipeline loading: model_index.json
# names the component ["flowkit.pipelines.schedulers", "FlowEulerScheduler"], and diffusers finds
# its loading methods through the base classes present in that module's namespace
from diffusers.schedulers.scheduling_utils import SchedulerMixin, SchedulerOutput  # noqa: F401
from diffusers.utils.torch_utils import randn_tensor
from torch import Tensor

from flowkit.pipelines.scheduler_base import FlowSchedulerBase

__all__ = ["FlowEulerScheduler", "FlowHeunScheduler", "SchedulerOutput"]

_NO_LIMIT = float("inf")


def _output(prev_sample: Tensor, return_dict: bool) -> SchedulerOutput | tuple[Tensor]:
    return SchedulerOutput(prev_sample=prev_sample) if return_dict else (prev_sample,)


class FlowEulerScheduler(FlowSchedulerBase):
    """Euler on flowkit's time grid, in diffusers' flow-matching convention.

    One model call per step: ``x_next = x + (sigma_next - sigma) * model_output``. A loop
    over ``set_timesteps(n)`` reproduces ``sample_ode(field, x, nfe=n, method="euler")`` and,
    on the same noise levels, diffusers' ``FlowMatchEulerDiscreteScheduler``.

    Args:
        num_train_timesteps: the scale of the timesteps (``timestep = scale * sigma``).
        grid: a named grid of :func:`flowkit.solvers.time_grid` (``"uniform"`` in ``t``,
            ``"shifted"`` (SD3: the uniform grid with ``shift``), ``"edm"``, ``"cosine"``),
            ``"diffusers"`` (diffusers' spacing), or an explicit increasing list of times
            ``t`` (0 = noise) that ends at 1, used as is by ``set_timesteps()``.
        grid_options: the named grid's options, e.g. ``{"shift": 3.0}``.
        prediction, path, path_kwargs: recorded for pipelines, not used by ``step()``
            (which always takes diffusers' flow ``-v``): what the paired model predicts
            and the affine path (``flowkit.paths.get_path(path, **path_kwargs)``) through
            which a pipeline converts its output to a velocity.
        shift, use_dynamic_shifting, base_shift, max_shift, base_image_seq_len,
            max_image_seq_len, invert_sigmas, shift_terminal, use_karras_sigmas,
            use_exponential_sigmas, use_beta_sigmas, time_shift_type, stochastic_sampling:
            diffusers' keys, with diffusers' meaning (:mod:`flowkit.pipelines.scheduler_config`;
            ``shift=None`` is 1, or the ``"shifted"`` grid's shift).
    """

    order = 1

    @register_to_config
    def __init__(
        self,
        num_train_timesteps: int = 1000,
        grid: str | Sequence[float] = "uniform",
        grid_options: dict | None = None,
        prediction: str = "velocity",
        path: str = "rectified",
        path_kwargs: dict | None = None,
        shift: float | None = None,
        use_dynamic_shifting: bool = False,
        base_shift: float | None = 0.5,
        max_shift: float | None = 1.15,
        base_image_seq_len: int = 256,
        max_image_seq_len: int = 4096,
        invert_sigmas: bool = False,
        shift_terminal: float | None = None,
        use_karras_sigmas: bool = False,
        use_exponential_sigmas: bool = False,
        use_beta_sigmas: bool = False,
        time_shift_type: str = "exponential",
        stochastic_sampling: bool = False,
    ) -> None:
        self._check_recorded(prediction, path, path_kwargs)
        self._setup(num_train_timesteps, grid, grid_options, shift)

    def step(
        self,
        model_output: Tensor,
        timestep: float | Tensor,
        sample: Tensor,
        s_churn: float = 0.0,
        s_tmin: float = 0.0,
        s_tmax: float = _NO_LIMIT,
        s_noise: float = 1.0,
        generator: torch.Generator | None = None,
        per_token_timesteps: Tensor | None = None,
        return_dict: bool = True,
    ) -> SchedulerOutput | tuple[Tensor]:
        """One Euler step from ``timestep`` to the next noise level.

        Args:
            model_output: the model's flow prediction ``noise - x1`` at ``(sample, timestep)``.
            timestep: the current element of ``timesteps`` (locates the first step only;
                later calls are counted, as in diffusers).
            sample: the current state.
            s_churn, s_tmin, s_tmax, s_noise: accepted and unused, as in diffusers' Euler.
            generator: the noise of ``stochastic_sampling``: then the step is
                ``(1 - sigma_next) x1_hat + sigma_next noise`` with ``x1_hat = x - sigma out``.
            per_token_timesteps: ``(B, T)`` timesteps of each token (LTX); each token steps
                from its own level to the next lower level of ``sigmas``, as in diffusers.
            return_dict: return a ``SchedulerOutput`` (else the tuple ``(prev_sample,)``).
        """
        index = self._next_index(timestep)
        sigma, sigma_next = self._sigma_values[index], self._sigma_values[index + 1]
        if per_token_timesteps is not None:
            token_sigmas = per_token_timesteps / self.config.num_train_timesteps
            grid = self.sigmas.to(token_sigmas.device)[:, None, None]
            lower = ((grid < token_sigmas[None] - 1e-6) * grid).max(dim=0).values
            prev_sample = sample + (token_sigmas - lower)[..., None] * model_output
        elif self.config.stochastic_sampling:
            data = sample - sigma * model_output
            noise = randn_tensor(
                sample.shape, generator=generator, device=sample.device, dtype=sample.dtype
            )
            prev_sample = (1.0 - sigma_next) * data + sigma_next * noise
        else:
            prev_sample = torch.add(sample, model_output, alpha=sigma_next - sigma)
        self._advance(index)
        return _output(prev_sample, return_dict)


class FlowHeunScheduler(FlowSchedulerBase):
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

    Args:
        final_euler: take the last step with Euler (no corrector call at ``sigma = 0``),
            as EDM and diffusers' ``FlowMatchHeunDiscreteScheduler`` do; ``n`` steps then
            cost ``2 n - 1`` calls, as ``sample_ode(method="heun", final_euler=True)``.
        the others: as in :class:`FlowEulerScheduler` (``stochastic_sampling`` must be False).
    """

    order = 2

    @register_to_config
    def __init__(
        self,
        num_train_timesteps: int = 1000,
        grid: str | Sequence[float] = "uniform",
        grid_options: dict | None = None,
        final_euler: bool = False,
        prediction: str = "velocity",
        path: str = "rectified",
        path_kwargs: dict | None = None,
        shift: float | None = None,
        use_dynamic_shifting: bool = False,
        base_shift: float | None = 0.5,
        max_shift: float | None = 1.15,
        base_image_seq_len: int = 256,
        max_image_seq_len: int = 4096,
        invert_sigmas: bool = False,
        shift_terminal: float | None = None,
        use_karras_sigmas: bool = False,
        use_exponential_sigmas: bool = False,
        use_beta_sigmas: bool = False,
        time_shift_type: str = "exponential",
        stochastic_sampling: bool = False,
    ) -> None:
        if not isinstance(final_euler, bool):
            raise ValueError(f"final_euler must be a bool, got {final_euler!r}")
        self._check_recorded(prediction, path, path_kwargs)
        self._setup(num_train_timesteps, grid, grid_options, shift, stochastic=False)

    def _call_sigmas(self, sigma: Tensor) -> Tensor:
        repeated = [sigma[:1], sigma[1:-1].repeat_interleave(2)]
        return torch.cat(repeated if self.config.final_euler else [*repeated, sigma[-1:]])

    def _reset_state(self) -> None:
        self._derivative: Tensor | None = None
        self._sample: Tensor | None = None
        self._dt: float | None = None

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
        s_churn: float = 0.0,
        s_tmin: float = 0.0,
        s_tmax: float = _NO_LIMIT,
        s_noise: float = 1.0,
        generator: torch.Generator | None = None,
        return_dict: bool = True,
    ) -> SchedulerOutput | tuple[Tensor]:
        """The predictor or corrector half of a Heun step (see the class docstring).

        Args:
            model_output: the model's flow prediction ``noise - x1`` at ``(sample, timestep)``.
            timestep: the current element of ``timesteps``.
            sample: the current state (after a predictor call: the Euler point it returned).
            s_churn, s_tmin, s_tmax, s_noise, generator: diffusers' churn: with
                ``gamma = min(s_churn / (len(sigmas) - 1), sqrt(2) - 1) > 0`` (for
                ``s_tmin <= sigma <= s_tmax``) a predictor first raises the level to
                ``sigma_hat = (1 + gamma) sigma`` by adding ``s_noise sqrt(sigma_hat^2 -
                sigma^2)`` noise from ``generator`` and steps from ``sigma_hat``, as diffusers.
            return_dict: return a ``SchedulerOutput`` (else the tuple ``(prev_sample,)``).
        """
        index = self._next_index(timestep)
        sigmas = self._sigma_values
        predictor = index % 2 == 0
        sigma = sigmas[index] if predictor else sigmas[index - 1]
        churn = min(s_churn / (len(sigmas) - 1), 2**0.5 - 1) if s_tmin <= sigma <= s_tmax else 0.0
        noise = None
        if churn > 0:  # drawn by the corrector too and unused there, as diffusers does
            noise = randn_tensor(
                model_output.shape,
                generator=generator,
                device=model_output.device,
                dtype=model_output.dtype,
            )
        if predictor:  # Euler to the end of the step
            sigma_hat, derivative = sigma, model_output
            if noise is not None:
                sigma_hat = sigma * (churn + 1)
                sample = sample + noise * s_noise * (sigma_hat**2 - sigma**2) ** 0.5
                derivative = model_output * (sigma / sigma_hat)
            self._derivative, self._sample = derivative, sample
            self._dt = sigmas[index + 1] - sigma_hat
            prev_sample = torch.add(sample, derivative, alpha=self._dt)
        else:  # corrector: trapezoid from the step's start
            if self._derivative is None:
                raise RuntimeError(
                    "a Heun corrector step came without its predictor; loop over "
                    "scheduler.timesteps from an even index"
                )
            prev_sample = torch.add(
                self._sample, self._derivative + model_output, alpha=self._dt / 2
            )
            self._reset_state()
        self._advance(index)
        return _output(prev_sample, return_dict)
