"""The f-distill loop on a tiny 2-D teacher: bitwise resume of all three networks, the saved
one-step pipeline, bad inputs and a NaN loss."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from flowkit.distill.config import DistillConfig
from flowkit.distill.networks import generate
from flowkit.distill.trainer import DistillTrainer
from flowkit.models import MLPField
from flowkit.training import NonFiniteLossError, load_config
from flowkit.training.config import ConfigError


@pytest.fixture(scope="module")
def teacher(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained 2-D rectified-flow field saved as a model directory (enough for the loop)."""
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("teacher") / "model"
    MLPField(dim=2, hidden_dim=16, num_layers=1).save_pretrained(folder)
    return folder


def small(teacher: Path, *overrides: str) -> list[str]:
    return [
        f"teacher.source={teacher}",
        "data.name=8gaussians",
        "data.num_points=500",
        "distill.head_hidden=8",
        "optim.batch_size=32",
        "optim.warmup_steps=2",
        "train.log_every=2",
        "train.checkpoint_every=3",
        "train.sample_num=16",
        "train.device=cpu",
        *overrides,
    ]


def _run(run: Path, overrides: list[str], resume: bool = False) -> DistillTrainer:
    config = load_config(None, overrides, schema=DistillConfig)
    trainer = DistillTrainer(config, run, resume=resume, progress=False)
    trainer.fit()
    return trainer


def test_resume_equals_uninterrupted(teacher: Path, tmp_path: Path) -> None:
    """All three networks, the EMA generator and the optimizers, bitwise."""
    full = _run(tmp_path / "full", small(teacher, "train.steps=6", "distill.critic_steps=2"))
    _run(tmp_path / "split", small(teacher, "train.steps=3", "distill.critic_steps=2"))
    split = _run(
        tmp_path / "split", small(teacher, "train.steps=6", "distill.critic_steps=2"), True
    )
    a, b = full.checkpoints.latest(), split.checkpoints.latest()
    names = ["generator", "generator_ema", "fake", "head", "generator_optim", "critic_optim"]
    for name in names:
        left, right = load_file(a / f"{name}.safetensors"), load_file(b / f"{name}.safetensors")
        assert left.keys() == right.keys()
        for key in left:
            assert torch.equal(left[key], right[key]), (name, key)
    first = load_file(
        tmp_path / "split" / "checkpoints" / "step-00000006" / "generator.safetensors"
    )
    start = load_file(teacher / "diffusion_pytorch_model.safetensors")
    assert any(not torch.equal(first[k], start[k]) for k in start)  # it did train
    steps = [json.loads(x)["step"] for x in (tmp_path / "split" / "metrics.jsonl").open()]
    assert steps == [2, 3, 4, 6]
    record = json.loads((tmp_path / "split" / "metrics.jsonl").read_text().splitlines()[-1])
    assert {"gen_loss", "critic_loss", "fake_dsm", "disc", "log_ratio"} <= set(record)


def test_the_pipeline_is_a_one_step_model(teacher: Path, tmp_path: Path) -> None:
    """RUN/pipeline is a OneStepPipeline that flowkit.load samples at nfe=1 as G(z)."""
    from flowkit.loading import load

    no_gan = ["distill.divergence=reverse_kl", "distill.disc_weight=0", "distill.gan_weight=0"]
    trainer = _run(tmp_path / "run", small(teacher, "train.steps=2", *no_gan))
    index = json.loads((tmp_path / "run" / "pipeline" / "model_index.json").read_text())
    assert index["_class_name"] == "OneStepPipeline"
    loaded = load(tmp_path / "run")
    got = loaded.sample(range(8), seed=3, nfe=1).x
    torch.testing.assert_close(got, trainer.samples(8, seed=3), rtol=1e-5, atol=1e-6)
    # the generator starts as the teacher's one-step Euler sample (velocity teacher)
    teacher_field = load(teacher).field
    z = torch.randn(4, 2)
    fresh = DistillTrainer(load_config(None, small(teacher), schema=DistillConfig),
                           tmp_path / "fresh", progress=False)  # fmt: skip
    with torch.no_grad():
        expected = z + teacher_field(z, torch.zeros(4))
        torch.testing.assert_close(generate(fresh.generator, z), expected)


def test_bad_inputs_are_clear_errors(tmp_path: Path) -> None:
    folder = tmp_path / "teacher3d"
    MLPField(dim=3, hidden_dim=8, num_layers=1).save_pretrained(folder)
    with pytest.raises(ConfigError, match=r"shape \(3,\).*has shape \(2,\)"):
        DistillTrainer(load_config(None, small(folder), schema=DistillConfig), tmp_path / "a")
    assert not (tmp_path / "a").exists()  # nothing written for a bad input
    with pytest.raises(ConfigError, match="unknown divergence 'kl'.*forward_kl"):
        DistillTrainer(
            load_config(None, small(folder, "distill.divergence=kl"), schema=DistillConfig),
            tmp_path / "b",
        )
    with pytest.raises(ConfigError, match="unknown config key 'distill.divergense'"):
        load_config(None, ["distill.divergense=js"], schema=DistillConfig)
    with pytest.raises(ConfigError, match="disc_weight > 0"):
        DistillTrainer(
            load_config(None, small(folder, "distill.disc_weight=0"), schema=DistillConfig),
            tmp_path / "c",
        )


def test_a_nan_loss_stops_and_keeps_the_last_good_checkpoint(
    teacher: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = load_config(None, small(teacher, "train.steps=8"), schema=DistillConfig)
    trainer = DistillTrainer(config, tmp_path / "run", progress=False)
    original = trainer.losses.generator_loss
    calls = []

    def poisoned(*args, **kwargs):
        loss, x, stats = original(*args, **kwargs)
        calls.append(1)
        return (loss * float("nan") if len(calls) > 4 else loss), x, stats

    monkeypatch.setattr(trainer.losses, "generator_loss", poisoned)
    with pytest.raises(NonFiniteLossError, match="gen_loss.*became NaN.*step-00000003"):
        trainer.fit()
    assert [p.name for p in trainer.checkpoints.list()] == ["step-00000003"]
    assert not (tmp_path / "run" / "pipeline").exists()
