"""Denoising MCMC (Kim & Ye 2022): Langevin-Gibbs chains over (data, noise level), each
chain's least-noisy state finished by any flowkit solver. Outputs of one chain are
correlated MCMC samples."""

from flowkit._lazy import lazy_getattr

__all__ = [
    "ClassifierEstimator",
    "DMCMCResult",
    "DenoisingMCMC",
    "DMCMCStream",
    "LangevinGibbs",
    "NoiseLevelClassifier",
    "NoiseLevelObjective",
    "ScoreNormEstimator",
    "fit_noise_level_classifier",
    "level_grid",
    "level_of_time",
    "noise_level_loss",
    "sample_dmcmc",
    "time_of_level",
]

__getattr__ = lazy_getattr(
    __name__,
    {
        "ClassifierEstimator": "estimators",
        "DMCMCResult": "chains",
        "DMCMCStream": "sampler",
        "DenoisingMCMC": "sampler",
        "LangevinGibbs": "chains",
        "NoiseLevelClassifier": "estimators",
        "NoiseLevelObjective": "objective",
        "ScoreNormEstimator": "estimators",
        "fit_noise_level_classifier": "estimators",
        "level_grid": "estimators",
        "level_of_time": "levels",
        "noise_level_loss": "estimators",
        "sample_dmcmc": "sampler",
        "time_of_level": "levels",
    },
)
