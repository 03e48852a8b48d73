"""Evaluation: sample-quality distances and flow diagnostics."""

from flowkit.evaluation.sliced import sliced_wasserstein
from flowkit.evaluation.straightness import straightness

__all__ = ["sliced_wasserstein", "straightness"]
