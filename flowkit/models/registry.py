"""Load a saved flowkit network from its directory, from safetensors only."""

from __future__ import annotations

import os
from pathlib import Path

from diffusers.models.modeling_utils import ModelMixin
from diffusers.utils import is_accelerate_available

from flowkit.files import read_json_object
from flowkit.models.mlp import MLPField
from flowkit.models.unet import UNetField
from flowkit.models.weights import check_safetensors

__all__ = ["MODEL_CLASSES", "load_model"]

MODEL_CLASSES: dict[str, type[ModelMixin]] = {"MLPField": MLPField, "UNetField": UNetField}
_WEIGHTS = "diffusion_pytorch_model.safetensors"


def load_model(path: str | os.PathLike) -> ModelMixin:
    """Load a model written by ``save_pretrained(path)``.

    Reads ``path/config.json``, picks the class named by its ``_class_name`` (one of
    :data:`MODEL_CLASSES`) and loads ``path/diffusion_pytorch_model.safetensors``. Pickled
    weights (``.bin``) are never read.

    Raises:
        FileNotFoundError: ``path``, its ``config.json`` or its weights file is missing.
        ValueError: the config is not valid JSON or names an unknown class, or the weights
            file is not a readable safetensors file (the message names the file).
    """
    path = Path(path)
    config_file = path / "config.json"
    if not path.is_dir():
        raise FileNotFoundError(f"model directory {str(path)!r} does not exist")
    if not config_file.is_file():
        raise FileNotFoundError(f"model directory {str(path)!r} has no config.json")
    class_name = read_json_object(config_file, "model config").get("_class_name")
    if class_name not in MODEL_CLASSES:
        raise ValueError(
            f"{str(config_file)!r} names model class {class_name!r}; expected one of "
            f"{list(MODEL_CLASSES)}"
        )
    check_safetensors(path / _WEIGHTS)
    return MODEL_CLASSES[class_name].from_pretrained(
        path,
        use_safetensors=True,
        local_files_only=True,
        low_cpu_mem_usage=is_accelerate_available(),
    )
