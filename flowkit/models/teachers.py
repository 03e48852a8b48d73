"""Pretrained diffusers models (DDPM / DDIM / flow matching) as flowkit fields: the edge
conversion for loaded diffusers teachers.

:func:`load_diffusers_teacher` reads a diffusers pipeline directory (``model_index.json``) or a
folder with the model and its scheduler, and returns a :class:`Teacher`: a field
``teacher(x, t, class_labels=None)`` in flowkit's time (0 = noise, 1 = data) with

- ``teacher.path``: the affine path the field lives on: :func:`flowkit.paths.discrete.discrete_vp`
  of the scheduler's ``alphas_cumprod`` for ``DDPMScheduler`` / ``DDIMScheduler`` (DDIM's
  ``set_alpha_to_one`` decides ``abar`` at ``t = 1``), the rectified path for
  ``FlowMatchEulerDiscreteScheduler``;
- ``teacher.prediction``: ``"epsilon"`` (diffusers ``epsilon``), ``"data"`` (diffusers ``sample``)
  or ``"velocity"`` (flow matching). A ``v_prediction`` model's output, diffusers'
  ``v = alpha eps - sigma x_data``, is turned into epsilon inside the field
  (``eps = alpha v + sigma x_t``, using ``alpha^2 + sigma^2 = 1``), so such a teacher reports
  ``"epsilon"``.

A DDPM model is called at the (snapped) timestep ``tau = T (1 - t) - 1``; a flow-matching
model at ``timestep = T (1 - t)`` and its output ``-v`` is flipped, both through
:mod:`flowkit.paths.diffusers_flow`. The scheduler's ``clip_sample`` / ``thresholding`` are not
applied (they are not part of the ODE), and a flow-matching scheduler's ``shift`` is a choice of
grid (:func:`flow_grid`), not of path.

Latent models: when the pipeline has a ``vae`` the teacher's field works on latents;
:meth:`Teacher.decode` maps sampled latents to images (``vae.decode(z / scaling_factor +
shift_factor)``) as a separate step.

Sampling a DDPM teacher with DDIM (eta = 0) exactly as diffusers' ``DDIMScheduler`` does::

    grid = ddim_grid(teacher, 10, spacing="leading")
    x = sample_ode(teacher, noise, grid=grid, method="ddim", path=teacher.path,
                   prediction=teacher.prediction).x

Pass ``path=teacher.path`` to the solver: ``sample_ode`` reads ``field.prediction`` by itself but
defaults to the rectified path.

Weights are read from safetensors only (never unpickled).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from flowkit.files import read_json_object
from flowkit.models.field_utils import broadcast_time
from flowkit.paths import AffinePath, check_prediction, rectified
from flowkit.paths.diffusers_flow import from_diffusers_flow, to_diffusers_flow
from flowkit.paths.discrete import DiscreteVPPath, discrete_vp

__all__ = ["SUPPORTED_SCHEDULERS", "Teacher", "ddim_grid", "flow_grid", "load_diffusers_teacher"]

DISCRETE_SCHEDULERS = ("DDPMScheduler", "DDIMScheduler")
FLOW_SCHEDULERS = ("FlowMatchEulerDiscreteScheduler",)
SUPPORTED_SCHEDULERS = DISCRETE_SCHEDULERS + FLOW_SCHEDULERS
_PREDICTIONS = {"epsilon": "epsilon", "sample": "data", "v_prediction": "epsilon"}
_MODEL_KEYS = ("unet", "transformer", "prior", "model")
_WEIGHTS = "diffusion_pytorch_model.safetensors"


class Teacher(nn.Module):
    """A loaded diffusers model as a flowkit field ``teacher(x, t, class_labels=None, **kw)``.

    Attributes:
        model: the diffusers model (called as ``model(x, timestep, ...)``, output ``.sample``).
        path: the :class:`~flowkit.paths.AffinePath` the field lives on.
        prediction: ``"epsilon"``, ``"data"`` or ``"velocity"``.
        kind: ``"discrete"`` (DDPM / DDIM) or ``"flow"`` (flow matching).
        model_prediction: the scheduler's own ``prediction_type`` (``"flow"`` for flow matching).
        num_train_timesteps: the scheduler's ``T``.
        scheduler_config: the scheduler's config (a dict).
        vae: the pipeline's autoencoder, or None.
    """

    def __init__(
        self,
        model: nn.Module,
        path: AffinePath,
        prediction: str,
        kind: str,
        model_prediction: str,
        num_train_timesteps: int,
        scheduler_config: dict | None = None,
        vae: nn.Module | None = None,
    ) -> None:
        super().__init__()
        self.model = model
        self.vae = vae
        self.path = path
        self.prediction = check_prediction(prediction)
        self.kind = kind
        self.model_prediction = model_prediction
        self.num_train_timesteps = num_train_timesteps
        self.scheduler_config = dict(scheduler_config or {})

    def timestep(self, t: Tensor) -> Tensor:
        """The diffusers timestep the model is called with at flowkit times ``t`` ``(B,)``."""
        if self.kind == "flow":
            return to_diffusers_flow(t, num_train_timesteps=self.num_train_timesteps).timestep
        return self.path.timestep_of(t)

    def forward(
        self, x: Tensor, t: Tensor | float, class_labels: Tensor | None = None, **kw: Any
    ) -> Tensor:
        """The prediction (``self.prediction``) at ``x`` ``(B, ...)`` and times ``t``."""
        t = broadcast_time(t, x)
        timestep = self.timestep(t)
        if class_labels is not None:
            kw["class_labels"] = class_labels
        out = self.model(x, timestep, **kw)
        out = out if isinstance(out, Tensor) else out.sample
        if out.shape[1] == 2 * x.shape[1] and out.shape[1:] != x.shape[1:]:
            out = out[:, : x.shape[1]]  # learned variance: keep the mean prediction
        if self.kind == "flow":
            return from_diffusers_flow(
                timestep, out, num_train_timesteps=self.num_train_timesteps
            ).velocity
        if self.model_prediction == "v_prediction":
            alpha, sigma, _, _ = self.path.coefficients(t.to(torch.float64))
            shape = (-1,) + (1,) * (x.dim() - 1)
            alpha = alpha.reshape(shape).to(out.dtype)
            sigma = sigma.reshape(shape).to(out.dtype)
            return alpha * out + sigma * x
        return out

    @torch.no_grad()
    def decode(self, latents: Tensor) -> Tensor:
        """Latents -> images through the pipeline's VAE: ``vae.decode(z / scale + shift)``."""
        if self.vae is None:
            raise ValueError("this teacher has no vae: its samples are already images")
        config = self.vae.config
        scale = getattr(config, "scaling_factor", None) or 1.0
        shift = getattr(config, "shift_factor", None) or 0.0
        return self.vae.decode(latents / scale + shift).sample


def ddim_grid(
    source: Teacher | DiscreteVPPath | Any,
    num_inference_steps: int | None = None,
    spacing: str = "leading",
    steps_offset: int = 0,
) -> list[float]:
    """Ascending flowkit times of DDIM's timesteps, then ``1.0``: the grid on which
    ``sample_ode(method="ddim")`` reproduces ``DDIMScheduler`` (eta = 0).

    ``source`` is a :class:`Teacher` or :class:`DiscreteVPPath` (then the timesteps follow
    ``DDIMScheduler.set_timesteps`` with ``spacing`` ``"leading"`` (plus ``steps_offset``) or
    ``"trailing"``), or a diffusers scheduler after ``set_timesteps`` (its ``.timesteps`` are
    used as they are). diffusers steps from ``tau`` to ``tau - T // num_inference_steps``;
    the grid matches it exactly when consecutive timesteps are that far apart (``T`` divisible
    by the number of steps; not for ``"linspace"`` spacing).
    """
    path = source.path if isinstance(source, Teacher) else source
    if isinstance(path, DiscreteVPPath):
        size = path.num_train_timesteps
        if num_inference_steps is None or not 1 <= num_inference_steps <= size:
            raise ValueError(
                f"num_inference_steps must be in [1, {size}], got {num_inference_steps}"
            )
        if spacing == "leading":
            ratio = size // num_inference_steps
            timesteps = [i * ratio + steps_offset for i in range(num_inference_steps)][::-1]
        elif spacing == "trailing":
            ratio = size / num_inference_steps
            timesteps, value = [], float(size)
            while value > 0:
                timesteps.append(int(round(value)) - 1)
                value -= ratio
        else:
            raise ValueError(f"spacing must be 'leading' or 'trailing', got {spacing!r}")
    elif hasattr(source, "timesteps") and hasattr(source, "config"):
        if getattr(source, "num_inference_steps", None) is None:
            raise ValueError(f"call {type(source).__name__}.set_timesteps before ddim_grid")
        size = source.config.num_train_timesteps
        timesteps = [int(tau) for tau in source.timesteps]
    else:
        raise TypeError(
            f"ddim_grid needs a Teacher, a DiscreteVPPath or a DDIM scheduler, got "
            f"{type(source).__name__}"
        )
    return [1 - (tau + 1) / size for tau in timesteps] + [1.0]


def flow_grid(scheduler: Any) -> list[float]:
    """Ascending flowkit times ``t = 1 - sigma`` of a ``FlowMatchEulerDiscreteScheduler`` after
    ``set_timesteps`` (its shift included): ``sample_ode(method="euler", grid=...)`` then
    takes diffusers' Euler steps."""
    sigmas = getattr(scheduler, "sigmas", None)
    if sigmas is None:
        raise ValueError(f"{type(scheduler).__name__} has no sigmas; call set_timesteps first")
    return [float(from_diffusers_flow(sigma=float(s)).t) for s in sigmas]


# ---------------------------------------------------------------------------- loading


def _diffusers_class(name: Any, base: type, where: Path) -> type:
    import diffusers

    cls = getattr(diffusers, name, None) if isinstance(name, str) else None
    if not (isinstance(cls, type) and issubclass(cls, base)):
        raise ValueError(f"{str(where)!r} names class {name!r}, not a diffusers {base.__name__}")
    return cls


def _check_weights(folder: Path) -> None:
    from flowkit.models.weights import check_safetensors

    index = folder / f"{_WEIGHTS}.index.json"
    if index.is_file():
        files = sorted(set(read_json_object(index).get("weight_map", {}).values()))
    else:
        files = [_WEIGHTS]
    for name in files:
        check_safetensors(folder / name)


def _load_model(folder: Path, class_name: Any = None) -> nn.Module:
    from diffusers.models.modeling_utils import ModelMixin

    if not folder.is_dir():
        raise FileNotFoundError(f"model directory {str(folder)!r} does not exist")
    config_file = folder / "config.json"
    config = read_json_object(config_file)
    cls = _diffusers_class(class_name or config.get("_class_name"), ModelMixin, config_file)
    _check_weights(folder)
    model = cls.from_pretrained(folder, use_safetensors=True, local_files_only=True)
    return model.eval().requires_grad_(False)


def _scheduler_file(root: Path) -> Path:
    for candidate in (root / "scheduler" / "scheduler_config.json", root / "scheduler_config.json"):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(
        f"{str(root)!r} has no scheduler/scheduler_config.json or scheduler_config.json"
    )


def _teacher_path(scheduler_file: Path) -> tuple[Any, AffinePath, str, str]:
    from diffusers import SchedulerMixin

    config = read_json_object(scheduler_file)
    name = config.get("_class_name")
    if name not in SUPPORTED_SCHEDULERS:
        raise ValueError(
            f"{str(scheduler_file)!r} names scheduler {name!r}, which flowkit cannot load as a "
            f"teacher; supported: {list(SUPPORTED_SCHEDULERS)}"
        )
    scheduler = _diffusers_class(name, SchedulerMixin, scheduler_file).from_config(config)
    if name in FLOW_SCHEDULERS:
        return scheduler, rectified(), "velocity", "flow"
    prediction_type = scheduler.config.prediction_type
    if prediction_type not in _PREDICTIONS:
        raise ValueError(
            f"{str(scheduler_file)!r}: {name} prediction_type {prediction_type!r} is not "
            f"supported; expected one of {list(_PREDICTIONS)}"
        )
    final = 1.0
    if name == "DDIMScheduler" and not scheduler.config.set_alpha_to_one:
        final = float(scheduler.alphas_cumprod[0])
    path = discrete_vp(scheduler.alphas_cumprod, final_alpha_cumprod=final)
    return scheduler, path, _PREDICTIONS[prediction_type], prediction_type


def load_diffusers_teacher(path: str | os.PathLike, subfolder: str | None = None) -> Teacher:
    """Load a diffusers model and its scheduler as a flowkit :class:`Teacher`.

    Args:
        path: a diffusers pipeline directory (``model_index.json`` with a model component such
            as ``unet`` / ``transformer``, a ``scheduler`` and optionally a ``vae``), or a
            folder holding the model (in ``subfolder``, ``unet/``, ``transformer/`` or the folder
            itself) and its scheduler (``scheduler/scheduler_config.json`` or
            ``scheduler_config.json``).
        subfolder: the model's component folder, when it is not found by name.

    Raises:
        FileNotFoundError: a missing directory, config or safetensors weights file (named).
        ValueError: an unsupported scheduler class or prediction type, a class that is not a
            diffusers model, or a corrupt config / weights file (named).
    """
    root = Path(path)
    if not root.is_dir():
        raise FileNotFoundError(f"teacher directory {str(root)!r} does not exist")
    index_file = root / "model_index.json"
    vae = None
    if index_file.is_file():
        index = read_json_object(index_file)
        keys = [subfolder] if subfolder else [k for k in _MODEL_KEYS if k in index]
        if not keys or keys[0] not in index:
            raise ValueError(
                f"{str(index_file)!r} has no model component {subfolder or _MODEL_KEYS!r}"
            )
        entry = index[keys[0]]
        if not (isinstance(entry, list) and len(entry) == 2 and entry[0] == "diffusers"):
            raise ValueError(f"{str(index_file)!r}: component {keys[0]!r} is not a diffusers model")
        model = _load_model(root / keys[0], entry[1])
        if isinstance(index.get("vae"), list) and index["vae"][1] is not None:
            vae = _load_model(root / "vae", index["vae"][1])
    else:
        names = [subfolder] if subfolder else ["unet", "transformer", "."]
        folders = [root / n for n in names if (root / n / "config.json").is_file()]
        if not folders:
            raise FileNotFoundError(
                f"{str(root)!r} has no model_index.json and no model config.json in {names}"
            )
        model = _load_model(folders[0])
    scheduler, teacher_path, prediction, model_prediction = _teacher_path(_scheduler_file(root))
    return Teacher(
        model,
        teacher_path,
        prediction,
        "flow" if model_prediction == "flow" else "discrete",
        model_prediction,
        int(scheduler.config.num_train_timesteps),
        dict(scheduler.config),
        vae,
    )
