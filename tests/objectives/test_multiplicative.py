"""The multiplicative score-matching loss: its algebra, one time per sample, recovery of the
analytic score on 1-D log-normal data, snapshots, and the builder (objective.kind)."""

import pytest
import torch

from flowkit.data import load_digits
from flowkit.models import MLPField
from flowkit.objectives import MultiplicativeScoreLoss
from flowkit.paths import GBMProcess, LogNormal, fit_lognormal, to_positive
from flowkit.training.builders import build_objective
from flowkit.training.config import ConfigError, RunConfig


class Recorder(torch.nn.Module):
    """Returns fixed outputs and keeps what it was called with."""

    def __init__(self, out: torch.Tensor) -> None:
        super().__init__()
        self.out = out

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        self.x, self.t = x, t
        return self.out


def test_loss_is_weighted_distance_to_the_conditional_target() -> None:
    """[s sigma^2 h + log(x_s/x1) - (mu - 1.5 sigma^2) s]^2 = sigma^4 s^2 (h - h*)^2 with the
    network, the noise and the target all at the same s = 1 - t."""
    process = GBMProcess(sigma=0.8, mu=0.1)
    loss = MultiplicativeScoreLoss(process)
    x1 = torch.rand(16, 1, 4, 4, generator=torch.Generator().manual_seed(0)) * 2 - 1
    out = torch.randn(16, 1, 4, 4, generator=torch.Generator().manual_seed(1))
    model = Recorder(out)
    value = loss(model, x1, generator=torch.Generator().manual_seed(2))
    assert value.shape == (16,)
    s = 1 - model.t
    assert bool((s >= 1e-3).all()) and bool((s <= 1).all())
    target = process.conditional_score(model.x, to_positive(x1), model.t)
    expected = (0.64**2 * s[:, None, None, None] ** 2 * (out - target) ** 2).sum((1, 2, 3))
    torch.testing.assert_close(value, expected, rtol=1e-4, atol=1e-6)
    # the exact conditional target gives zero loss
    assert (
        float(loss(Recorder(target), x1, generator=torch.Generator().manual_seed(2)).max()) < 1e-8
    )


def analytic_score(x: torch.Tensor, t: torch.Tensor, process: GBMProcess, data: LogNormal):
    """log X_s ~ N(m_s, v_s), m_s = m + (mu - sigma^2/2) s, v_s = v + sigma^2 s, so
    x ∘ ∇ log p = -1 - (log x - m_s) / v_s."""
    s = (1 - t)[:, None]
    m_s = data.mean + process.log_drift * s
    v_s = data.std**2 + process.sigma**2 * s
    return -1 - (x.log() - m_s) / v_s


def test_a_small_network_recovers_the_analytic_multiplicative_score() -> None:
    """1-D log-normal data (log x ~ N(0.4, 0.3^2)) pushed through the GBM: an MLP trained with
    the loss matches -1 - (log x - m_s) / v_s within 0.25 (the score spans about [-5, 3] over
    +-1.5 standard deviations of log x at s in [0.1, 1])."""
    torch.manual_seed(0)
    process, data = GBMProcess(), LogNormal(torch.tensor(0.4), torch.tensor(0.3))
    loss_fn = MultiplicativeScoreLoss(process, shift=False)
    model = MLPField(dim=1, hidden_dim=64, num_layers=2)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, 800)
    generator = torch.Generator().manual_seed(0)
    for _ in range(800):
        x1 = data.sample(torch.randn(256, 1, generator=generator))
        loss = loss_fn(model, x1, generator=generator).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
    s = torch.tensor([0.1, 0.3, 0.6, 1.0]).repeat_interleave(13)
    q = torch.linspace(-1.5, 1.5, 13).repeat(4)
    log_x = 0.4 + process.log_drift * s + torch.sqrt(0.09 + 0.64 * s) * q
    x, t = log_x.exp()[:, None], 1 - s
    with torch.no_grad():
        error = (model(x, t) - analytic_score(x, t, process, data)).abs()
    assert float(error.max()) < 0.25, float(error.max())
    # an untrained network is far off: the check can fail
    with torch.no_grad():
        fresh = MLPField(dim=1, hidden_dim=64, num_layers=2)(x, t)
    assert float((fresh - analytic_score(x, t, process, data)).abs().max()) > 1.0


def test_generate_gives_seeded_images_in_range_and_pipeline_needs_the_fit() -> None:
    x = torch.rand(32, 1, 8, 8, generator=torch.Generator().manual_seed(0)) * 2 - 1
    loss = MultiplicativeScoreLoss(data_law=fit_lognormal(to_positive(x)), snapshot_steps=5)
    model = Recorder(torch.zeros(3, 1, 8, 8))
    one = loss.generate(model, 3, (1, 8, 8), seed=4)
    assert one.shape == (3, 1, 8, 8) and float(one.min()) >= -1 and float(one.max()) <= 1
    assert torch.equal(one, loss.generate(model, 3, (1, 8, 8), seed=4))
    torch.testing.assert_close(model.t, torch.full((3,), 0.8))  # the last of 5 levels: s = 1/5
    with pytest.raises(ValueError, match="no data_law"):
        MultiplicativeScoreLoss().pipeline_settings()


def test_bad_options_and_paired_noise_raise() -> None:
    with pytest.raises(ValueError, match=r"s_min must be a number in \(0, 1\), got 0"):
        MultiplicativeScoreLoss(s_min=0)
    with pytest.raises(ValueError, match="unknown GBM sampler 'euler'"):
        MultiplicativeScoreLoss(sampler="euler")
    with pytest.raises(ValueError, match="snapshot_steps|steps must be an int >= 1, got 0"):
        MultiplicativeScoreLoss(snapshot_steps=0)
    with pytest.raises(ValueError, match="paired x0"):
        MultiplicativeScoreLoss()(
            Recorder(torch.zeros(2, 1)), torch.zeros(2, 1), x0=torch.zeros(2, 1)
        )


def digits_config(**kwargs) -> RunConfig:
    config = RunConfig()
    config.data.name = "digits"
    config.objective.kind = "multiplicative"
    config.objective.kwargs = kwargs
    return config


def test_builder_fits_the_start_to_the_training_set() -> None:
    loss = build_objective(digits_config(sigma=0.5, steps=200, sampler="additive"))
    assert isinstance(loss, MultiplicativeScoreLoss)
    assert loss.process.sigma == 0.5 and loss.process.mu == 0.125
    assert loss.sampler_options["steps"] == 200 and loss.sampler_options["sampler"] == "additive"
    expected = fit_lognormal(to_positive(load_digits()[0]))
    torch.testing.assert_close(loss.data_law.mean, expected.mean)
    torch.testing.assert_close(loss.data_law.std, expected.std)
    assert build_objective(digits_config(start="global")).data_law.mean.shape == ()


def test_builder_rejects_what_does_not_apply() -> None:
    with pytest.raises(ConfigError, match=r"objective.kwargs \['lr'\] do not apply"):
        build_objective(digits_config(lr=1.0))
    with pytest.raises(ConfigError, match="start='pixel'"):
        build_objective(digits_config(start="pixel"))
    config = digits_config()
    config.objective.path = "vp"
    with pytest.raises(ConfigError, match="objective.path does not apply"):
        build_objective(config)
    with pytest.raises(ValueError, match="sigma must be finite and > 0, got 0"):
        build_objective(digits_config(sigma=0))
