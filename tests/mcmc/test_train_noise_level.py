"""``flowkit train`` of ``objective.kind: noise_level``: the run saves a classifier that
``load_estimator`` reads and ``flowkit sample --method dmcmc --estimator RUN`` uses."""

from __future__ import annotations

import json

import pytest
import torch
import yaml

from flowkit.cli.main import main
from flowkit.data import build_dataset
from flowkit.loading import load
from flowkit.mcmc.estimators import load_estimator
from flowkit.models.mlp import MLPField
from flowkit.pipelines import FlowEulerScheduler, RectifiedFlowPipeline
from flowkit.training.builders import build_model, build_objective
from flowkit.training.config import ConfigError, RunConfig, config_from_dict

GRID = {"num_levels": 6, "s_min": 0.05, "s_max": 10.0}
CONFIG = {
    "data": {"name": "checkerboard", "num_points": 1024},
    "model": {"kind": "classifier", "kwargs": {"hidden": 32, "depth": 2}},
    "objective": {"kind": "noise_level", "kwargs": GRID},
    "optim": {"lr": 3.0e-3, "batch_size": 128},
    "train": {"steps": 300, "ema_decay": 0.9, "log_every": 100, "checkpoint_every": 300,
              "sample_every": 50},
}  # fmt: skip


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("noise_level")
    config = root / "config.yaml"
    config.write_text(yaml.safe_dump(CONFIG))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # module-scoped: set up before conftest's one_thread
    try:
        assert main(["train", str(config), "--out", str(root / "run"), "--no-progress"]) == 0
    finally:
        torch.set_num_threads(threads)
    return root / "run"


def test_run_saves_a_classifier_that_recovers_levels(run) -> None:
    assert (run / "pipeline" / "config.json").is_file()
    assert not (run / "pipeline" / "model_index.json").exists()
    assert not list(run.glob("samples/*")), "a classifier run writes no sample snapshots"
    classifier = load_estimator(run)
    assert classifier.config.num_levels == 6 and classifier.sample_shape == (2,)
    x = build_dataset("checkerboard", num_points=3000, seed=1).x
    g = torch.Generator().manual_seed(0)
    k = torch.randint(0, 6, (len(x),), generator=g)
    y = x + classifier.levels.float()[k, None] * torch.randn(x.shape, generator=g)
    with torch.no_grad():
        accuracy = (classifier(y).argmax(1) == k).float().mean().item()
    assert accuracy > 0.4, accuracy  # chance is 1/6
    with pytest.raises(ValueError, match="noise-level classifier"):
        load(run)


def test_sample_dmcmc_with_the_trained_estimator(run, tmp_path, capsys) -> None:
    torch.manual_seed(0)
    field = MLPField(dim=2, hidden_dim=16, prediction="velocity", path="rectified")
    RectifiedFlowPipeline(model=field, scheduler=FlowEulerScheduler()).save_pretrained(
        tmp_path / "model"
    )
    out = tmp_path / "s.safetensors"
    argv = ["sample", str(tmp_path / "model"), "--method", "dmcmc", "--estimator", str(run),
            "--levels", "6", "--s-min", "0.05", "--s-max", "10", "--nfe", "4", "--skip", "2",
            "--chains", "4", "--burn-in", "1", "--num", "6", "--out", str(out)]  # fmt: skip
    assert main(argv) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert report["num"] == 6 and report["chain_nfe"] == 2 and report["estimator_calls"] == 2
    assert report["nfe"] == report["chain_nfe"] + report["integrator_nfe"] <= 4


def test_noise_level_config_errors_name_the_key(tmp_path) -> None:
    def config(section: str, **values) -> RunConfig:
        data = yaml.safe_load(yaml.safe_dump(CONFIG))
        data[section].update(values)
        return config_from_dict(data)

    with pytest.raises(ConfigError, match="objective.kwargs.levels"):
        build_objective(config("objective", kwargs={"levels": 3}))
    with pytest.raises(ConfigError, match="objective.path"):
        build_objective(config("objective", path="vp"))
    dataset = build_dataset("checkerboard", num_points=16)
    with pytest.raises(ConfigError, match="model.kind='mlp'"):
        cfg = config("model", kind="mlp")
        build_model(cfg.model, dataset, cfg.objective)
    with pytest.raises(ConfigError, match="model.kwargs.hidden_dim"):
        cfg = config("model", kwargs={"hidden_dim": 3})
        build_model(cfg.model, dataset, cfg.objective)
