"""The names of the samplers and time grids, without torch.

The solver modules build their method tables from these tuples, and the command-line
parser offers them as choices without importing torch.
"""

from __future__ import annotations

GRIDS = ("uniform", "edm", "shifted", "cosine")
SINGLE_STEP_NAMES = ("euler", "midpoint", "heun", "rk4")
DATA_PREDICTION_METHODS = ("dpm_solver_pp", "new_euler", "ddim")
ADAPTIVE_METHODS = ("dopri5", "bosh3", "adaptive_heun", "dopri8")
ODE_METHODS = SINGLE_STEP_NAMES + DATA_PREDICTION_METHODS + ADAPTIVE_METHODS
SDE_METHODS = ("euler_maruyama", "flow_sde", "edm", "pc")
GBM_SAMPLERS = ("multiplicative", "additive")
MCMC_METHODS = ("dmcmc",)
"""Samplers that run chains before integrating (:mod:`flowkit.mcmc`); not a solver method."""
MCMC_INTEGRATORS = ("edm", "euler_maruyama", "flow_sde", "euler", "midpoint", "heun", "rk4")
"""The integrators denoising MCMC can finish with (per-sample start times)."""
