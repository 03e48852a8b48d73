"""Training objectives: time samplers, metrics and losses (per-sample, never reduced)."""

from flowkit.objectives.diffusion import DiffusionLoss
from flowkit.objectives.flow_matching import FlowMatchingLoss, regression_target
from flowkit.objectives.metrics import L2, LPIPSHuber, PseudoHuber, build_metric
from flowkit.objectives.multiplicative import MultiplicativeScoreLoss
from flowkit.objectives.preconditioning import EDMPreconditioner
from flowkit.objectives.rectified_diffusion import RectifiedDiffusionLoss
from flowkit.objectives.time_samplers import TimeSampler
from flowkit.objectives.weighting import WEIGHTINGS, loss_weight, snr

__all__ = [
    "L2",
    "WEIGHTINGS",
    "DiffusionLoss",
    "EDMPreconditioner",
    "FlowMatchingLoss",
    "LPIPSHuber",
    "MultiplicativeScoreLoss",
    "PseudoHuber",
    "RectifiedDiffusionLoss",
    "TimeSampler",
    "build_metric",
    "loss_weight",
    "regression_target",
    "snr",
]
