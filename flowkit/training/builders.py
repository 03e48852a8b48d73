"""Turn config sections into objects: data set, model, objective."""

from __future__ import annotations

import dataclasses
import math

import torch
from torch import nn
from torch.utils.data import Dataset

from flowkit.couplings import Independent, MinibatchOT
from flowkit.objectives import FlowMatchingLoss, TimeSampler, build_metric
from flowkit.paths import check_prediction, get_path
from flowkit.training.config import (
    ConfigError,
    DataConfig,
    ModelConfig,
    ObjectiveConfig,
    RunConfig,
)

MODEL_KINDS = ("mlp", "unet", "classifier")
COUPLINGS = {"independent": Independent, "minibatch_ot": MinibatchOT}


REFLOW_DATA = ("pairs", "teacher")


def build_data(cfg: DataConfig, device: torch.device | None = None) -> Dataset:
    """The training set named by ``data.name``.

    - a built-in or folder data set (see :func:`flowkit.data.build_dataset`);
    - ``"pairs"``: stored reflow pairs in ``data.root`` (:class:`flowkit.reflow.PairDataset`;
      ``data.kwargs.verify``);
    - ``"teacher"``: online reflow, ``data.num_points`` pairs made on the fly by the model
      in ``data.root`` from noise seeded by ``(data.seed, i)``
      (:class:`flowkit.reflow.OnlinePairs`; ``data.kwargs``: ``method``, ``nfe``, ``grid``,
      ``rtol``, ``atol`` of the teacher's solver).
    """
    if cfg.name in REFLOW_DATA:
        return _reflow_data(cfg, device)
    if cfg.kwargs:
        raise ConfigError(f"data.kwargs {sorted(cfg.kwargs)} do not apply to data {cfg.name!r}")
    from flowkit.data import build_dataset

    return build_dataset(
        cfg.name,
        root=cfg.root,
        num_points=cfg.num_points,
        seed=cfg.seed,
        random_flip=cfg.random_flip,
        image_size=cfg.image_size,
        channels=cfg.channels,
    )


def _reflow_data(cfg: DataConfig, device: torch.device | None) -> Dataset:
    from flowkit.reflow import OnlinePairs, PairDataset, SolverSpec, load_teacher

    if cfg.root is None:
        what = "pair directory" if cfg.name == "pairs" else "teacher run or pipeline"
        raise ConfigError(f"data.name={cfg.name!r} needs data.root: the {what}")
    if cfg.name == "pairs":
        return PairDataset(cfg.root, **cfg.kwargs)
    solver_keys = {f.name for f in dataclasses.fields(SolverSpec)}
    unknown = sorted(set(cfg.kwargs) - solver_keys)
    if unknown:
        raise ConfigError(
            f"data.kwargs.{unknown[0]} is not a teacher solver option; valid: {sorted(solver_keys)}"
        )
    teacher = load_teacher(cfg.root).to(device or torch.device("cpu"))
    return OnlinePairs(teacher, cfg.num_points, SolverSpec(**cfg.kwargs), seed=cfg.seed)


def build_model(
    cfg: ModelConfig, dataset: Dataset, objective: ObjectiveConfig | None = None
) -> nn.Module:
    """A fresh network shaped for ``dataset``, or the one saved at ``model.init_from``.

    The network's config records the path of ``objective`` (``"gbm"`` for the
    multiplicative objective), so that the saved model describes itself.
    ``model.kind: classifier`` (with ``objective.kind: noise_level``, and only with it) is
    a :class:`flowkit.mcmc.NoiseLevelClassifier` (see :func:`_noise_level_classifier`).
    """
    from flowkit.models import MLPField, unet
    from flowkit.models.field_utils import MULTIPLICATIVE

    objective = objective or ObjectiveConfig()
    if (cfg.kind == "classifier") != (objective.kind == "noise_level"):
        raise ConfigError(
            f"model.kind={cfg.kind!r} with objective.kind={objective.kind!r}: the noise-level "
            "objective trains model.kind='classifier', and a classifier trains only on "
            "objective.kind='noise_level'"
        )
    if cfg.kind == "classifier":
        return _noise_level_classifier(cfg, dataset, objective)
    check_prediction(cfg.prediction)
    recorded = {
        "path": MULTIPLICATIVE if objective.kind == "multiplicative" else objective.path,
        "path_kwargs": dict(objective.path_kwargs) or None,
    }
    if cfg.init_from is not None:
        from flowkit.loading import load

        model = load(cfg.init_from).field
        model.register_to_config(**recorded)
        return model
    num_classes = dataset.num_classes if cfg.class_conditional else None
    if cfg.class_conditional and num_classes is None:
        raise ConfigError("model.class_conditional is true but the data set has no labels")
    shape = tuple(dataset.sample_shape)
    if cfg.kind == "mlp":
        if len(shape) != 1:
            raise ConfigError(
                f"model.kind='mlp' needs vector data, but samples have shape {shape}; "
                "use model.kind='unet' for images"
            )
        return MLPField(
            dim=shape[0],
            num_classes=num_classes,
            prediction=cfg.prediction,
            **recorded,
            **cfg.kwargs,
        )
    if cfg.kind == "unet":
        if len(shape) != 3:
            raise ConfigError(f"model.kind='unet' needs (C, H, W) images, got samples of {shape}")
        channels, height, _ = shape
        return unet(
            cfg.preset or "small",
            **{
                "in_channels": channels,
                "out_channels": channels,
                "sample_size": height,
                "num_classes": num_classes,
                "prediction": cfg.prediction,
                **recorded,
                **cfg.kwargs,
            },
        )
    raise ConfigError(f"unknown model.kind {cfg.kind!r}; expected one of {list(MODEL_KINDS)}")


def _noise_level_classifier(cfg: ModelConfig, dataset: Dataset, objective: ObjectiveConfig):
    """A fresh :class:`flowkit.mcmc.NoiseLevelClassifier` for ``dataset``'s sample shape on
    the grid of ``objective.kwargs`` (``num_levels``, ``s_min``, ``s_max``); ``model.kwargs``:
    ``hidden``, ``depth``, ``channels``."""
    import inspect

    from flowkit.mcmc.estimators import NoiseLevelClassifier
    from flowkit.mcmc.objective import GRID_KEYS

    defaults = ModelConfig()
    for name in ("preset", "prediction", "class_conditional", "init_from"):
        if getattr(cfg, name) != getattr(defaults, name):
            raise ConfigError(f"model.{name} does not apply to model.kind 'classifier'")
    allowed = set(inspect.signature(NoiseLevelClassifier).parameters) - {"sample_shape", *GRID_KEYS}
    unknown = sorted(set(cfg.kwargs) - allowed)
    if unknown:
        raise ConfigError(
            f"model.kwargs.{unknown[0]} is not an option of model.kind 'classifier'; "
            f"valid: {sorted(allowed)} (the grid is objective.kwargs {list(GRID_KEYS)})"
        )
    grid = {k: v for k, v in objective.kwargs.items() if k in GRID_KEYS}
    try:
        return NoiseLevelClassifier(tuple(dataset.sample_shape), **grid, **cfg.kwargs)
    except ValueError as error:
        raise ConfigError(f"model.kind 'classifier': {error}") from error


OBJECTIVE_KINDS = (
    "flow_matching",
    "diffusion",
    "rectified_diffusion",
    "multiplicative",
    "noise_level",
)


def build_objective(cfg: RunConfig):
    """The loss that ``objective.*`` describes, by ``objective.kind``.

    Every loss is ``loss(model, x1, x0=None, cond=None, generator=None) -> (B,)``. A loss
    may also offer ``pipeline(model)`` (what the trainer saves instead of the default
    flow pipeline) and ``generate(model, num, shape, seed, device)`` (snapshots).
    """
    kind = cfg.objective.kind
    if kind == "flow_matching":
        return _flow_matching(cfg)
    if kind in ("diffusion", "rectified_diffusion"):
        return _diffusion(cfg)
    if kind == "multiplicative":
        return _multiplicative(cfg)
    if kind == "noise_level":
        return _noise_level(cfg)
    raise ConfigError(f"unknown objective.kind {kind!r}; expected one of {list(OBJECTIVE_KINDS)}")


def _time_sampler(cfg: RunConfig) -> TimeSampler:
    return TimeSampler(cfg.objective.time_sampler, **cfg.objective.time_sampler_kwargs)


def _metric(cfg: RunConfig):
    objective = cfg.objective
    metric_kwargs = dict(objective.metric_kwargs)
    if objective.metric == "lpips_huber":
        from flowkit.evaluation.lpips import load_lpips

        metric_kwargs["perceptual"] = load_lpips(
            net=metric_kwargs.pop("net", "vgg"),
            backbone_weights=metric_kwargs.pop("backbone_weights", None),
        )
    return build_metric(objective.metric, **metric_kwargs)


def _coupling(cfg: RunConfig):
    objective = cfg.objective
    if objective.coupling not in COUPLINGS:
        raise ConfigError(
            f"unknown objective.coupling {objective.coupling!r}; expected one of {list(COUPLINGS)}"
        )
    return COUPLINGS[objective.coupling](**objective.coupling_kwargs)


def _flow_matching(cfg: RunConfig) -> FlowMatchingLoss:
    objective = cfg.objective
    if objective.kwargs:
        raise ConfigError(
            f"objective.kwargs {sorted(objective.kwargs)} do not apply to kind 'flow_matching'"
        )
    return FlowMatchingLoss(
        path=get_path(objective.path, **objective.path_kwargs),
        time_sampler=_time_sampler(cfg),
        metric=_metric(cfg),
        coupling=_coupling(cfg),
        prediction=cfg.model.prediction,
    )


def _diffusion(cfg: RunConfig):
    """Diffusion and rectified-diffusion losses (``flowkit.objectives.diffusion``).

    The path is ``objective.path`` (``path_kwargs``), the prediction ``model.prediction``,
    times from ``objective.time_sampler``; ``objective.kwargs`` holds the loss's own options:
    ``weighting`` (uniform, snr, min_snr, edm), ``gamma``, ``sigma_data``, ``t_max``,
    ``target_space``, ``metric`` (``l2`` or ``pseudo_huber``, elementwise) and ``c``.
    ``rectified_diffusion`` defaults to the pseudo-Huber distance on the data prediction
    (``target_space: x0``, ``c: 1e-3``) and needs paired data (``data.name`` pairs/teacher).
    """
    import inspect

    from flowkit.objectives import DiffusionLoss, RectifiedDiffusionLoss

    objective = cfg.objective
    if objective.metric != "l2" or objective.metric_kwargs:
        raise ConfigError(
            f"objective.metric={objective.metric!r} (with metric_kwargs) applies to flow "
            f"matching; for objective.kind={objective.kind!r} set objective.kwargs.metric "
            "('l2' or 'pseudo_huber', elementwise) and objective.kwargs.c"
        )
    if objective.coupling != "independent" or objective.coupling_kwargs:
        raise ConfigError(
            f"objective.coupling={objective.coupling!r} applies to flow matching; "
            f"objective.kind={objective.kind!r} uses fresh noise or the paired data's own"
        )
    if "precondition" in objective.kwargs:
        raise ConfigError(
            "objective.kwargs.precondition is not available from configs: a saved run holds "
            "the raw network, which flowkit's loaders cannot yet wrap. Wrap the network in "
            "flowkit.objectives.EDMPreconditioner in Python instead"
        )
    rectified = objective.kind == "rectified_diffusion"
    loss_class = RectifiedDiffusionLoss if rectified else DiffusionLoss
    set_elsewhere = {"path", "prediction", "time_sampler"}
    options = sorted(set(inspect.signature(loss_class).parameters) - set_elsewhere)
    unknown = sorted(set(objective.kwargs) - set(options))
    if unknown:
        raise ConfigError(
            f"objective.kwargs.{unknown[0]} is not an option of objective.kind="
            f"{objective.kind!r}; valid: {options}"
        )
    path = get_path(objective.path, **objective.path_kwargs)
    time_sampler = _time_sampler(cfg)
    try:
        return loss_class(
            path=path,
            time_sampler=time_sampler,
            prediction=cfg.model.prediction,
            **objective.kwargs,
        )
    except ValueError as error:
        raise ConfigError(f"objective.kwargs: {error}") from error


def _multiplicative(cfg: RunConfig):
    """The multiplicative (GBM) score-matching loss (``flowkit.objectives.multiplicative``).

    ``objective.kwargs``: ``sigma``, ``mu`` (the process), ``start`` (``"per_pixel"``, the
    default, or ``"global"``), ``fit_num`` (default 10000) and the loss's own options
    (``s_min``, ``shift``, ``steps``, ``sampler``, ``inner_steps``, ``noise_scale``,
    ``anneal``, ``clean_steps``, ``min_factor``, ``snapshot_steps``). The samplers' log-normal
    start is fitted here, deterministically, to the first ``fit_num`` items of the training
    set in index order (built again from ``data.*``, without flips), shifted to ``[1, 2]``.
    The affine-path settings (``path``, ``time_sampler``, ``metric``, ``coupling``) do not
    apply and must keep their defaults.
    """
    import dataclasses
    import inspect

    import torch

    from flowkit.objectives.multiplicative import MultiplicativeScoreLoss
    from flowkit.paths.gbm import GBMProcess, fit_lognormal, to_positive

    objective, defaults = cfg.objective, ObjectiveConfig()
    for name in ("path", "path_kwargs", "time_sampler", "time_sampler_kwargs", "metric"):
        if getattr(objective, name) != getattr(defaults, name):
            raise ConfigError(f"objective.{name} does not apply to kind 'multiplicative'")
    if (objective.coupling, objective.coupling_kwargs) != ("independent", {}):
        raise ConfigError("objective.coupling does not apply to kind 'multiplicative'")
    kwargs = dict(objective.kwargs)
    process = GBMProcess(kwargs.pop("sigma", 0.8), kwargs.pop("mu", None))
    start, fit_num = kwargs.pop("start", "per_pixel"), kwargs.pop("fit_num", 10_000)
    if start not in ("per_pixel", "global"):
        raise ConfigError(f"objective.kwargs.start={start!r}; expected 'per_pixel' or 'global'")
    if isinstance(fit_num, bool) or not isinstance(fit_num, int) or fit_num < 2:
        raise ConfigError(f"objective.kwargs.fit_num must be an int >= 2, got {fit_num!r}")
    allowed = set(inspect.signature(MultiplicativeScoreLoss).parameters) - {"process", "data_law"}
    unknown = sorted(set(kwargs) - set(allowed))
    if unknown:
        raise ConfigError(
            f"objective.kwargs {unknown} do not apply to kind 'multiplicative'; expected some "
            f"of {sorted(['sigma', 'mu', 'start', 'fit_num', *allowed])}"
        )
    dataset = build_data(dataclasses.replace(cfg.data, random_flip=False))
    count = min(len(dataset), fit_num)
    data = (
        dataset.x[:count]
        if hasattr(dataset, "x")
        else torch.stack([dataset[i][0] for i in range(count)])
    )
    shift = kwargs.get("shift", True)
    law = fit_lognormal(to_positive(data) if shift else data, per_pixel=start == "per_pixel")
    return MultiplicativeScoreLoss(process=process, data_law=law, **kwargs)


def _noise_level(cfg: RunConfig):
    """The noise-level classifier's cross-entropy (:class:`flowkit.mcmc.NoiseLevelObjective`)
    over the authors' grid ``s_min (s_max/s_min)^tau``, ``tau = linspace(1, 1e-3,
    num_levels)``. ``objective.kwargs``: ``num_levels`` (default 1000), ``s_min`` (0.01),
    ``s_max`` (50), the defaults of ``flowkit sample --method dmcmc``'s grid. The run saves
    the classifier alone as ``RUN/pipeline/`` and writes no sample snapshots. The path,
    time, metric and coupling settings do not apply and must keep their defaults.
    """
    from flowkit.mcmc.objective import GRID_KEYS, NoiseLevelObjective

    objective, defaults = cfg.objective, ObjectiveConfig()
    for name in ("path", "path_kwargs", "time_sampler", "time_sampler_kwargs", "metric",
                 "metric_kwargs", "coupling", "coupling_kwargs"):  # fmt: skip
        if getattr(objective, name) != getattr(defaults, name):
            raise ConfigError(f"objective.{name} does not apply to kind 'noise_level'")
    unknown = sorted(set(objective.kwargs) - set(GRID_KEYS))
    if unknown:
        raise ConfigError(
            f"objective.kwargs.{unknown[0]} is not an option of kind 'noise_level'; valid: "
            f"{list(GRID_KEYS)}"
        )
    if cfg.model.class_conditional:
        raise ConfigError("objective.kind 'noise_level' trains an unconditional classifier")
    try:
        return NoiseLevelObjective(**objective.kwargs)
    except ValueError as error:
        raise ConfigError(f"objective.kwargs: {error}") from error


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def data_dim(dataset: Dataset) -> int:
    return math.prod(dataset.sample_shape)
