"""Validate a pipeline directory's ``model_index.json`` before anything is loaded from it.

diffusers builds a pipeline from ``model_index.json``: the class ``_class_name`` and, for each
component ``name: [library, class]``, ``getattr(library, class).from_pretrained(DIR/name)``.
A tampered file could name any callable the process can reach (``["pickle", "loads"]``,
``"_class_name": "os.system"``), and diffusers would resolve it. :func:`check_model_index`
accepts only what flowkit and diffusers write:

- ``_class_name``: a flowkit pipeline (:data:`FLOWKIT_PIPELINES`) or a pipeline class that
  diffusers exports (a ``DiffusionPipeline`` subclass);
- a component ``[library, class]``:

  - ``[null, null]``: an optional component that is absent;
  - a flowkit module, as ``save_pretrained`` records flowkit classes (by their module path:
    ``["flowkit.models.unet", "UNetField"]``, ``["flowkit.pipelines.schedulers",
    "FlowEulerScheduler"]``): ``class`` must be a flowkit model (``ModelMixin``) or scheduler
    (``SchedulerMixin``) that the (already imported) module holds, as diffusers resolves it;
  - ``"diffusers"``, or a diffusers pipeline module (``["stable_diffusion",
    "StableDiffusionSafetyChecker"]``): a class with ``from_pretrained`` that diffusers exports
    there;
  - ``"transformers"`` (text encoders, tokenizers of diffusers pipelines): a class with
    ``from_pretrained`` that transformers exports. Without transformers installed, a class
    that needs it cannot be resolved or loaded by anyone, and only its name's form is checked;

- other keys (``_diffusers_version``, pipeline options such as ``requires_safety_checker``)
  are not loaded and are left alone.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

__all__ = ["FLOWKIT_PIPELINES", "check_model_index"]

FLOWKIT_PIPELINES = (
    "RectifiedFlowPipeline",
    "OneStepPipeline",
    "MultiplicativePipeline",
    "DMCMCPipeline",
)
# imported before checking, so that the flowkit component modules are in sys.modules
_FLOWKIT_MODULES = (
    "flowkit.pipelines.rectified_flow",
    "flowkit.pipelines.multiplicative",
    "flowkit.pipelines.dmcmc",
)
_COMPONENT_EXPECTED = (
    "[library, class] with library 'diffusers', 'transformers', a diffusers pipeline module or "
    "a flowkit module (such as 'flowkit.models.unet'), and class a loadable class of that library"
)


def _has_transformers() -> bool:
    return importlib.util.find_spec("transformers") is not None


def _loadable(obj: object) -> bool:
    return isinstance(obj, type) and callable(getattr(obj, "from_pretrained", None))


def _flowkit_component(library: str, name: str) -> str | None:
    """Why ``[library, name]`` is not a flowkit component (None when it is)."""
    from diffusers.models.modeling_utils import ModelMixin
    from diffusers.schedulers.scheduling_utils import SchedulerMixin

    module = sys.modules.get(library)
    if module is None:
        return f"no flowkit module {library!r} is loaded"
    obj = getattr(module, name, None)
    if not (isinstance(obj, type) and issubclass(obj, (ModelMixin, SchedulerMixin))):
        return f"{library!r} holds no flowkit model or scheduler class {name!r}"
    if not obj.__module__.startswith("flowkit."):
        return f"{name!r} in {library!r} is {obj.__module__}.{obj.__name__}, not a flowkit class"
    return None


def _library_component(library: str, name: str) -> str | None:
    """Why ``[library, name]`` is not a diffusers / transformers component (None when it is)."""
    import diffusers
    import diffusers.pipelines

    if library == "diffusers":
        found = _loadable(getattr(diffusers, name, None))
        return None if found else f"diffusers exports no loadable class {name!r}"
    pipeline_module = not library.startswith("_") and isinstance(
        getattr(diffusers.pipelines, library, None), ModuleType
    )
    if library == "transformers" or pipeline_module:
        if not _has_transformers():  # nothing can be loaded from it: check the name only
            return None if name.isidentifier() else f"{name!r} is not a class name"
        module = (
            importlib.import_module("transformers")
            if library == "transformers"
            else getattr(diffusers.pipelines, library)
        )
        found = _loadable(getattr(module, name, None))
        return None if found else f"{library} exports no loadable class {name!r}"
    return f"{library!r} is not a library flowkit or diffusers loads components from"


def _component_problem(entry: object) -> str | None:
    if list(entry) == [None, None]:
        return None
    if len(entry) != 2 or not all(isinstance(part, str) for part in entry):
        return "not two strings"
    library, name = entry
    if library == "flowkit" or library.startswith("flowkit."):
        return _flowkit_component(library, name)
    return _library_component(library, name)


def _pipeline_problem(name: object) -> str | None:
    if name in FLOWKIT_PIPELINES:
        return None
    if not isinstance(name, str) or not name.isidentifier():
        return "not a class name"
    import diffusers
    from diffusers.pipelines.pipeline_utils import DiffusionPipeline
    from diffusers.utils import DummyObject

    obj = getattr(diffusers, name, None)
    if isinstance(obj, DummyObject) and name.endswith("Pipeline"):
        return None  # a diffusers pipeline whose backend (transformers, ...) is not installed
    if isinstance(obj, type) and issubclass(obj, DiffusionPipeline):
        return None
    return "neither a flowkit pipeline nor a diffusers pipeline class"


def check_model_index(index: dict, file: str | Path) -> None:
    """Check the pipeline class and the component entries of a ``model_index.json``.

    Args:
        index: the parsed JSON object.
        file: the file it was read from (named in errors).

    Raises:
        ValueError: ``_class_name`` is missing or not a flowkit or diffusers pipeline; a
            component entry is not ``[library, class]`` of a library and class that flowkit
            or diffusers loads (the message names the file, the key, the value and what was
            expected).
    """
    for module in _FLOWKIT_MODULES:
        importlib.import_module(module)
    name = index.get("_class_name")
    problem = _pipeline_problem(name)
    if problem is not None:
        raise ValueError(
            f"{str(file)!r}: _class_name is {name!r} ({problem}); expected one of "
            f"{list(FLOWKIT_PIPELINES)} or a diffusers pipeline class"
        )
    for key, entry in index.items():
        if key.startswith("_") or not isinstance(entry, (list, tuple)):
            continue
        problem = _component_problem(entry)
        if problem is not None:
            raise ValueError(
                f"{str(file)!r}: component {key!r} is {entry!r} ({problem}); expected "
                f"{_COMPONENT_EXPECTED}"
            )
