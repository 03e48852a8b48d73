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
