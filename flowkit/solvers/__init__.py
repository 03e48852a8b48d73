"""Samplers with one signature and honest (counted) NFE."""

from flowkit.solvers.field import VelocityField
from flowkit.solvers.grids import GRIDS, time_grid
from flowkit.solvers.likelihood import LikelihoodResult, log_likelihood
from flowkit.solvers.noise import sample_seed, seeded_noise
from flowkit.solvers.ode import ODE_METHODS, sample_ode
from flowkit.solvers.result import SampleResult

__all__ = [
    "GRIDS",
    "ODE_METHODS",
    "LikelihoodResult",
    "SampleResult",
    "VelocityField",
    "log_likelihood",
    "sample_ode",
    "sample_seed",
    "seeded_noise",
    "time_grid",
]
