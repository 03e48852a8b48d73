"""Affine probability paths, conversions between prediction types, and the GBM process."""

from flowkit.paths.affine import (
    PATHS,
    AffinePath,
    PathSample,
    cosine,
    get_path,
    rectified,
    subvp,
    ve,
    vp,
)
from flowkit.paths.conversions import PREDICTIONS, check_prediction, convert
from flowkit.paths.discrete import DiscreteVPPath, discrete_vp
from flowkit.paths.gbm import (
    GBMProcess,
    GBMSample,
    LogNormal,
    fit_lognormal,
    from_positive,
    to_positive,
)

__all__ = [
    "PATHS",
    "PREDICTIONS",
    "AffinePath",
    "DiscreteVPPath",
    "GBMProcess",
    "GBMSample",
    "LogNormal",
    "PathSample",
    "check_prediction",
    "convert",
    "cosine",
    "discrete_vp",
    "fit_lognormal",
    "from_positive",
    "get_path",
    "rectified",
    "subvp",
    "to_positive",
    "ve",
    "vp",
]
