"""flowkit.load: every kind of source, the path a saved model records, one sample call."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import flowkit
from flowkit.loading import LoadedModel, load
from flowkit.models import MLPField
from flowkit.paths import get_path
from flowkit.pipelines import FlowEulerScheduler, RectifiedFlowPipeline
from flowkit.solvers import sample_ode, seeded_noise
from flowkit.training import Trainer, load_config

VP_RUN = [
    "data.name=checkerboard",
    "data.num_points=512",
    "model.kind=mlp",
    "model.prediction=epsilon",
    "model.kwargs={hidden_dim: 16, num_layers: 2}",
    "objective.kind=diffusion",
    "objective.path=vp",
    "objective.path_kwargs={beta_max: 10.0}",
    "optim.batch_size=32",
    "train.steps=4",
    "train.checkpoint_every=4",
    "train.sample_num=8",
    "train.sample_nfe=2",
    "train.device=cpu",
]


@pytest.fixture(scope="module")
def vp_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("vp") / "run"
    Trainer(load_config(None, VP_RUN), run, progress=False).fit()
    return run


def test_a_saved_vp_model_samples_identically_from_every_source(vp_run: Path) -> None:
    """Regression: RUN/pipeline/model alone was sampled on the rectified path."""
    sources = [vp_run, vp_run / "pipeline", vp_run / "pipeline" / "model"]
    loaded = [load(source) for source in sources]
    for model in loaded:
        assert (model.path.name, model.prediction) == ("vp", "epsilon")
        assert model.path.params["beta_max"] == 10.0
    draws = [model.sample(range(6), seed=3, nfe=4).x for model in loaded]  # Euler
    for x in draws[1:]:
        assert torch.equal(x, draws[0])
    pipe = RectifiedFlowPipeline.from_pretrained(vp_run / "pipeline")  # an Euler scheduler
    pipe.set_progress_bar_config(disable=True)
    x0 = seeded_noise((2,), range(6), 3) * loaded[0].path.prior_std
    by_pipeline = pipe(num_inference_steps=4, latents=x0, output_type="pt").samples
    torch.testing.assert_close(by_pipeline, draws[0], rtol=1e-5, atol=1e-5)
    by_solver = sample_ode(loaded[0].field, x0, 4, path=loaded[0].path).x
    torch.testing.assert_close(by_solver, draws[0], rtol=0, atol=0)
    itself = sample_ode(loaded[0].field, x0, 4).x  # the field's config names its path
    torch.testing.assert_close(itself, draws[0], rtol=0, atol=0)
    rectified = sample_ode(loaded[0].field, x0, 4, path=get_path("rectified")).x
    assert not torch.allclose(rectified, draws[0], atol=1e-3)  # the old silent default


def test_the_model_config_records_its_path(vp_run: Path) -> None:
    config = json.loads((vp_run / "pipeline" / "model" / "config.json").read_text())
    assert config["path"] == "vp" and config["path_kwargs"] == {"beta_max": 10.0}


def test_an_old_model_folder_without_a_path_is_refused_with_the_fix(tmp_path: Path) -> None:
    MLPField(dim=2, hidden_dim=8, num_layers=1).save_pretrained(tmp_path / "m")
    config_file = tmp_path / "m" / "config.json"
    config = json.loads(config_file.read_text())
    assert config["path"] == "rectified"  # a fresh network records its default path
    del config["path"], config["path_kwargs"]
    config_file.write_text(json.dumps(config))
    with pytest.raises(ValueError, match='does not record the path.*"path": "rectified"'):
        load(tmp_path / "m")
    config["path"] = "vp"
    config_file.write_text(json.dumps(config))
    assert load(tmp_path / "m").path.name == "vp"


def test_an_old_model_inside_a_pipeline_takes_the_schedulers_path(tmp_path: Path) -> None:
    model = MLPField(dim=2, hidden_dim=8, num_layers=1, prediction="epsilon", path="ve")
    scheduler = FlowEulerScheduler(prediction="epsilon", path="ve")
    RectifiedFlowPipeline(model=model, scheduler=scheduler).save_pretrained(tmp_path / "p")
    config_file = tmp_path / "p" / "model" / "config.json"
    config = json.loads(config_file.read_text())
    del config["path"], config["path_kwargs"]
    config_file.write_text(json.dumps(config))
    assert load(tmp_path / "p" / "model").path.name == "ve"
    config["path"] = "vp"  # disagrees with the scheduler
    config_file.write_text(json.dumps(config))
    with pytest.raises(ValueError, match="records path 'vp'.*records 've'"):
        load(tmp_path / "p")


def test_sources_that_hold_no_model_are_named(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load(tmp_path / "missing")
    with pytest.raises(FileNotFoundError, match="not a run directory"):
        load(tmp_path)


def test_flowkit_load_is_the_loader_and_sample_needs_a_budget(tmp_path: Path) -> None:
    torch.manual_seed(0)
    MLPField(dim=2, hidden_dim=8, num_layers=1).save_pretrained(tmp_path / "m")
    model = flowkit.load(tmp_path / "m")
    assert isinstance(model, LoadedModel) and model.sample_shape == (2,)
    with pytest.raises(ValueError, match="needs nfe"):
        model.sample(range(2))
    with pytest.raises(ValueError, match="does not apply"):
        model.sample(range(2), nfe=2, method="additive")
    sde = model.sample(range(4), seed=1, nfe=6, method="flow_sde").x
    torch.testing.assert_close(model.sample([2, 3], seed=1, nfe=6, method="flow_sde").x, sde[2:])
