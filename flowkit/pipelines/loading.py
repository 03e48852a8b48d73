"""Load a saved flowkit pipeline directory, from safetensors and JSON only.

On disk (``pipe.save_pretrained(DIR)``, diffusers 0.42)::

    DIR/model_index.json                   {"_class_name": "RectifiedFlowPipeline",
                                            "model": ["flowkit.models.unet", "UNetField"],
                                            "scheduler": ["flowkit.pipelines.schedulers",
                                                          "FlowEulerScheduler"], ...}
    DIR/model/config.json
    DIR/model/diffusion_pytorch_model.safetensors
    DIR/scheduler/scheduler_config.json

(``OneStepPipeline`` has a ``generator/`` folder instead of ``model/`` and ``scheduler/``.)
diffusers records a component from outside its own libraries by its full module path and, on
loading, resolves that path from ``sys.modules`` only (it never imports a module a
repository names). So the flowkit modules must be imported before loading; the flowkit ways
below do it.

What works offline (``HF_HUB_OFFLINE=1``), tested in ``tests/pipelines/test_pipelines.py``:

- ``flowkit.pipelines.load_pipeline(DIR)``: picks ``RectifiedFlowPipeline``,
  ``OneStepPipeline``, ``MultiplicativePipeline`` (the GBM model) or ``DMCMCPipeline``
  (denoising MCMC: ``model/``, ``scheduler/`` and an optional ``estimator/``) from
  ``model_index.json``.
- ``RectifiedFlowPipeline.from_pretrained(DIR)`` / ``OneStepPipeline.from_pretrained(DIR)``.
- plain diffusers, ``DiffusionPipeline.from_pretrained(DIR)``: does NOT work. diffusers
  looks ``_class_name`` up in the ``diffusers`` namespace and raises
  ``AttributeError: module diffusers has no attribute RectifiedFlowPipeline``.
- plain diffusers with the pipeline file as a custom pipeline: works (tested in a fresh
  process that imports nothing from flowkit itself)::

      import importlib.util
      from diffusers import DiffusionPipeline

      file = importlib.util.find_spec("flowkit.pipelines.rectified_flow").origin
      pipe = DiffusionPipeline.from_pretrained(
          DIR, custom_pipeline=file, trust_remote_code=True, use_safetensors=True
      )

  diffusers copies the file into its modules cache (``HF_MODULES_CACHE``) and imports the
  copy, which imports flowkit (so flowkit must be installed) and with it the component
  modules. ``trust_remote_code=True`` is required (without it diffusers refuses the file).
  The pipeline is then an instance of the copy's class
  (``diffusers_modules.local.rectified_flow.RectifiedFlowPipeline``), not of
  ``flowkit.pipelines.RectifiedFlowPipeline``, and diffusers' own ``from_pretrained`` skips
  the weights-file checks below. ``use_safetensors=True`` forbids pickled weights.

Errors: a missing or unreadable weights file raises ``FileNotFoundError`` / ``ValueError``
naming the file, and a ``model_index.json`` that names a pipeline or component class outside
flowkit and diffusers (:func:`~flowkit.pipelines.model_index.check_model_index`) a
``ValueError`` naming the file, the key and the value, before diffusers is asked to load
anything.
"""

from __future__ import annotations

import os
from pathlib import Path

from diffusers.pipelines.pipeline_utils import DiffusionPipeline

from flowkit.files import read_json_object
from flowkit.models.weights import check_safetensors
from flowkit.pipelines.model_index import FLOWKIT_PIPELINES, check_model_index

__all__ = ["PIPELINE_CLASSES", "check_model_index", "check_pipeline_dir", "load_pipeline"]

WEIGHTS_NAME = "diffusion_pytorch_model.safetensors"
_SCHEDULER_CONFIG = "scheduler_config.json"


def _pipeline_classes() -> dict[str, type[DiffusionPipeline]]:
    from flowkit.pipelines.dmcmc import DMCMCPipeline
    from flowkit.pipelines.multiplicative import MultiplicativePipeline
    from flowkit.pipelines.one_step import OneStepPipeline
    from flowkit.pipelines.rectified_flow import RectifiedFlowPipeline

    return {
        "RectifiedFlowPipeline": RectifiedFlowPipeline,
        "OneStepPipeline": OneStepPipeline,
        "MultiplicativePipeline": MultiplicativePipeline,
        "DMCMCPipeline": DMCMCPipeline,
    }


PIPELINE_CLASSES = FLOWKIT_PIPELINES


def check_pipeline_dir(path: str | os.PathLike) -> dict:
    """Check a saved pipeline directory and return its ``model_index.json``.

    ``model_index.json`` must name a flowkit or diffusers pipeline and only components of
    flowkit, diffusers or transformers (:func:`check_model_index`); every component folder
    must hold its config and, for models, a readable ``diffusion_pytorch_model.safetensors``.

    Raises:
        FileNotFoundError: the directory, ``model_index.json``, a component config or a
            weights file is missing (the message names the file).
        ValueError: a JSON file is not valid JSON, a weights file is not valid
            safetensors, or ``model_index.json`` names a class that is not a flowkit or
            diffusers pipeline or component (the message names the file).
    """
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"pipeline directory {str(path)!r} does not exist")
    index = read_json_object(path / "model_index.json")
    check_model_index(index, path / "model_index.json")
    for name, entry in index.items():
        if name.startswith("_") or not isinstance(entry, list) or entry[0] is None:
            continue
        folder = path / name
        if "Scheduler" in str(entry[-1]):
            read_json_object(folder / _SCHEDULER_CONFIG)
            continue
        read_json_object(folder / "config.json")
        check_safetensors(folder / WEIGHTS_NAME)
    return index


def load_pipeline(path: str | os.PathLike, **kwargs) -> DiffusionPipeline:
    """Load a pipeline saved by ``save_pretrained(path)``, of the class its
    ``model_index.json`` names (``RectifiedFlowPipeline``, ``OneStepPipeline``,
    ``MultiplicativePipeline`` or ``DMCMCPipeline``).

    Reads only JSON and safetensors, offline (``local_files_only=True``). ``kwargs`` go to
    ``from_pretrained`` (e.g. ``torch_dtype``).

    Raises:
        FileNotFoundError, ValueError: as :func:`check_pipeline_dir`, or ``model_index.json``
            names another pipeline class.
    """
    index = check_pipeline_dir(path)
    classes = _pipeline_classes()
    name = index.get("_class_name")
    if name not in classes:
        raise ValueError(
            f"{str(Path(path) / 'model_index.json')!r} names pipeline class {name!r}; expected "
            f"one of {list(classes)}"
        )
    kwargs.setdefault("local_files_only", True)
    return classes[name].from_pretrained(path, **kwargs)
