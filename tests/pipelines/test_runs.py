"""load_field: runs, saved pipelines and model folders, each with the path it was trained on."""

from pathlib import Path

import pytest
import torch

from flowkit.models import MLPField
from flowkit.pipelines import FlowEulerScheduler, RectifiedFlowPipeline
from flowkit.pipelines.runs import load_field


def test_pipeline_directory_gives_its_model_and_recorded_path(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = MLPField(dim=2, hidden_dim=16, num_layers=1, prediction="epsilon")
    scheduler = FlowEulerScheduler(
        prediction="epsilon", path="vp", path_kwargs={"beta_min": 0.1, "beta_max": 10.0}
    )
    RectifiedFlowPipeline(model=model, scheduler=scheduler).save_pretrained(tmp_path / "pipe")
    loaded, path = load_field(tmp_path / "pipe")
    assert path.name == "vp" and path.params["beta_max"] == 10.0
    x, t = torch.randn(3, 2), torch.rand(3)
    torch.testing.assert_close(loaded(x, t), model(x, t))
    (tmp_path / "run").mkdir()
    (tmp_path / "pipe").rename(tmp_path / "run" / "pipeline")
    run_loaded, run_path = load_field(tmp_path / "run")  # a run directory holds pipeline/
    assert run_path.name == "vp" and isinstance(run_loaded, MLPField)


def test_model_folder_and_errors(tmp_path: Path) -> None:
    MLPField(dim=2, hidden_dim=8, num_layers=1).save_pretrained(tmp_path / "m")
    _, path = load_field(tmp_path / "m")
    assert path.name == "rectified"
    with pytest.raises(FileNotFoundError, match="not a run directory"):
        load_field(tmp_path)


def test_accelerated_pipeline_gives_the_same_samples_on_cpu(tmp_path: Path) -> None:
    from flowkit.models import unet

    torch.manual_seed(0)
    pipe = RectifiedFlowPipeline(model=unet("tiny"), scheduler=FlowEulerScheduler())
    plain = pipe(
        batch_size=2,
        num_inference_steps=2,
        output_type="pt",
        generator=torch.Generator().manual_seed(1),
    ).images
    pipe.accelerate(channels_last=True)
    fast = pipe(
        batch_size=2,
        num_inference_steps=2,
        output_type="pt",
        generator=torch.Generator().manual_seed(1),
    ).images
    torch.testing.assert_close(fast, plain, rtol=1e-4, atol=1e-5)
    bf16 = pipe.accelerate(autocast_dtype=torch.bfloat16)(
        batch_size=2,
        num_inference_steps=2,
        output_type="pt",
        generator=torch.Generator().manual_seed(1),
    ).images
    assert bf16.dtype == torch.float32 and (bf16 - plain).abs().max() < 0.1
