"""diffusers-compatible schedulers (and, later, pipelines) over flowkit's solvers.

The convention conversion is light and imported eagerly; the schedulers import diffusers and
are loaded on first access (``from flowkit.pipelines import FlowEulerScheduler``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from flowkit.pipelines.convention import (
    DiffusersFlow,
    FlowkitFlow,
    from_diffusers_flow,
    to_diffusers_flow,
)

if TYPE_CHECKING:
    from flowkit.pipelines.schedulers import FlowEulerScheduler, FlowHeunScheduler

__all__ = [
    "DiffusersFlow",
    "FlowEulerScheduler",
    "FlowHeunScheduler",
    "FlowkitFlow",
    "from_diffusers_flow",
    "to_diffusers_flow",
]

_LAZY = {"FlowEulerScheduler", "FlowHeunScheduler"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from flowkit.pipelines import schedulers

        return getattr(schedulers, name)
    raise AttributeError(f"module 'flowkit.pipelines' has no attribute {name!r}")
