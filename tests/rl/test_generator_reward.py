"""ReinFlow for generators: the image/vector chain's likelihood, first ratio, KL formula,
PPO on a toy reward, exact resume, refusal of unsuitable models and the saved pipeline."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch.distributions import Normal, kl_divergence

from flowkit.models import MLPField
from flowkit.rl.generator import NoisyFlowGenerator, load_velocity_model, step_kl
from flowkit.rl.generator_config import GeneratorRewardConfig
from flowkit.rl.generator_trainer import GeneratorRewardTrainer
from flowkit.training.config import config_from_dict

TARGET = torch.tensor([0.5, -0.5])


def _records(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def toy_reward(x: torch.Tensor) -> torch.Tensor:
    """``-|x - target|^2``: ``(B, 2) -> (B,)``."""
    return -(x - TARGET).square().sum(dim=1)


@pytest.fixture(scope="module")
def saved_flow(tmp_path_factory) -> Path:
    """A tiny rectified velocity field on 2-D data, saved as a pipeline."""
    from flowkit.pipelines import FlowEulerScheduler, RectifiedFlowPipeline

    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("flow") / "pipeline"
    model = MLPField(dim=2, hidden_dim=16, num_layers=1)
    scheduler = FlowEulerScheduler(prediction="velocity", path="rectified")
    RectifiedFlowPipeline(model=model, scheduler=scheduler).save_pretrained(folder)
    return folder


def _generator(saved_flow: Path, steps: int = 3) -> NoisyFlowGenerator:
    loaded = load_velocity_model(saved_flow)
    gen = NoisyFlowGenerator(loaded.field, loaded.sample_shape, steps, 0.05, 0.5)
    with torch.no_grad():
        gen.noise.normal_(0, 1.0, generator=torch.Generator().manual_seed(5))
    return gen


def _config(model: Path, **ppo) -> GeneratorRewardConfig:
    settings = {"iterations": 4, "batch_size": 64, "epochs": 2, "minibatch_size": 32,
                "lr": 3e-3, "noise_lr": 0.0, "kl_coef": 0.0, "eval_every": 0,
                "eval_num": 256, **ppo}  # fmt: skip
    return config_from_dict({
        "generator": {"model": str(model), "steps": 2, "sigma_min": 0.05, "sigma_max": 0.3},
        "ppo": settings, "train": {"checkpoint_every": 2},
    }, GeneratorRewardConfig)  # fmt: skip


def test_chain_log_prob_equals_an_independent_computation(saved_flow: Path) -> None:
    gen = _generator(saved_flow)
    with torch.no_grad():
        sample = gen.sample(6, torch.Generator().manual_seed(1))
        chain, k = sample.chain, gen.steps
        sig = torch.exp(0.5 * (2 * torch.log(torch.tensor(0.05)) + (2 * torch.log(
            torch.tensor(0.5)) - 2 * torch.log(torch.tensor(0.05))) * (torch.tanh(gen.noise) + 1)
            / 2))  # fmt: skip
        expected = Normal(0.0, 1.0).log_prob(chain[:, 0]).sum(-1)
        for i in range(k):
            x = chain[:, i]
            mu = x + gen.field(x, torch.full((6,), i / k)) / k
            expected = expected + Normal(mu, sig[i]).log_prob(chain[:, i + 1]).sum(-1)
        scored = gen.log_prob(chain)
    assert chain.shape == (6, k + 1, 2)
    torch.testing.assert_close(scored, expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(sample.log_prob, expected, rtol=1e-5, atol=1e-5)


def test_step_kl_equals_torch_distributions(saved_flow: Path) -> None:
    gen = _generator(saved_flow)
    chain = gen.sample(5, torch.Generator().manual_seed(2)).chain.detach()
    other = MLPField(dim=2, hidden_dim=16, num_layers=1)
    with torch.no_grad():
        mu, ref, sig = gen.means(chain), gen.means(chain, other), gen.sigmas(5)
        expected = kl_divergence(Normal(mu, sig.expand_as(mu)), Normal(ref, sig.expand_as(mu)))
        got = step_kl(mu, ref, sig)
    torch.testing.assert_close(got, expected.sum(dim=(1, 2)))
    assert (got > 0).all()


def test_first_ratio_is_exactly_one_and_reward_rises(saved_flow: Path, tmp_path: Path) -> None:
    trainer = GeneratorRewardTrainer(_config(saved_flow, minibatch_size=64), tmp_path / "a",
                                     progress=False, reward=toy_reward)  # fmt: skip
    before = trainer.evaluate()["eval_reward"]
    trainer.fit()
    records = [r for r in _records(tmp_path / "a") if r["step"] > 0]
    assert all(r["first_ratio_dev"] == 0.0 for r in records)
    assert trainer.evaluate()["eval_reward"] > before + 0.1


def test_zero_learning_rate_changes_nothing(saved_flow: Path, tmp_path: Path) -> None:
    trainer = GeneratorRewardTrainer(_config(saved_flow, lr=0.0, iterations=2), tmp_path / "z",
                                     progress=False, reward=toy_reward)  # fmt: skip
    before = {k: v.clone() for k, v in trainer.generator.state_dict().items()}
    reward = trainer.evaluate()["eval_reward"]
    trainer.fit()
    assert trainer.evaluate()["eval_reward"] == reward
    for key, value in trainer.generator.state_dict().items():
        assert torch.equal(value, before[key]), key


def test_resume_equals_uninterrupted(saved_flow: Path, tmp_path: Path) -> None:
    config = _config(saved_flow, kl_coef=0.1, noise_lr=1e-2)
    whole = GeneratorRewardTrainer(config, tmp_path / "whole", progress=False, reward=toy_reward)
    whole.fit()
    short = _config(saved_flow, kl_coef=0.1, noise_lr=1e-2, iterations=2)
    GeneratorRewardTrainer(short, tmp_path / "part", progress=False, reward=toy_reward).fit()
    resumed = GeneratorRewardTrainer(config, tmp_path / "part", resume=True, progress=False,
                                     reward=toy_reward)  # fmt: skip
    assert resumed.iteration == 2
    resumed.fit()
    for key, value in whole.generator.state_dict().items():
        assert torch.equal(value, resumed.generator.state_dict()[key]), key
    steps = [r["step"] for r in _records(tmp_path / "part")]
    assert steps == [0, 1, 2, 3, 4]  # record 0 + 4 iterations, none twice


def test_saved_pipeline_loads_with_the_tuned_weights(saved_flow: Path, tmp_path: Path) -> None:
    import flowkit

    trainer = GeneratorRewardTrainer(_config(saved_flow, iterations=1), tmp_path / "p",
                                     progress=False, reward=toy_reward)  # fmt: skip
    pipeline = trainer.fit()
    loaded = flowkit.load(tmp_path / "p")
    assert pipeline == tmp_path / "p" / "pipeline"
    assert loaded.path.name == "rectified" and loaded.prediction == "velocity"
    for key, value in trainer.generator.field.state_dict().items():
        assert torch.equal(value, loaded.field.state_dict()[key]), key


def test_non_rectified_or_non_velocity_models_are_refused(tmp_path: Path) -> None:
    MLPField(dim=2, hidden_dim=8, num_layers=1, path="vp").save_pretrained(tmp_path / "vp")
    MLPField(dim=2, hidden_dim=8, num_layers=1, prediction="epsilon").save_pretrained(
        tmp_path / "eps")  # fmt: skip
    with pytest.raises(ValueError, match="'vp' path.*rectified"):
        load_velocity_model(tmp_path / "vp")
    with pytest.raises(ValueError, match="predicts 'epsilon'.*velocity"):
        load_velocity_model(tmp_path / "eps")


def test_cli_dispatches_on_task(tmp_path: Path) -> None:
    from flowkit.cli.reinflow import config_task
    from flowkit.training.config import ConfigError

    preset = Path(__file__).parents[2] / "configs"
    assert config_task(str(preset / "reinflow_digits_reward.yaml"), []) == "generator"
    assert config_task(str(preset / "reinflow_pendulum.yaml"), []) == "policy"
    with pytest.raises(ConfigError, match="task='nope'"):
        config_task(str(preset / "reinflow_pendulum.yaml"), ["task=nope"])


class _ConvField(torch.nn.Module):
    """A tiny image velocity field ``v(x, t) = conv(x) (1 + t)``."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(2, 2, 3, padding=1)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.conv(x) * (1 + t.view(-1, 1, 1, 1))


def test_image_chain_has_per_channel_noise_and_exact_log_prob() -> None:
    torch.manual_seed(0)
    gen = NoisyFlowGenerator(_ConvField(), (2, 4, 4), steps=2, sigma_min=0.05, sigma_max=0.5)
    with torch.no_grad():
        gen.noise.copy_(torch.tensor([[-1.0, 2.0], [0.5, 0.0]]))
        chain = gen.sample(3, torch.Generator().manual_seed(3)).chain
        sig = gen.sigmas(3)
        expected = Normal(0.0, 1.0).log_prob(chain[:, 0]).sum(dim=(1, 2, 3))
        for i in range(2):
            mu = chain[:, i] + gen.field(chain[:, i], torch.full((3,), i / 2)) / 2
            std = sig[0, i].expand(2, 4, 4)
            expected = expected + Normal(mu, std).log_prob(chain[:, i + 1]).sum(dim=(1, 2, 3))
        torch.testing.assert_close(gen.log_prob(chain), expected, rtol=1e-5, atol=1e-5)
    assert sig.shape == (3, 2, 2, 1, 1)
    assert sig[0, 0, 0] < sig[0, 0, 1] and sig.min() >= 0.05 and sig.max() <= 0.5
