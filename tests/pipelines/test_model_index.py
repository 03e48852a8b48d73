"""model_index.json is validated before loading: a pipeline or component class outside flowkit
and diffusers is refused with an error naming the file, the key and the value."""

import json
from pathlib import Path

import pytest
import torch

from flowkit.models import MLPField
from flowkit.pipelines import (
    FlowHeunScheduler,
    GBMScheduler,
    MultiplicativePipeline,
    OneStepPipeline,
    RectifiedFlowPipeline,
    load_pipeline,
)
from flowkit.pipelines.loading import check_model_index

LOADERS = {"load_pipeline": load_pipeline, "from_pretrained": RectifiedFlowPipeline.from_pretrained}


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def mlp() -> MLPField:
    torch.manual_seed(0)
    return MLPField(dim=2, hidden_dim=8, num_layers=1).eval()


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("pipe")
    RectifiedFlowPipeline(model=mlp(), scheduler=FlowHeunScheduler()).save_pretrained(directory)
    return directory


def tampered(saved: Path, target: Path, **changes) -> Path:
    for file in saved.rglob("*"):
        if file.is_file():
            copy = target / file.relative_to(saved)
            copy.parent.mkdir(parents=True, exist_ok=True)
            copy.write_bytes(file.read_bytes())
    index = json.loads((saved / "model_index.json").read_text())
    (target / "model_index.json").write_text(json.dumps({**index, **changes}))
    return target


@pytest.mark.parametrize("loader", LOADERS)
@pytest.mark.parametrize("name", ["os.system", "UNet2DModel", "Other", None])
def test_tampered_pipeline_class_name_is_refused(saved, tmp_path, loader, name) -> None:
    directory = tampered(saved, tmp_path / "pipe", _class_name=name)
    expected = (
        rf"model_index.json'?: _class_name is {name!r} .*expected one of .*RectifiedFlowPipeline"
    )
    with pytest.raises(ValueError, match=expected):
        LOADERS[loader](directory)


@pytest.mark.parametrize("loader", LOADERS)
@pytest.mark.parametrize(
    ("key", "entry"),
    [
        ("scheduler", ["pickle", "loads"]),
        ("scheduler", ["os", "system"]),
        ("model", ["flowkit", "NoSuchClass"]),
        ("model", ["flowkit.models.mlp", "NoSuchClass"]),
        ("scheduler", ["flowkit.pipelines.schedulers", "SchedulerMixin"]),
        ("scheduler", ["diffusers", "logging"]),
        ("scheduler", ["__file__", "upper"]),
        ("model", ["flowkit.models.mlp"]),
    ],
)
def test_tampered_component_is_refused(saved, tmp_path, loader, key, entry) -> None:
    directory = tampered(saved, tmp_path / "pipe", **{key: entry})
    file = str(directory / "model_index.json")
    with pytest.raises(ValueError) as error:
        LOADERS[loader](directory)
    message = str(error.value)
    assert file in message and f"component {key!r} is {entry!r}" in message
    assert "expected [library, class]" in message


def test_genuine_saved_pipelines_pass_and_load(saved, tmp_path) -> None:
    one_step = tmp_path / "one_step"
    OneStepPipeline(generator=mlp()).save_pretrained(one_step)
    gbm = tmp_path / "gbm"
    MultiplicativePipeline(model=mlp(), scheduler=GBMScheduler(shift=False)).save_pretrained(gbm)
    for directory, cls in (
        (saved, RectifiedFlowPipeline),
        (one_step, OneStepPipeline),
        (gbm, MultiplicativePipeline),
    ):
        index = json.loads((directory / "model_index.json").read_text())
        check_model_index(index, directory / "model_index.json")
        assert type(load_pipeline(directory)) is cls
    loaded = RectifiedFlowPipeline.from_pretrained(saved)
    assert type(loaded.scheduler) is FlowHeunScheduler


def test_diffusers_pipeline_index_passes() -> None:
    """What diffusers writes for its own pipelines (classes that need transformers included)."""
    index = {
        "_class_name": "StableDiffusion3Pipeline",
        "_diffusers_version": "0.42.1",
        "scheduler": ["diffusers", "FlowMatchEulerDiscreteScheduler"],
        "transformer": ["diffusers", "SD3Transformer2DModel"],
        "vae": ["diffusers", "AutoencoderKL"],
        "text_encoder": ["transformers", "CLIPTextModelWithProjection"],
        "tokenizer": ["transformers", "CLIPTokenizer"],
        "text_encoder_3": [None, None],
        "safety_checker": ["stable_diffusion", "StableDiffusionSafetyChecker"],
        "requires_safety_checker": True,
    }
    check_model_index(index, "model_index.json")
    check_model_index({**index, "_class_name": "DDPMPipeline"}, "model_index.json")
    with pytest.raises(
        ValueError, match=r"component 'tokenizer' is \['transformers', 'os.system'\]"
    ):
        check_model_index({**index, "tokenizer": ["transformers", "os.system"]}, "x.json")
