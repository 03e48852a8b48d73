"""The pipeline a run saves its model in, by the objective's declared ``saved_as``."""

from __future__ import annotations

from torch import nn

from flowkit.objectives import Objective
from flowkit.training.config import RunConfig


def pipeline_of(objective: Objective, model: nn.Module, config: RunConfig):
    """``model`` in the pipeline its objective declares: a :class:`RectifiedFlowPipeline`
    with an Euler scheduler on the run's path (``"flow"``), a
    :class:`MultiplicativePipeline` with the objective's GBM scheduler settings, or
    (``"estimator"``) the network itself, whose ``save_pretrained`` writes its
    ``config.json`` and safetensors (a noise-level classifier: ``RUN/pipeline/`` is then
    that component, read by :func:`flowkit.mcmc.estimators.load_estimator`)."""
    if objective.saved_as == "estimator":
        return model
    if objective.saved_as == "multiplicative":
        from flowkit.pipelines import GBMScheduler, MultiplicativePipeline

        scheduler = GBMScheduler(**objective.pipeline_settings())
        return MultiplicativePipeline(model=model, scheduler=scheduler)
    if objective.saved_as != "flow":
        raise ValueError(
            f"objective.saved_as={objective.saved_as!r}; expected 'flow', 'multiplicative' "
            "or 'estimator'"
        )
    from flowkit.pipelines import FlowEulerScheduler, RectifiedFlowPipeline

    scheduler = FlowEulerScheduler(
        prediction=config.model.prediction,
        path=config.objective.path,
        path_kwargs=config.objective.path_kwargs or None,
        **objective.pipeline_settings(),
    )
    return RectifiedFlowPipeline(model=model, scheduler=scheduler)
