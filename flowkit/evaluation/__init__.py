"""Evaluation: FID / KID with streaming statistics, feature networks, LPIPS, and flow
diagnostics (sliced Wasserstein, straightness).

Heavy pieces (feature networks, Inception, LPIPS) load lazily inside the functions that
need them.
"""

from flowkit.evaluation.classifiers import DigitClassifier
from flowkit.evaluation.features import EXTRACTOR_NAMES, FeatureExtractor, get_extractor
from flowkit.evaluation.fid import FIDResult, accumulate, dataset_stats, fid
from flowkit.evaluation.frechet import fid_from_stats, frechet_distance
from flowkit.evaluation.inception import load_inception, resolve_inception_weights
from flowkit.evaluation.kid import kid
from flowkit.evaluation.sliced import sliced_wasserstein
from flowkit.evaluation.stats import FeatureStats, ReferenceStats, load_stats
from flowkit.evaluation.straightness import straightness

__all__ = [
    "EXTRACTOR_NAMES",
    "DigitClassifier",
    "FIDResult",
    "FeatureExtractor",
    "FeatureStats",
    "ReferenceStats",
    "accumulate",
    "dataset_stats",
    "fid",
    "fid_from_stats",
    "frechet_distance",
    "get_extractor",
    "kid",
    "load_inception",
    "load_stats",
    "resolve_inception_weights",
    "sliced_wasserstein",
    "straightness",
]
