"""Affine probability paths and conversions between prediction types."""

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

__all__ = [
    "PATHS",
    "PREDICTIONS",
    "AffinePath",
    "DiscreteVPPath",
    "PathSample",
    "check_prediction",
    "convert",
    "cosine",
    "discrete_vp",
    "get_path",
    "rectified",
    "subvp",
    "ve",
    "vp",
]
