"""Checking a weights file before anything loads it: present, and valid safetensors."""

from __future__ import annotations

import os
from pathlib import Path


def check_safetensors(weights: str | os.PathLike) -> None:
    """Raise ``FileNotFoundError`` / ``ValueError`` naming ``weights`` when the file is
    missing or is not a readable safetensors file (only safetensors are ever read)."""
    from safetensors import safe_open

    weights = Path(weights)
    if not weights.is_file():
        raise FileNotFoundError(
            f"weights file {str(weights)!r} is missing (only safetensors weights are read)"
        )
    try:
        with safe_open(weights, framework="pt") as handle:
            handle.keys()
    except Exception as error:
        raise ValueError(
            f"weights file {str(weights)!r} is not valid safetensors: {error}"
        ) from error
