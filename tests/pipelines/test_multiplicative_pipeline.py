"""MultiplicativePipeline: the GBM sampler as a diffusers pipeline; safetensors round trip with
identical samples, seeded sampling, output types, option checks and `flowkit sample`."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from flowkit.cli.main import main
from flowkit.models import MLPField, unet
from flowkit.objectives import MultiplicativeScoreLoss
from flowkit.paths import GBMProcess, LogNormal, fit_lognormal, to_positive
from flowkit.pipelines import GBMScheduler, MultiplicativePipeline, load_pipeline
from flowkit.solvers import sample_gbm


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def pipeline_of_loss(loss: MultiplicativeScoreLoss, model) -> MultiplicativePipeline:
    """The pipeline a run with this objective saves (``saved_as = "multiplicative"``)."""
    return MultiplicativePipeline(model=model, scheduler=GBMScheduler(**loss.pipeline_settings()))


@pytest.fixture(scope="module")
def pipe() -> MultiplicativePipeline:
    torch.manual_seed(0)
    images = torch.rand(64, 1, 8, 8, generator=torch.Generator().manual_seed(1)) * 2 - 1
    loss = MultiplicativeScoreLoss(
        data_law=fit_lognormal(to_positive(images)), steps=6, clean_steps=2, sampler="additive"
    )
    return pipeline_of_loss(loss, unet("tiny").eval())


def seed(value: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(value)


def test_save_and_load_round_trip_gives_identical_samples(
    pipe: MultiplicativePipeline, tmp_path: Path
) -> None:
    pipe.save_pretrained(tmp_path)
    files = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file())
    assert files == [
        "model/config.json",
        "model/diffusion_pytorch_model.safetensors",
        "model_index.json",
        "scheduler/scheduler_config.json",
    ]
    config = json.loads((tmp_path / "scheduler" / "scheduler_config.json").read_text())
    assert config["sigma"] == 0.8 and config["sampler"] == "additive" and config["steps"] == 6
    assert np.asarray(config["data_log_mean"]).shape == (1, 8, 8)
    before = pipe(batch_size=3, generator=seed(5), output_type="pt").images
    for loaded in (MultiplicativePipeline.from_pretrained(tmp_path), load_pipeline(tmp_path)):
        assert isinstance(loaded, MultiplicativePipeline)
        after = loaded(batch_size=3, generator=seed(5), output_type="pt").images
        torch.testing.assert_close(after, before, rtol=0, atol=0)
        torch.testing.assert_close(loaded.scheduler.start.std, pipe.scheduler.start.std)
    assert not torch.equal(before, pipe(batch_size=3, generator=seed(6), output_type="pt").images)


def test_call_is_the_sampler_from_the_fitted_start(pipe: MultiplicativePipeline) -> None:
    z = torch.randn(2, 1, 8, 8, generator=seed(1))
    out = pipe(latents=z, seed=9, output_type="pt").images
    start = pipe.scheduler.start
    assert start.std.shape == (1, 8, 8) and bool((start.std > 0.8).all())  # data + sigma^2
    x = sample_gbm(pipe.model, start.sample(z), seed=9, **pipe.scheduler.sampler_options())
    torch.testing.assert_close(out, (x.x.clamp(1, 2) - 1), rtol=0, atol=0)


def test_output_types_and_step_override(pipe: MultiplicativePipeline) -> None:
    images = pipe(batch_size=2, generator=seed(0)).images  # PIL by default
    assert len(images) == 2 and images[0].size == (8, 8)
    array = pipe(batch_size=2, num_inference_steps=3, generator=seed(0), output_type="np").images
    assert array.shape == (2, 8, 8, 1) and array.min() >= 0 and array.max() <= 1
    with pytest.raises(ValueError, match="num_inference_steps must be an int >= 1, got 0"):
        pipe(num_inference_steps=0)


def test_seeded_samples_do_not_depend_on_the_batch(pipe: MultiplicativePipeline) -> None:
    """Same start and increments whatever the batch; only the UNet's float rounding (which
    depends on the batch size) differs."""
    batch = pipe.sample(range(4), seed=2)
    single = pipe.sample([3], seed=2)
    torch.testing.assert_close(batch.x[3:], single.x, rtol=0, atol=1e-5)
    assert not torch.allclose(batch.x[2:3], single.x, atol=1e-2)
    assert batch.nfe == 6 and float(batch.x.min()) >= -1 and float(batch.x.max()) <= 1


def test_vector_pipeline_returns_positive_samples(tmp_path: Path) -> None:
    torch.manual_seed(0)
    law = LogNormal(torch.tensor([0.2, 0.5]), torch.tensor([0.1, 0.2]))
    loss = MultiplicativeScoreLoss(GBMProcess(sigma=0.5), data_law=law, shift=False, steps=4)
    vector = pipeline_of_loss(loss, MLPField(dim=2, hidden_dim=16, num_layers=1).eval())
    samples = vector(batch_size=5, generator=seed(0)).samples
    assert samples.shape == (5, 2) and bool((samples > 0).all())
    vector.save_pretrained(tmp_path)
    again = load_pipeline(tmp_path)(batch_size=5, generator=seed(0)).samples
    torch.testing.assert_close(again, samples, rtol=0, atol=0)
    with pytest.raises(ValueError, match="output_type='pil' needs an image model"):
        vector(output_type="pil")


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"sampler": "heun"}, "unknown GBM sampler 'heun'"),
        ({"steps": -3}, "steps must be an int >= 1, got -3"),
        ({"sigma": 0.0}, "sigma must be finite and > 0, got 0.0"),
        ({"data_log_std": -1.0}, "std must be >= 0, got minimum -1.0"),
        ({"data_log_mean": [0.0, 0.0], "data_log_std": [1.0]}, r"must have the same shape"),
    ],
)
def test_bad_scheduler_options_raise_and_name_the_value(options: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        GBMScheduler(**options)


def test_flowkit_sample_uses_the_saved_sampler(
    pipe: MultiplicativePipeline, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    pipe.save_pretrained(tmp_path / "pipeline")
    out = tmp_path / "s.safetensors"
    args = ["sample", str(tmp_path), "--num", "5", "--batch-size", "2", "--out", str(out)]
    assert main(args) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert report["nfe"] == 6 and report["method"] == "additive" and report["num"] == 5
    samples = load_file(out)["samples"]
    torch.testing.assert_close(samples, pipe.sample(range(5), seed=0).x, rtol=0, atol=1e-5)
    assert main([*args, "--method", "multiplicative", "--nfe", "4"]) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert report["nfe"] == 4 and report["method"] == "multiplicative"
    assert main([*args, "--method", "euler"]) == 2  # a flow solver on a GBM model
    assert "method must be one of ['multiplicative', 'additive'], got 'euler'" in (
        capsys.readouterr().err
    )


def test_fid_samples_a_gbm_model_with_its_own_sampler(
    pipe: MultiplicativePipeline, tmp_path: Path
) -> None:
    from flowkit.evaluation.sources import iter_model_samples
    from flowkit.loading import load

    pipe.save_pretrained(tmp_path / "pipeline")
    draws = list(iter_model_samples(tmp_path, range(5), 2, nfe=4, seed=0))
    assert [n for _, n in draws] == [4, 4, 4]
    expected = pipe.sample(range(5), seed=0, num_inference_steps=4).x.clamp(-1, 1)
    torch.testing.assert_close(torch.cat([x for x, _ in draws]), expected, rtol=0, atol=1e-5)
    with pytest.raises(ValueError, match="must be one of \\['multiplicative', 'additive'\\]"):
        list(iter_model_samples(tmp_path, range(2), 2, nfe=4, method="heun"))
    with pytest.raises(ValueError, match="network of a multiplicative \\(GBM\\) model"):
        load(tmp_path / "pipeline" / "model")  # no affine path: never sampled as a flow
