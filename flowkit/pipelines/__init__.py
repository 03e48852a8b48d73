"""diffusers-compatible schedulers and pipelines over flowkit's solvers.

The convention conversion is light and imported eagerly; the schedulers and pipelines import
diffusers and are loaded on first access (``from flowkit.pipelines import FlowEulerScheduler``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from flowkit.paths.diffusers_flow import (
    DiffusersFlow,
    FlowkitFlow,
    from_diffusers_flow,
    to_diffusers_flow,
)

if TYPE_CHECKING:
    from flowkit.pipelines.dmcmc import DMCMCPipeline, DMCMCScheduler
    from flowkit.pipelines.loading import load_pipeline
    from flowkit.pipelines.multiplicative import GBMScheduler, MultiplicativePipeline
    from flowkit.pipelines.one_step import OneStepPipeline
    from flowkit.pipelines.rectified_flow import RectifiedFlowPipeline, SampleOutput
    from flowkit.pipelines.schedulers import FlowEulerScheduler, FlowHeunScheduler

__all__ = [
    "DMCMCPipeline",
    "DMCMCScheduler",
    "DiffusersFlow",
    "FlowEulerScheduler",
    "FlowHeunScheduler",
    "FlowkitFlow",
    "GBMScheduler",
    "MultiplicativePipeline",
    "OneStepPipeline",
    "RectifiedFlowPipeline",
    "SampleOutput",
    "from_diffusers_flow",
    "load_pipeline",
    "to_diffusers_flow",
]

_LAZY = {
    "DMCMCPipeline": "dmcmc",
    "DMCMCScheduler": "dmcmc",
    "FlowEulerScheduler": "schedulers",
    "FlowHeunScheduler": "schedulers",
    "GBMScheduler": "multiplicative",
    "MultiplicativePipeline": "multiplicative",
    "OneStepPipeline": "one_step",
    "RectifiedFlowPipeline": "rectified_flow",
    "SampleOutput": "rectified_flow",
    "load_pipeline": "loading",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"flowkit.pipelines.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'flowkit.pipelines' has no attribute {name!r}")
