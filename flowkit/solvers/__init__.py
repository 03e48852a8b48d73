"""Samplers with one signature and honest (counted) NFE."""

from flowkit._lazy import lazy_getattr

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

__getattr__ = lazy_getattr(
    __name__,
    {
        "GBM_SAMPLERS": "names",
        "GRIDS": "names",
        "ODE_METHODS": "names",
        "SDE_METHODS": "names",
        "PerSampleNoise": "increments",
        "LikelihoodResult": "likelihood",
        "SampleResult": "result",
        "VelocityField": "field",
        "log_likelihood": "likelihood",
        "sample_edm": "edm",
        "sample_gbm": "gbm",
        "sample_gbm_seeded": "gbm",
        "sample_ode": "ode",
        "sample_pc": "predictor_corrector",
        "sample_seed": "noise",
        "sample_sde": "sde",
        "seeded_integers": "noise",
        "seeded_noise": "noise",
        "time_grid": "grids",
    },
)
