"""The trainer: exact resume, NaN handling, outputs on disk, run-directory safety."""

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from flowkit.objectives import Objective
from flowkit.training import NonFiniteLossError, Trainer, load_config
from flowkit.training.config import ConfigError

SMALL = [
    "data.name=checkerboard",
    "data.num_points=2000",
    "model.kind=mlp",
    "model.kwargs={hidden_dim: 32, num_layers: 2}",
    "optim.batch_size=64",
    "optim.lr=1e-3",
    "optim.warmup_steps=5",
    "train.log_every=5",
    "train.checkpoint_every=10",
    "train.sample_num=64",
    "train.sample_nfe=4",
    "train.device=cpu",
]


def _train(run: Path, *overrides: str, resume: bool = False) -> Trainer:
    trainer = Trainer(
        load_config(None, SMALL + list(overrides)), run, resume=resume, progress=False
    )
    trainer.fit()
    return trainer


def _weights(run: Path) -> dict[str, torch.Tensor]:
    return load_file(run / "pipeline" / "model" / "diffusion_pytorch_model.safetensors")


def test_resume_equals_uninterrupted(tmp_path: Path) -> None:
    _train(tmp_path / "full", "train.steps=30")
    _train(tmp_path / "split", "train.steps=10")
    _train(tmp_path / "split", "train.steps=30", resume=True)
    full, split = _weights(tmp_path / "full"), _weights(tmp_path / "split")
    for name in full:
        assert torch.equal(full[name], split[name]), name
    lines = (tmp_path / "split" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in lines] == [5, 10, 15, 20, 25, 30]


def test_resume_after_a_crash_continues_from_the_last_checkpoint(tmp_path: Path) -> None:
    """A run killed after its step-20 checkpoint resumes from there and ends identical."""
    _train(tmp_path / "full", "train.steps=30")
    _train(tmp_path / "crashed", "train.steps=20")
    (tmp_path / "crashed" / "checkpoints" / ".tmp-step-00000030").mkdir()  # half-written
    resumed = _train(tmp_path / "crashed", "train.steps=30", resume=True)
    assert resumed.step == 30
    full, crashed = _weights(tmp_path / "full"), _weights(tmp_path / "crashed")
    assert all(torch.equal(full[k], crashed[k]) for k in full)


def test_outputs_on_disk(tmp_path: Path) -> None:
    _train(tmp_path, "train.steps=10", "train.sample_every=5")
    assert (tmp_path / "config.yaml").is_file()
    assert sorted(p.name for p in (tmp_path / "samples").iterdir()) == [
        "final.png",
        "step-00000005.png",
        "step-00000010.png",
    ]
    assert (tmp_path / "pipeline" / "model_index.json").is_file()
    assert (tmp_path / "pipeline" / "scheduler" / "scheduler_config.json").is_file()
    assert not list(tmp_path.rglob("*.tmp")) and not list(tmp_path.rglob("*.bin"))
    record = json.loads((tmp_path / "metrics.jsonl").read_text().splitlines()[-1])
    assert {"step", "loss", "lr", "grad_norm", "steps_per_s"} <= set(record)


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path: Path) -> None:
    trainer = Trainer(
        load_config(None, SMALL + ["train.steps=30", "train.log_every=1"]), tmp_path, progress=False
    )
    objective = trainer.objective

    class PoisonedAfterStep12(Objective):
        path = objective.path

        def __call__(self, model, x1, **kw):
            loss = objective(model, x1, **kw)
            return loss * float("nan") if trainer.step >= 12 else loss

    trainer.objective = PoisonedAfterStep12()
    with pytest.raises(NonFiniteLossError, match="between step 13 and step 13.*step-00000010"):
        trainer.fit()
    assert [p.name for p in (tmp_path / "checkpoints").iterdir()] == ["step-00000010"]


def test_existing_run_needs_resume(tmp_path: Path) -> None:
    _train(tmp_path, "train.steps=10")
    with pytest.raises(FileExistsError, match="--resume"):
        _train(tmp_path, "train.steps=10")
    with pytest.raises(ConfigError, match="different model.kwargs"):
        _train(tmp_path, "train.steps=20", "model.kwargs={hidden_dim: 16}", resume=True)


def test_bad_data_and_model_settings_are_named(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown data set 'checkerbored'"):
        _train(tmp_path / "a", "data.name=checkerbored")
    with pytest.raises(ValueError, match="data.root"):
        _train(tmp_path / "b", "data.name=image_folder")
    with pytest.raises(FileNotFoundError, match="no_such_folder"):
        _train(tmp_path / "c", "data.name=image_folder", f"data.root={tmp_path}/no_such_folder")
    with pytest.raises(ConfigError, match="model.kind='mlp' needs vector data"):
        _train(tmp_path / "d", "data.name=digits")
    with pytest.raises(ConfigError, match="train.precision"):
        _train(tmp_path / "e", "train.precision=fp8")


def test_bf16_autocast_trains_and_saves_fp32_weights(tmp_path: Path) -> None:
    trainer = _train(tmp_path, "train.steps=10", "train.precision=bf16")
    weights = _weights(tmp_path)
    assert all(w.dtype == torch.float32 for w in weights.values())
    record = json.loads((tmp_path / "metrics.jsonl").read_text().splitlines()[-1])
    assert record["loss"] == record["loss"] and trainer.step == 10  # finite, not NaN


def test_minibatch_ot_coupling_from_the_config(tmp_path: Path) -> None:
    trainer = _train(
        tmp_path,
        "train.steps=5",
        "objective.coupling=minibatch_ot",
        "objective.coupling_kwargs={method: exact}",
    )
    assert type(trainer.objective.coupling).__name__ == "MinibatchOT"
    with pytest.raises(ConfigError, match="unknown objective.coupling 'ot'"):
        _train(tmp_path / "b", "objective.coupling=ot")
