"""Training objectives: time samplers, metrics and losses (per-sample, never reduced)."""

from flowkit.objectives.flow_matching import FlowMatchingLoss, regression_target
from flowkit.objectives.metrics import L2, LPIPSHuber, PseudoHuber, build_metric
from flowkit.objectives.time_samplers import TimeSampler

__all__ = [
    "L2",
    "FlowMatchingLoss",
    "LPIPSHuber",
    "PseudoHuber",
    "TimeSampler",
    "build_metric",
    "regression_target",
]
