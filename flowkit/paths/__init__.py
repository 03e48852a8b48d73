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

__all__ = [
    "PATHS",
    "PREDICTIONS",
    "AffinePath",
    "PathSample",
    "check_prediction",
    "convert",
    "cosine",
    "get_path",
    "rectified",
    "subvp",
    "ve",
    "vp",
]
