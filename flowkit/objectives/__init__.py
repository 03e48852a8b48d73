"""Training objectives: time samplers, metrics and losses (per-sample, never reduced)."""

from flowkit._lazy import lazy_getattr

__all__ = [
    "Objective",
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

__getattr__ = lazy_getattr(
    __name__,
    {
        "Objective": "base",
        "L2": "metrics",
        "WEIGHTINGS": "weighting",
        "DiffusionLoss": "diffusion",
        "EDMPreconditioner": "preconditioning",
        "FlowMatchingLoss": "flow_matching",
        "LPIPSHuber": "metrics",
        "MultiplicativeScoreLoss": "multiplicative",
        "PseudoHuber": "metrics",
        "RectifiedDiffusionLoss": "rectified_diffusion",
        "TimeSampler": "time_samplers",
        "build_metric": "metrics",
        "loss_weight": "weighting",
        "regression_target": "flow_matching",
        "snr": "weighting",
    },
)
