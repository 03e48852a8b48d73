"""flowkit: rectified flow, flow matching and diffusion — training, reflow, few-step
sampling and evaluation.

Subpackages are imported on demand (``import flowkit.solvers``) so that
``import flowkit`` stays light; ``flowkit.load(source)`` is the one loader of saved models
(:mod:`flowkit.loading`).
"""

from flowkit._lazy import lazy_getattr

__version__ = "0.1.0"

__getattr__ = lazy_getattr(
    __name__, {"load": "loading.loaded_model", "LoadedModel": "loading.loaded_model"}
)
