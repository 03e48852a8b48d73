"""Networks as fields ``field(x, t, **cond) -> Tensor`` with x's shape.

Every network is a diffusers ``ModelMixin`` + ``ConfigMixin`` (``save_pretrained`` /
``from_pretrained`` with safetensors) and says what its output means in ``.prediction``.
"""

from flowkit.models.adapters import DiffusersField
from flowkit.models.field_utils import PREDICTIONS, broadcast_time, check_prediction
from flowkit.models.mlp import MLPField
from flowkit.models.registry import MODEL_CLASSES, load_model
from flowkit.models.teachers import Teacher, ddim_grid, flow_grid, load_diffusers_teacher
from flowkit.models.unet import UNET_PRESETS, UNetField, unet

__all__ = [
    "MODEL_CLASSES",
    "PREDICTIONS",
    "UNET_PRESETS",
    "DiffusersField",
    "MLPField",
    "Teacher",
    "UNetField",
    "broadcast_time",
    "check_prediction",
    "ddim_grid",
    "flow_grid",
    "load_diffusers_teacher",
    "load_model",
    "unet",
]
