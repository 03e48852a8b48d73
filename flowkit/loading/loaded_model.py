"""``flowkit.load(source)``: the one loader of saved models, and the one way to sample them.

Every command, teacher, evaluation source and report loads through :func:`load` and samples
through :meth:`LoadedModel.sample`: sample ``i`` starts from the noise of ``(seed, i)``
(:func:`flowkit.solvers.seeded_noise`, times the path's prior std) and an SDE or GBM sampler
draws its increments from ``(seed, i)`` too, so samples never depend on the batch size or the
number of processes. A field on an affine path is integrated by
:func:`~flowkit.solvers.sample_ode` (fixed-step and adaptive methods) or
:func:`~flowkit.solvers.sample_sde` (stochastic methods); a multiplicative (GBM) model by its
saved sampler, ``nfe`` network calls meaning ``nfe // inner_steps`` noise levels.

``method="dmcmc"`` samples by denoising MCMC (:mod:`flowkit.mcmc`) with chains the
``LoadedModel`` holds across calls (:class:`flowkit.mcmc.DMCMCStream`): output ``i`` is chain
``i mod chains``'s output of round ``i // chains``, a function of ``(seed, i)`` and the
settings alone, whatever the batches, but outputs of one chain are correlated MCMC samples,
not independent draws, and ``x0`` does not apply (chains start from their own seeded noise).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from flowkit.loading.saved import SavedModel, locate, recorded_path
from flowkit.models.field_utils import MULTIPLICATIVE
from flowkit.paths import AffinePath, get_path
from flowkit.solvers import SampleResult, sample_ode, sample_sde, seeded_noise
from flowkit.solvers.names import (
    ADAPTIVE_METHODS,
    GBM_SAMPLERS,
    MCMC_METHODS,
    ODE_METHODS,
    SDE_METHODS,
)
from flowkit.solvers.noise import seeded_integers


@dataclass
class LoadedModel:
    """A saved model, ready to sample.

    Attributes:
        field: the network, ``field(x, t, **cond) -> x.shape`` (eval mode).
        path: the affine path it was trained on (None for a multiplicative model).
        prediction: what the field's output means (``velocity``, ``epsilon``, ``x0``,
            ``score``).
        sample_shape: the shape ``D`` of one sample (latents for latent models).
        num_classes: the number of classes of a class-conditional model, else None.
        source: the directory it was loaded from.
        kind: ``"flowkit"``, ``"diffusers"`` or ``"multiplicative"``.
        pipeline: the saved multiplicative pipeline (its sampler), for GBM models.
    """

    field: nn.Module
    path: AffinePath | None
    prediction: str
    sample_shape: tuple[int, ...]
    num_classes: int | None
    source: str
    kind: str
    pipeline: Any = None
    _dmcmc: Any = field(default=None, repr=False, compare=False)

    @property
    def device(self) -> torch.device:
        return next(self.field.parameters()).device

    def to(self, device: torch.device | str) -> LoadedModel:
        """Move the network (and a GBM pipeline) to ``device``; returns ``self``."""
        self.field = self.field.to(device).eval()
        self._dmcmc = None  # chains live on the old device
        if self.pipeline is not None:
            self.pipeline.to(device)
        return self

    def digest(self) -> str:
        """SHA-256 over the weights (names, dtypes, shapes and bytes, in name order)."""
        digest = hashlib.sha256()
        for name, tensor in sorted(self.field.state_dict().items()):
            digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)}".encode())
            digest.update(tensor.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
        return digest.hexdigest()

    def noise(self, indices: Sequence[int], seed: int = 0) -> Tensor:
        """Unit noise ``(len(indices), *sample_shape)`` on the CPU, row k from
        ``(seed, indices[k])`` (not yet scaled by the path's prior std)."""
        return seeded_noise(self.sample_shape, indices, seed)

    def labels(self, indices: Sequence[int], seed: int = 0) -> Tensor | None:
        """Uniform class labels of a conditional model, label k from ``(seed, indices[k])``
        (a stream apart from the noise's); None for an unconditional model."""
        if self.num_classes is None:
            return None
        return seeded_integers(self.num_classes, indices, seed)

    def decode(self, latents: Tensor) -> Tensor:
        """Latents -> images for a latent diffusers teacher (its VAE); others are returned
        as they are."""
        vae = getattr(self.field, "vae", None)
        return self.field.decode(latents) if vae is not None else latents

    @torch.no_grad()
    def sample(
        self,
        indices: Sequence[int],
        seed: int = 0,
        nfe: int | None = None,
        method: str | None = None,
        grid: str | Sequence[float] | None = None,
        *,
        labels: Tensor | None = None,
        x0: Tensor | None = None,
        **options: Any,
    ) -> SampleResult:
        """Samples ``indices`` of the set seeded by ``seed``.

        Args:
            indices: the global indices of the samples (sample ``i`` depends on
                ``(seed, i)`` alone).
            seed: the base seed.
            nfe: the network-evaluation budget (None: adaptive methods; a GBM model's saved
                number of levels).
            method: an ODE method (default ``"euler"``), an SDE method, ``"dmcmc"``
                (denoising MCMC, see :meth:`_sample_dmcmc` for its options), or for a GBM
                model one of its samplers (default: the saved one).
            grid: a named time grid or explicit times (default ``"uniform"``; ``"edm"`` for
                the integrator of ``dmcmc``).
            labels: class labels ``(B,)`` for a conditional model (None: unconditional).
            x0: unit noise to start from instead of the seeded noise (scaled by the path's
                prior std here).
            options: passed on to the solver (``rtol``, ``atol``, ``t0``, ``t1``,
                ``noise_scale``, ``grid_options``, ``return_trajectory``, ...).

        Raises:
            ValueError: a method that does not apply to this model, or a missing ``nfe``.
        """
        indices = [int(i) for i in indices]
        if method == "dmcmc":
            if x0 is not None or labels is not None:
                raise ValueError(
                    "method 'dmcmc' starts its chains from their own seeded noise and samples "
                    "unconditionally: x0 and labels do not apply"
                )
            return self._sample_dmcmc(indices, seed, nfe, grid or "edm", **options)
        if self.kind == "multiplicative":
            return self._sample_gbm(indices, seed, nfe, method, options)
        method = method or "euler"
        grid = "uniform" if grid is None else grid
        if method not in ODE_METHODS + SDE_METHODS + MCMC_METHODS:
            raise ValueError(
                f"method {method!r} does not apply to {self.source!r} (a field on the "
                f"{self.path.name} path); expected one of "
                f"{list(ODE_METHODS + SDE_METHODS + MCMC_METHODS)}"
            )
        if nfe is None and method not in ADAPTIVE_METHODS and isinstance(grid, str):
            raise ValueError(f"method {method!r} needs nfe (the network-evaluation budget)")
        device = self.device
        start = self.noise(indices, seed) if x0 is None else x0
        start = start.to(device) * self.path.prior_std
        cond = None if labels is None else {"class_labels": labels.to(device)}
        common = dict(path=self.path, prediction=self.prediction, grid=grid, cond=cond)
        if method in SDE_METHODS:
            return sample_sde(
                self.field, start, nfe, method, seed=seed, indices=indices, **common, **options
            )
        return sample_ode(self.field, start, nfe, method, **common, **options)

    def _sample_dmcmc(
        self,
        indices: list[int],
        seed: int,
        nfe: int | None,
        grid: str,
        *,
        estimator: Any = None,
        gibbs: str = "map",
        chains: int = 64,
        skip: int = 5,
        step_size: float = 0.5,
        step_rule: str = "constant",
        num_levels: int | None = None,
        s_min: float | None = None,
        s_max: float | None = None,
        integrator: str = "edm",
        burn_in: int = 20,
        chain_batch_size: int | None = None,
        **solver_options: Any,
    ):
        """Denoising MCMC outputs ``indices`` (a :class:`flowkit.mcmc.DMCMCResult`: ``nfe``
        counts chain steps + integrator calls per output; classifier calls and the one-off
        burn-in apart).

        Options: ``estimator`` (a saved classifier's directory or run, or a
        :class:`~flowkit.mcmc.NoiseLevelClassifier`; None: the score-norm estimator),
        ``gibbs``, ``chains``, ``skip``, ``step_size``, ``step_rule``, the grid
        ``num_levels`` / ``s_min`` / ``s_max`` (default: the classifier's grid, or 1000
        levels from 0.01 to 50 capped at the path's largest), ``integrator`` (its ``grid``
        and ``solver_options``), ``burn_in``, ``chain_batch_size`` (memory only: results do
        not depend on it). The chains are kept for the next call with the same seed, nfe
        and options (see the module docstring).
        """
        from flowkit.mcmc import ClassifierEstimator, DenoisingMCMC, DMCMCStream, LangevinGibbs
        from flowkit.mcmc.estimators import NoiseLevelClassifier, level_grid, load_estimator

        if self.kind == "multiplicative":
            raise ValueError(
                f"method 'dmcmc' needs a model on an affine path; {self.source!r} is a "
                "multiplicative (GBM) model, which has no noise scale sigma/alpha to run chains on"
            )
        if self.num_classes is not None:
            raise ValueError(f"method 'dmcmc' samples unconditional models; {self.source!r} "
                             f"has {self.num_classes} classes")  # fmt: skip
        if nfe is None:
            raise ValueError("method 'dmcmc' needs nfe (chain steps + integrator calls per sample)")
        which = id(estimator) if isinstance(estimator, NoiseLevelClassifier) else str(estimator)
        key = (seed, nfe, str(grid), which, gibbs, chains, skip, step_size, step_rule,
               num_levels, s_min, s_max, integrator, burn_in, chain_batch_size,
               repr(sorted(solver_options.items())))  # fmt: skip
        if self._dmcmc is None or self._dmcmc[0] != key:
            classifier = estimator
            if estimator is not None and not isinstance(estimator, NoiseLevelClassifier):
                classifier = load_estimator(estimator)
            levels = None
            if (num_levels, s_min, s_max) != (None, None, None) or classifier is not None:
                own = classifier.config if classifier is not None else {}
                levels = level_grid(
                    num_levels or own.get("num_levels", 1000),
                    s_min or own.get("s_min", 0.01),
                    s_max or own.get("s_max", 50.0),
                )
            device = self.device

            def make() -> DenoisingMCMC:
                gibbs_step = None
                if classifier is not None:
                    gibbs_step = ClassifierEstimator(classifier.to(device), gibbs)
                lg = LangevinGibbs(
                    self.field, self.sample_shape, path=self.path, prediction=self.prediction,
                    levels=levels, estimator=gibbs_step, step_size=step_size,
                    step_rule=step_rule, num_chains=chains, seed=seed, device=device,
                    chain_batch_size=min(chain_batch_size or chains, chains),
                )  # fmt: skip
                return DenoisingMCMC(lg, skip=skip, method=integrator, grid=grid,
                                     solver_options=solver_options, burn_in=burn_in)  # fmt: skip

            self._dmcmc = (key, DMCMCStream(make, nfe))
        return self._dmcmc[1].take(indices)

    def _sample_gbm(
        self, indices: list[int], seed: int, nfe: int | None, method: str | None, options: dict
    ) -> SampleResult:
        from flowkit.pipelines.multiplicative import GBMScheduler

        if options:
            raise ValueError(
                f"{self.source!r} is a multiplicative (GBM) model sampled by its saved sampler; "
                f"the options {sorted(options)} do not apply to it"
            )
        pipe = self.pipeline
        if method is not None and method != pipe.scheduler.config.sampler:
            if method not in GBM_SAMPLERS:
                raise ValueError(
                    f"{self.source!r} is a multiplicative (GBM) model: the method must be one "
                    f"of {list(GBM_SAMPLERS)}, got {method!r}"
                )
            pipe.scheduler = GBMScheduler.from_config(pipe.scheduler.config, sampler=method)
        inner = pipe.scheduler.config.inner_steps
        if nfe is not None and nfe < inner:
            raise ValueError(
                f"nfe must be >= inner_steps={inner} for {self.source!r} (each noise level "
                f"costs {inner} network calls), got nfe={nfe}"
            )
        steps = None if nfe is None else nfe // inner
        return pipe.sample(indices, seed, num_inference_steps=steps)


def load(source: str | os.PathLike) -> LoadedModel:
    """Load the model saved at ``source``: a run, pipeline, model or diffusers pipeline
    directory (see :mod:`flowkit.loading.saved`), on the CPU in eval mode.

    Raises:
        FileNotFoundError: ``source`` holds no saved model.
        ValueError: an unreadable or inconsistent saved model (the message names the file
            and the fix).
    """
    from flowkit.mcmc.estimators import is_estimator

    if is_estimator(source):
        raise ValueError(
            f"{str(source)!r} is a noise-level classifier (a run of objective.kind "
            "noise_level), not a generative model: pass it as the estimator of denoising MCMC, "
            "e.g. flowkit sample MODEL --method dmcmc --estimator " + str(source)
        )
    saved = locate(source)
    if saved.kind == "multiplicative":
        return _load_multiplicative(saved)
    if saved.kind == "diffusers":
        return _load_diffusers(saved)
    return _load_flowkit(saved)


def _load_flowkit(saved: SavedModel) -> LoadedModel:
    from flowkit.models import load_model
    from flowkit.pipelines.rectified_flow import sample_shape

    name, kwargs = recorded_path(saved)
    if name == MULTIPLICATIVE:
        raise ValueError(
            f"{str(saved.model_dir)!r} is the network of a multiplicative (GBM) model: load "
            "its pipeline directory, which holds the process and the sampler"
        )
    model = load_model(saved.model_dir).eval()
    return LoadedModel(
        field=model,
        path=get_path(name, **kwargs),
        prediction=model.prediction,
        sample_shape=sample_shape(model),
        num_classes=_num_classes(model),
        source=str(saved.source),
        kind="flowkit",
    )


def _load_multiplicative(saved: SavedModel) -> LoadedModel:
    from flowkit.pipelines.loading import load_pipeline
    from flowkit.pipelines.rectified_flow import sample_shape

    pipe = load_pipeline(saved.pipeline_dir)
    model = pipe.model.eval()
    return LoadedModel(
        field=model,
        path=None,
        prediction=model.prediction,
        sample_shape=sample_shape(model),
        num_classes=_num_classes(model),
        source=str(saved.source),
        kind="multiplicative",
        pipeline=pipe,
    )


def _load_diffusers(saved: SavedModel) -> LoadedModel:
    from flowkit.models.teachers import load_diffusers_teacher
    from flowkit.pipelines.rectified_flow import sample_shape

    teacher = load_diffusers_teacher(saved.source).eval()
    return LoadedModel(
        field=teacher,
        path=teacher.path,
        prediction=teacher.prediction,
        sample_shape=sample_shape(teacher.model),
        num_classes=_num_classes(teacher.model),
        source=str(saved.source),
        kind="diffusers",
    )


def _num_classes(model: nn.Module) -> int | None:
    config = getattr(model, "config", {}) or {}
    value = getattr(model, "num_classes", None) or config.get("num_classes")
    return int(value) if value else None
