"""Resumable script stages: train-or-resume, and per-stage wall times kept across reruns."""

import json
from pathlib import Path

from flowkit.experiments.stages import record_minutes, train_or_resume

CONFIG = Path(__file__).parents[2] / "configs" / "checkerboard.yaml"
TINY = [
    "data.num_points=200",
    "model.kwargs={hidden_dim: 8, num_layers: 1}",
    "optim.batch_size=16",
    "train.steps=3",
    "train.sample_every=0",
    "train.device=cpu",
]


def test_a_finished_stage_is_not_trained_again(tmp_path):
    pipeline = train_or_resume(CONFIG, TINY, tmp_path / "run", progress=False)
    assert (pipeline / "model_index.json").is_file()
    weights = next(pipeline.rglob("*.safetensors"))
    stamp = weights.stat().st_mtime_ns
    assert train_or_resume(CONFIG, TINY, tmp_path / "run", progress=False) == pipeline
    assert weights.stat().st_mtime_ns == stamp


def test_skipped_stages_keep_the_time_they_took(tmp_path):
    path = tmp_path / "timings.json"
    assert record_minutes(path, {"train": 600.0, "report": 30.0}) == {"train": 10.0, "report": 0.5}
    again = record_minutes(path, {"train": 0.01, "report": 90.0, "new": 0.2})
    assert again == {"train": 10.0, "report": 1.5, "new": 0.0}
    assert json.loads(path.read_text()) == again
