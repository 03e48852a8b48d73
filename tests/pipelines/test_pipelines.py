"""flowkit's diffusers pipelines: equal to sample_ode, output types, save/load, one-step."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers.pipelines.pipeline_utils import ImagePipelineOutput
from PIL import Image

from flowkit.models import MLPField, unet
from flowkit.paths import get_path
from flowkit.pipelines import (
    FlowEulerScheduler,
    FlowHeunScheduler,
    OneStepPipeline,
    RectifiedFlowPipeline,
    SampleOutput,
    load_pipeline,
)
from flowkit.solvers import sample_ode

SCHEDULERS = {"euler": FlowEulerScheduler, "heun": FlowHeunScheduler}
CLOSE = dict(rtol=1e-5, atol=1e-5)


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="module")
def tiny_unet():
    torch.manual_seed(0)
    return unet("tiny").eval()


def mlp(prediction: str = "velocity", **kwargs) -> MLPField:
    torch.manual_seed(0)
    return MLPField(dim=2, hidden_dim=32, num_layers=2, prediction=prediction, **kwargs).eval()


def seed(value: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(value)


def files_on_disk(directory: Path) -> list[str]:
    return sorted(str(p.relative_to(directory)) for p in directory.rglob("*") if p.is_file())


# -- equal to sample_ode ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "prediction", "scheduler_kwargs"),
    [
        ("euler", "velocity", {}),
        ("heun", "velocity", {}),
        ("euler", "data", {}),
        ("heun", "data", {"final_euler": True}),
        ("euler", "epsilon", {"grid": [0.1, 0.4, 0.7, 1.0]}),
        ("euler", "data", {"path": "cosine"}),
        ("heun", "velocity", {"grid": "shifted", "grid_options": {"shift": 3.0}}),
        ("euler", "epsilon", {"path": "vp", "path_kwargs": {"beta_max": 10.0}}),
        ("heun", "epsilon", {"path": "vp"}),
        ("heun", "data", {"path": "subvp"}),
        ("euler", "velocity", {"path": "ve"}),
        ("euler", "epsilon", {}),  # alpha(0) = 0: both start at path.t_min("epsilon")
    ],
)
def test_pipeline_equals_sample_ode(method, prediction, scheduler_kwargs) -> None:
    field = mlp(prediction)
    scheduler = SCHEDULERS[method](**scheduler_kwargs)
    pipe = RectifiedFlowPipeline(model=field, scheduler=scheduler)
    pipe.set_progress_bar_config(disable=True)
    x0 = torch.randn(16, 2, generator=seed(1))
    explicit = not isinstance(scheduler_kwargs.get("grid", "uniform"), str)
    steps = None if explicit else 3
    out = pipe(num_inference_steps=steps, latents=x0, output_type="pt").samples
    final_euler = scheduler_kwargs.get("final_euler", False)
    nfe = None if explicit else 2 * 3 - (1 if final_euler else 0) if method == "heun" else 3
    expected = sample_ode(
        field,
        x0,
        nfe=nfe,
        method=method,
        grid=scheduler_kwargs.get("grid", "uniform"),
        grid_options=scheduler_kwargs.get("grid_options"),
        path=get_path(
            scheduler_kwargs.get("path", "rectified"), **scheduler_kwargs.get("path_kwargs", {})
        ),
        final_euler=final_euler,
    ).x  # the defaults agree: both span [path.t_min(prediction), path.t_max]
    torch.testing.assert_close(out, expected, **CLOSE)


def test_generator_noise_and_image_model_equal_sample_ode(tiny_unet) -> None:
    pipe = RectifiedFlowPipeline(model=tiny_unet, scheduler=FlowHeunScheduler())
    pipe.set_progress_bar_config(disable=True)
    out = pipe(batch_size=3, num_inference_steps=2, generator=seed(0), output_type="pt").images
    x0 = torch.randn(3, 1, 8, 8, generator=seed(0))
    expected = sample_ode(tiny_unet, x0, nfe=4, method="heun").x
    torch.testing.assert_close(out, (expected / 2 + 0.5).clamp(0, 1), **CLOSE)


def test_generator_list_draws_each_sample_from_its_own_generator() -> None:
    pipe = RectifiedFlowPipeline(model=mlp(), scheduler=FlowEulerScheduler())
    pipe.set_progress_bar_config(disable=True)
    both = pipe(batch_size=2, generator=[seed(5), seed(7)]).samples
    alone = pipe(batch_size=1, generator=[seed(7)]).samples
    torch.testing.assert_close(both[1:], alone, **CLOSE)  # matmul rounding depends on B
    with pytest.raises(ValueError, match="one generator per sample"):
        pipe(batch_size=3, generator=[seed(5), seed(7)])


def test_class_labels_reach_the_model() -> None:
    field = mlp(num_classes=3)
    pipe = RectifiedFlowPipeline(model=field, scheduler=FlowEulerScheduler())
    pipe.set_progress_bar_config(disable=True)
    x0 = torch.randn(4, 2, generator=seed(2))
    labels = torch.tensor([0, 1, 2, 0])
    out = pipe(latents=x0, class_labels=labels, num_inference_steps=2).samples
    expected = sample_ode(field, x0, nfe=2, cond={"class_labels": labels}).x
    torch.testing.assert_close(out, expected, **CLOSE)
    assert not torch.allclose(out, pipe(latents=x0, num_inference_steps=2).samples)


def test_scheduler_records_path_and_prediction() -> None:
    scheduler = FlowEulerScheduler(prediction="data", path="vp", path_kwargs={"beta_max": 10.0})
    assert scheduler.config.path == "vp" and scheduler.config.prediction == "data"
    pipe = RectifiedFlowPipeline(model=mlp(), scheduler=scheduler)
    assert pipe.path.params["beta_max"] == 10.0
    with pytest.raises(ValueError, match="unknown path"):
        FlowHeunScheduler(path="nope")
    with pytest.raises(ValueError, match="unknown prediction"):
        FlowEulerScheduler(prediction="noise")


# -- output types -----------------------------------------------------------------------------


def test_image_output_types(tiny_unet) -> None:
    pipe = RectifiedFlowPipeline(model=tiny_unet, scheduler=FlowEulerScheduler())
    pipe.set_progress_bar_config(disable=True)
    kwargs = dict(batch_size=2, num_inference_steps=1)
    pil = pipe(generator=seed(0), **kwargs)  # pil is the default
    assert isinstance(pil, ImagePipelineOutput) and len(pil.images) == 2
    assert all(isinstance(im, Image.Image) and im.size == (8, 8) for im in pil.images)
    assert pil.images[0].mode == "L"
    arr = pipe(generator=seed(0), output_type="np", **kwargs).images
    assert isinstance(arr, np.ndarray) and arr.shape == (2, 8, 8, 1) and arr.dtype == np.float32
    assert arr.min() >= 0 and arr.max() <= 1
    pt = pipe(generator=seed(0), output_type="pt", **kwargs).images
    assert isinstance(pt, torch.Tensor) and pt.shape == (2, 1, 8, 8)
    np.testing.assert_allclose(pt.permute(0, 2, 3, 1).numpy(), arr)
    np.testing.assert_array_equal(np.asarray(pil.images[1]), (arr[1, ..., 0] * 255).round())
    as_tuple = pipe(generator=seed(0), output_type="pt", return_dict=False, **kwargs)
    assert isinstance(as_tuple, tuple) and torch.equal(as_tuple[0], pt)
    with pytest.raises(ValueError, match="output_type"):
        pipe(output_type="latent", **kwargs)


def test_vector_output_types() -> None:
    pipe = RectifiedFlowPipeline(model=mlp(), scheduler=FlowEulerScheduler())
    pipe.set_progress_bar_config(disable=True)
    out = pipe(batch_size=5, generator=seed(0))
    assert isinstance(out, SampleOutput) and out.samples.shape == (5, 2)
    arr = pipe(batch_size=5, generator=seed(0), output_type="np").samples
    np.testing.assert_array_equal(arr, out.samples.numpy())
    (samples,) = pipe(batch_size=5, generator=seed(0), return_dict=False)
    assert torch.equal(samples, out.samples)
    with pytest.raises(ValueError, match="needs an image model"):
        pipe(batch_size=5, output_type="pil")


# -- save / load ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def saved(tmp_path_factory, tiny_unet) -> Path:
    directory = tmp_path_factory.mktemp("pipe")
    RectifiedFlowPipeline(model=tiny_unet, scheduler=FlowHeunScheduler()).save_pretrained(directory)
    return directory


def test_save_load_identical_samples_safetensors_only(saved, tiny_unet) -> None:
    assert files_on_disk(saved) == [
        "model/config.json",
        "model/diffusion_pytorch_model.safetensors",
        "model_index.json",
        "scheduler/scheduler_config.json",
    ]
    index = json.loads((saved / "model_index.json").read_text())
    assert index["_class_name"] == "RectifiedFlowPipeline"
    assert index["scheduler"] == ["flowkit.pipelines.schedulers", "FlowHeunScheduler"]
    original = RectifiedFlowPipeline(model=tiny_unet, scheduler=FlowHeunScheduler())
    expected = original(batch_size=4, num_inference_steps=2, generator=seed(0), output_type="pt")
    for loaded in (RectifiedFlowPipeline.from_pretrained(saved), load_pipeline(saved)):
        assert type(loaded) is RectifiedFlowPipeline
        assert type(loaded.scheduler) is FlowHeunScheduler
        out = loaded(batch_size=4, num_inference_steps=2, generator=seed(0), output_type="pt")
        assert torch.equal(out.images, expected.images)


def test_plain_diffusers_loads_with_custom_pipeline(saved) -> None:
    """What a diffusers user runs: a fresh process, no flowkit import of its own."""
    script = f"""
import torch
from diffusers import DiffusionPipeline
torch.set_num_threads(1)  # as the test process, for bit-identical results
try:
    DiffusionPipeline.from_pretrained({str(saved)!r})
    raise SystemExit("plain from_pretrained unexpectedly worked")
except AttributeError as error:
    assert "RectifiedFlowPipeline" in str(error), error
import importlib.util
pipeline_file = importlib.util.find_spec("flowkit.pipelines.rectified_flow").origin
pipe = DiffusionPipeline.from_pretrained(
    {str(saved)!r}, custom_pipeline=pipeline_file, trust_remote_code=True, use_safetensors=True
)
pipe.set_progress_bar_config(disable=True)
out = pipe(batch_size=4, num_inference_steps=2, generator=torch.Generator().manual_seed(0),
           output_type="pt").images
torch.save(out, {str(saved.parent / "plain.pt")!r})
"""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_MODULES_CACHE": str(saved.parent / "mods")}
    run = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-3000:]
    plain = torch.load(saved.parent / "plain.pt", weights_only=True)
    expected = load_pipeline(saved)(
        batch_size=4, num_inference_steps=2, generator=seed(0), output_type="pt"
    ).images
    assert torch.equal(plain, expected)


def copy_pipeline(source: Path, target: Path) -> Path:
    for file in source.rglob("*"):
        if file.is_file():
            destination = target / file.relative_to(source)
            destination.parent.mkdir(parents=True, exist_ok=True)
            destination.write_bytes(file.read_bytes())
    return target


@pytest.mark.parametrize("damage", ["missing", "corrupt"])
def test_bad_weights_file_is_named(saved, tmp_path, damage) -> None:
    directory = copy_pipeline(saved, tmp_path / "pipe")
    weights = directory / "model" / "diffusion_pytorch_model.safetensors"
    if damage == "missing":
        weights.unlink()
    else:
        weights.write_bytes(b"not a safetensors file")
    error = FileNotFoundError if damage == "missing" else ValueError
    for load in (load_pipeline, RectifiedFlowPipeline.from_pretrained):
        with pytest.raises(error, match="diffusion_pytorch_model.safetensors"):
            load(directory)


def test_missing_model_index_and_unknown_class(saved, tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="model_index.json"):
        load_pipeline(tmp_path)
    directory = copy_pipeline(saved, tmp_path / "pipe")
    index = json.loads((directory / "model_index.json").read_text())
    (directory / "model_index.json").write_text(json.dumps({**index, "_class_name": "Other"}))
    with pytest.raises(ValueError, match="Other"):
        load_pipeline(directory)


# -- one step ---------------------------------------------------------------------------------


def test_one_step_is_z_plus_velocity_at_zero(tiny_unet, tmp_path) -> None:
    pipe = OneStepPipeline(generator=tiny_unet)
    out = pipe(batch_size=3, generator=seed(0), output_type="pt").images
    z = torch.randn(3, 1, 8, 8, generator=seed(0))
    with torch.no_grad():
        expected = z + tiny_unet(z, torch.zeros(3))
    torch.testing.assert_close(out, (expected / 2 + 0.5).clamp(0, 1), rtol=0, atol=0)
    rf = RectifiedFlowPipeline(model=tiny_unet, scheduler=FlowEulerScheduler())
    rf.set_progress_bar_config(disable=True)
    one = rf(batch_size=3, num_inference_steps=1, generator=seed(0), output_type="pt").images
    torch.testing.assert_close(one, out, **CLOSE)
    pipe.save_pretrained(tmp_path)
    assert files_on_disk(tmp_path) == [
        "generator/config.json",
        "generator/diffusion_pytorch_model.safetensors",
        "model_index.json",
    ]
    loaded = load_pipeline(tmp_path)
    assert type(loaded) is OneStepPipeline
    again = loaded(batch_size=3, generator=seed(0), output_type="pt").images
    assert torch.equal(again, out)


def test_one_step_vectors_and_rejections() -> None:
    field = mlp()
    z = torch.randn(6, 2, generator=seed(3))
    out = OneStepPipeline(generator=field)(latents=z).samples
    with torch.no_grad():
        torch.testing.assert_close(out, z + field(z, torch.zeros(6)), rtol=0, atol=0)
    x0_field = mlp("data")
    with torch.no_grad():
        expected = x0_field(z, torch.zeros(6))
    torch.testing.assert_close(OneStepPipeline(generator=x0_field)(latents=z).samples, expected)
    with pytest.raises(ValueError, match="exactly one step"):
        OneStepPipeline(generator=field)(num_inference_steps=2)
    with pytest.raises(ValueError, match="velocity or data"):
        OneStepPipeline(generator=mlp("epsilon"))
