"""The one edge conversion between flowkit's time convention and diffusers' flow matching.

flowkit: time ``t`` runs from 0 (noise ``x0``) to 1 (data ``x1``), ``x_t = t x1 + (1 - t) x0``
and a field predicts the velocity ``v = x1 - x0``.

diffusers (``FlowMatchEulerDiscreteScheduler`` and the SD3 / Flux family): the noise level
``sigma = 1 - t`` runs from 1 (noise) to 0 (data), the model is called with
``timestep = num_train_timesteps * sigma``, ``x_sigma = (1 - sigma) x1 + sigma noise`` and the
model predicts the "flow" ``noise - x1 = -v``; the Euler step is
``x + (sigma_next - sigma) * model_output``.

Every conversion between the two goes through :func:`to_diffusers_flow` and its inverse
:func:`from_diffusers_flow`. Both work on python numbers and tensors alike, keep the input's
dtype and device, and never synchronise with the device (no value checks on tensors), so that
they can sit inside a sampling loop.
"""

from __future__ import annotations

from typing import NamedTuple

from torch import Tensor

__all__ = ["DiffusersFlow", "FlowkitFlow", "from_diffusers_flow", "to_diffusers_flow"]

Number = float | int


class DiffusersFlow(NamedTuple):
    """A time (and optionally a prediction) in diffusers' flow-matching convention.

    Attributes:
        sigma: the noise level ``1 - t`` (1 = noise, 0 = data).
        timestep: ``num_train_timesteps * sigma``, what a diffusers model is called with.
        model_output: the flow ``noise - x1 = -v``, or None when no velocity was given.
    """

    sigma: Tensor | Number
    timestep: Tensor | Number
    model_output: Tensor | None


class FlowkitFlow(NamedTuple):
    """A time (and optionally a prediction) in flowkit's convention.

    Attributes:
        t: the time, 0 = noise, 1 = data.
        velocity: ``v = x1 - x0``, or None when no model output was given.
    """

    t: Tensor | Number
    velocity: Tensor | None


def _check_scale(num_train_timesteps: Number) -> None:
    if isinstance(num_train_timesteps, bool) or not num_train_timesteps > 0:
        raise ValueError(f"num_train_timesteps must be positive, got {num_train_timesteps!r}")


def to_diffusers_flow(
    t: Tensor | Number, velocity: Tensor | None = None, num_train_timesteps: Number = 1000
) -> DiffusersFlow:
    """flowkit ``(t, v)`` -> diffusers ``(sigma, timestep, model_output)``.

    ``sigma = 1 - t``, ``timestep = num_train_timesteps * sigma``, ``model_output = -v``.

    Args:
        t: a time or a tensor of times in ``[0, 1]`` (0 = noise).
        velocity: the velocity ``x1 - x0`` predicted at ``t``, or None to convert the time only.
        num_train_timesteps: the scale of diffusers' timesteps (1000 in every flow-matching
            scheduler and model).

    Example:
        ``to_diffusers_flow(0.25, v)`` gives ``sigma = 0.75``, ``timestep = 750.0`` and
        ``model_output = -v``.
    """
    _check_scale(num_train_timesteps)
    sigma = 1 - t
    return DiffusersFlow(
        sigma=sigma,
        timestep=num_train_timesteps * sigma,
        model_output=None if velocity is None else -velocity,
    )


def from_diffusers_flow(
    timestep: Tensor | Number | None = None,
    model_output: Tensor | None = None,
    *,
    sigma: Tensor | Number | None = None,
    num_train_timesteps: Number = 1000,
) -> FlowkitFlow:
    """diffusers ``(timestep or sigma, model_output)`` -> flowkit ``(t, v)``; the inverse of
    :func:`to_diffusers_flow`.

    ``t = 1 - timestep / num_train_timesteps`` (or ``1 - sigma``), ``v = -model_output``.

    Args:
        timestep: diffusers' timestep (``num_train_timesteps * sigma``); integer tensors are
            divided as floats. Give either ``timestep`` or ``sigma``.
        model_output: the model's flow prediction ``noise - x1``, or None.
        sigma: the noise level, instead of ``timestep``.
        num_train_timesteps: the scale of diffusers' timesteps.

    Raises:
        ValueError: neither or both of ``timestep`` and ``sigma``; a non-positive scale.
    """
    _check_scale(num_train_timesteps)
    if (timestep is None) == (sigma is None):
        raise ValueError(
            "from_diffusers_flow needs exactly one of timestep= or sigma=, got "
            f"timestep={timestep!r}, sigma={sigma!r}"
        )
    if sigma is None:
        sigma = timestep / num_train_timesteps
    return FlowkitFlow(t=1 - sigma, velocity=None if model_output is None else -model_output)
