"""The one loader: ``flowkit.load(source)`` -> :class:`LoadedModel` (a run, pipeline, model
or diffusers pipeline directory), sampled by :meth:`LoadedModel.sample`."""

from flowkit._lazy import lazy_getattr

__all__ = [
    "LoadedModel",
    "SavedModel",
    "load",
    "locate",
]

__getattr__ = lazy_getattr(
    __name__,
    {
        "LoadedModel": "loaded_model",
        "SavedModel": "saved",
        "load": "loaded_model",
        "locate": "saved",
    },
)
