"""Samplers with one signature and honest (counted) NFE."""

from flowkit.solvers.edm import sample_edm
from flowkit.solvers.field import VelocityField
from flowkit.solvers.gbm import GBM_SAMPLERS, sample_gbm, sample_gbm_seeded
from flowkit.solvers.grids import GRIDS, time_grid
from flowkit.solvers.increments import PerSampleNoise
from flowkit.solvers.likelihood import LikelihoodResult, log_likelihood
from flowkit.solvers.noise import sample_seed, seeded_integers, seeded_noise
from flowkit.solvers.ode import ODE_METHODS, sample_ode
from flowkit.solvers.predictor_corrector import sample_pc
from flowkit.solvers.result import SampleResult
from flowkit.solvers.sde import SDE_METHODS, sample_sde

__all__ = [
    "GBM_SAMPLERS",
    "GRIDS",
    "ODE_METHODS",
    "SDE_METHODS",
    "PerSampleNoise",
    "LikelihoodResult",
    "SampleResult",
    "VelocityField",
    "log_likelihood",
    "sample_edm",
    "sample_gbm",
    "sample_gbm_seeded",
    "sample_ode",
    "sample_pc",
    "sample_seed",
    "sample_sde",
    "seeded_integers",
    "seeded_noise",
    "time_grid",
]
