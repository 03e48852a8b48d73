"""The diffusion loss: Gaussian minimisers, weightings, EDM preconditioning, paired noise,
the builder and a short training run.

Gaussian data ``x1 ~ N(mu, diag(S^2))`` on ``x_t = a x1 + s x0``: the marginal is
``N(a mu, a^2 S^2 + s^2)``, so ``score = -(x_t - a mu) / (a^2 S^2 + s^2)``,
``E[x1 | x_t] = mu + a S^2 (x_t - a mu) / (a^2 S^2 + s^2)``, ``E[eps | x_t] = -s score`` and
``E[v | x_t] = a' E[x1 | x_t] + s' E[eps | x_t]``, all affine in ``x_t``. At a fixed ``t`` a
linear model minimising the loss (exactly, by a Newton step on the quadratic) must reproduce
them up to the least-squares error ``sd(target | x_t) sqrt(3 / N)``.
"""

import math
from pathlib import Path

import pytest
import torch

from flowkit.objectives import (
    DiffusionLoss,
    EDMPreconditioner,
    RectifiedDiffusionLoss,
    TimeSampler,
    loss_weight,
    snr,
)
from flowkit.paths import cosine, discrete_vp, rectified, subvp, ve, vp
from flowkit.solvers.field import VelocityField
from flowkit.training import Trainer, load_config
from flowkit.training.builders import build_objective
from flowkit.training.config import ConfigError, config_from_dict

PREDICTIONS = ["epsilon", "data", "velocity", "score"]
MU = torch.tensor([1.5, -0.5], dtype=torch.float64)
S = torch.tensor([0.5, 1.2], dtype=torch.float64)
N = 20_000
CONFIGS = Path(__file__).parents[2] / "configs"


def ddpm_path():
    """A diffusers DDPM schedule: linear betas 1e-4 .. 0.02 over 1000 steps."""
    betas = torch.linspace(1e-4, 0.02, 1000, dtype=torch.float64)
    return discrete_vp(torch.cumprod(1 - betas, 0))


PATHS = {"vp": vp, "subvp": subvp, "ve": ve, "cosine": cosine, "discrete_vp": ddpm_path}


class FixedTime:
    """A time sampler that always returns ``t`` (use with ``t_max=1``)."""

    def __init__(self, t: float) -> None:
        self.t = t

    def sample(self, n, generator=None, device=None):
        return torch.full((n,), self.t, dtype=torch.float64, device=device)


def gaussian_data(n: int = N, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return MU + S * torch.randn(n, 2, generator=generator, dtype=torch.float64)


def scalars(path, t: float) -> tuple[float, float, float, float]:
    coefficients = path.coefficients(torch.tensor([t], dtype=torch.float64))
    return tuple(float(c) for c in coefficients)


def analytic(path, t: float, x: torch.Tensor, prediction: str) -> torch.Tensor:
    """``E[target | x_t = x]`` for the Gaussian data (independent of flowkit's conversions)."""
    a, s, da, ds = scalars(path, t)
    variance = a**2 * S**2 + s**2
    score = -(x - a * MU) / variance
    x1_hat = MU + a * S**2 * (x - a * MU) / variance
    eps = -s * score
    return {"data": x1_hat, "epsilon": eps, "score": score, "velocity": da * x1_hat + ds * eps}[
        prediction
    ]


def residual_std(path, t: float, prediction: str) -> torch.Tensor:
    """``sd(target | x_t)`` per dimension."""
    a, s, da, ds = scalars(path, t)
    variance = a**2 * S**2 + s**2
    data_sd = torch.sqrt(S**2 * s**2 / variance)
    eps_sd = torch.sqrt(a**2 * S**2 / variance)
    velocity_sd = abs(da - ds * a / s) * data_sd
    return {"data": data_sd, "epsilon": eps_sd, "score": eps_sd / s, "velocity": velocity_sd}[
        prediction
    ]


def linear_field(theta: torch.Tensor):
    weight, bias = theta[:4].reshape(2, 2), theta[4:]

    def field(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return x @ weight.T + bias

    return field


def minimise(loss, x1, x0=None, seed=1, steps=1, start=None) -> torch.Tensor:
    """Newton steps on the mean loss over the 6 parameters of a linear field (one step is
    exact for a quadratic loss). Every evaluation re-seeds the loss's noise."""

    def objective(theta: torch.Tensor) -> torch.Tensor:
        generator = torch.Generator().manual_seed(seed)
        return loss(linear_field(theta), x1, x0=x0, generator=generator).mean()

    theta = torch.zeros(6, dtype=torch.float64) if start is None else start
    for _ in range(steps):
        gradient = torch.autograd.functional.jacobian(objective, theta)
        hessian = torch.autograd.functional.hessian(objective, theta)
        theta = theta - torch.linalg.solve(hessian, gradient)
    return theta


def assert_fits_analytic(theta, path, t, prediction, n=N, z=4.0) -> None:
    """The fitted field matches ``E[target | x_t]`` on fresh marginal draws within ``z``
    times the least-squares error of 3 regressors from ``n`` samples."""
    a, s, _, _ = scalars(path, t)
    generator = torch.Generator().manual_seed(99)
    x = a * MU + torch.sqrt(a**2 * S**2 + s**2) * torch.randn(2000, 2, generator=generator)
    fitted = linear_field(theta)(x, None)
    expected = analytic(path, t, x, prediction)
    rms = (fitted - expected).pow(2).mean(0).sqrt()
    bound = z * residual_std(path, t, prediction) * math.sqrt(3 / n)
    assert (rms < bound).all(), f"{prediction} on {path}: rms error {rms} > {bound}"


# -- the minimiser of each loss is the analytic posterior quantity ---------------------------


@pytest.mark.parametrize("t", [0.3, 0.8])
@pytest.mark.parametrize("prediction", PREDICTIONS)
@pytest.mark.parametrize("name", list(PATHS))
def test_gaussian_minimiser_is_analytic(name: str, prediction: str, t: float) -> None:
    path = PATHS[name]()
    loss = DiffusionLoss(path, prediction, time_sampler=FixedTime(t), t_max=1.0)
    theta = minimise(loss, gaussian_data())
    assert_fits_analytic(theta, path, t, prediction)


@pytest.mark.parametrize("weighting", ["uniform", "snr", "min_snr", "edm"])
@pytest.mark.parametrize("prediction", PREDICTIONS)
def test_weighting_does_not_move_the_minimiser(prediction: str, weighting: str) -> None:
    path = vp()
    loss = DiffusionLoss(path, prediction, weighting, time_sampler=FixedTime(0.6), t_max=1.0)
    assert_fits_analytic(minimise(loss, gaussian_data()), path, 0.6, prediction)


@pytest.mark.parametrize("name", ["vp", "discrete_vp"])
def test_rectified_diffusion_huber_minimiser_is_analytic_epsilon(name: str) -> None:
    """Pseudo-Huber on the data prediction, with (independent) paired noise: the conditional
    law of x1 is a symmetric Gaussian, so the minimiser is still E[eps | x_t]."""
    path = PATHS[name]()
    x1 = gaussian_data()
    x0 = torch.randn(x1.shape, generator=torch.Generator().manual_seed(5), dtype=x1.dtype)
    l2 = DiffusionLoss(path, "epsilon", time_sampler=FixedTime(0.5), t_max=1.0)
    huber = RectifiedDiffusionLoss(path, "epsilon", time_sampler=FixedTime(0.5), t_max=1.0, c=0.3)
    theta = minimise(huber, x1, x0, steps=8, start=minimise(l2, x1, x0))
    assert_fits_analytic(theta, path, 0.5, "epsilon", z=6.0)


# -- paired noise ------------------------------------------------------------------------------


def test_paired_noise_is_used_as_given() -> None:
    path, t = vp(), 0.4
    x1 = gaussian_data(64)
    x0 = torch.randn(x1.shape, generator=torch.Generator().manual_seed(3), dtype=x1.dtype)
    seen = {}

    def field(x, t_batch):
        seen["x"], seen["t"] = x, t_batch
        return torch.zeros_like(x)

    loss = DiffusionLoss(path, "epsilon", time_sampler=FixedTime(t), t_max=1.0)
    value = loss(field, x1, x0=x0, generator=torch.Generator().manual_seed(0))
    a, s, _, _ = scalars(path, t)
    torch.testing.assert_close(seen["x"], a * x1 + s * x0)
    assert torch.equal(seen["t"], torch.full((64,), t, dtype=torch.float64))
    torch.testing.assert_close(value, x0.pow(2).mean(1))


@pytest.mark.parametrize("prediction", PREDICTIONS)
def test_deterministic_pairs_are_learned_exactly(prediction: str) -> None:
    """With a deterministic coupling x1 = mu + S x0 (reflow pairs), x0 is a function of x_t:
    the loss on the given pairs reaches 0, with fresh noise it cannot."""
    x0 = torch.randn(4000, 2, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    x1 = MU + S * x0
    loss = DiffusionLoss(vp(), prediction, time_sampler=FixedTime(0.5), t_max=1.0)
    huber = RectifiedDiffusionLoss(vp(), prediction, time_sampler=FixedTime(0.5), t_max=1.0)
    field = linear_field(minimise(loss, x1, x0))
    assert loss(field, x1, x0=x0).mean() < 1e-20
    assert huber(field, x1, x0=x0).mean() < 1e-12
    fresh = loss(linear_field(minimise(loss, x1)), x1, generator=torch.Generator())
    assert fresh.mean() > 1e-3


def test_pseudo_huber_is_elementwise_and_averaged_per_sample() -> None:
    """mean_D [sqrt(e^2 + c^2) - c], not the norm form sqrt(||e||^2 + c^2) - c."""
    x1 = torch.tensor([[3.0, 0.0], [0.0, 4.0]], dtype=torch.float64)
    x0 = torch.zeros_like(x1)
    loss = RectifiedDiffusionLoss(ve(), "data", time_sampler=FixedTime(0.5), t_max=1.0, c=1.0)
    value = loss(lambda x, t: torch.zeros_like(x), x1, x0=x0)
    expected = [(math.sqrt(10) - 1) / 2, (math.sqrt(17) - 1) / 2]
    assert value.tolist() == pytest.approx(expected, rel=1e-12)
    tiny = RectifiedDiffusionLoss(ve(), "data", time_sampler=FixedTime(0.5), t_max=1.0)
    small = tiny(lambda x, t: torch.full_like(x, 1e-6), torch.zeros(1, 4), x0=torch.zeros(1, 4))
    assert float(small) == pytest.approx(1e-12 / 2e-3, rel=1e-3)  # e^2 / (2c), no cancellation


def test_rectified_diffusion_needs_paired_noise() -> None:
    loss = RectifiedDiffusionLoss(vp(), "epsilon")
    with pytest.raises(ValueError, match="x0=None"):
        loss(lambda x, t: x, torch.zeros(2, 2))


def test_fresh_noise_comes_from_the_generator() -> None:
    loss = DiffusionLoss(ve(), "data")
    x1 = gaussian_data(16)

    def field(x, t):
        return 0.5 * x

    def draw(seed):
        return loss(field, x1, generator=torch.Generator().manual_seed(seed))

    assert torch.equal(draw(0), draw(0))
    assert not torch.equal(draw(0), draw(1))
    assert draw(0).shape == (16,)


# -- weightings --------------------------------------------------------------------------------


def paper_weight(path, t: float, weighting: str, gamma=5.0, sigma_data=0.5) -> float:
    """The data-space weight w(t): Hang et al.'s SNR and min-SNR-gamma, Karras et al.'s
    lambda(sigma) at sigma = s / a."""
    a, s, _, _ = scalars(path, t)
    ratio = a**2 / s**2
    sigma = s / a
    return {
        "snr": ratio,
        "min_snr": min(ratio, gamma),
        "edm": (sigma**2 + sigma_data**2) / (sigma * sigma_data) ** 2,
    }[weighting]


@pytest.mark.parametrize("weighting", ["snr", "min_snr", "edm"])
@pytest.mark.parametrize("prediction", PREDICTIONS)
@pytest.mark.parametrize("name", list(PATHS))
def test_weighting_is_the_data_space_weight(name: str, prediction: str, weighting: str) -> None:
    """Whatever the prediction, the weighted loss is w(t) ||x̂1 - x1||^2 (x̂1 converted by
    flowkit.paths), at times on both sides of SNR = gamma."""
    path = PATHS[name]()
    x1 = gaussian_data(32)
    x0 = torch.randn(x1.shape, generator=torch.Generator().manual_seed(2), dtype=x1.dtype)

    def field(x, t):
        return torch.tanh(x) - 0.3

    for t in (0.2, 0.5, 0.9):
        loss = DiffusionLoss(path, prediction, weighting, time_sampler=FixedTime(t), t_max=1.0)
        t_batch = torch.full((32,), t, dtype=torch.float64)
        sample = path.sample(x0, x1, t_batch)
        x1_hat = path.convert(field(sample.xt, t_batch), sample.xt, t_batch, prediction, "data")
        expected = paper_weight(path, t, weighting) * (x1_hat - x1).pow(2).mean(1)
        torch.testing.assert_close(loss(field, x1, x0=x0), expected, rtol=1e-9, atol=0)


def test_min_snr_weights_of_hang_et_al() -> None:
    """eps: min(SNR, g) / SNR; x0: min(SNR, g); Salimans-Ho v on VP: min(SNR, g) / (SNR + 1),
    which for flowkit's velocity dx/dt = -(a'/s) v_SH is multiplied by (s / a')^2."""
    path, gamma = vp(), 5.0
    t = torch.tensor([0.1, 0.4, 0.6, 0.75, 0.95], dtype=torch.float64)
    ratio = snr(path, t)
    assert ratio.min() < gamma < ratio.max()
    _, s, da, _ = path.coefficients(t)
    clamp = torch.clamp(ratio, max=gamma)

    def weight(space):
        return loss_weight(path, t, space, "min_snr", gamma)

    torch.testing.assert_close(weight("epsilon"), clamp / ratio)
    torch.testing.assert_close(weight("data"), clamp)
    torch.testing.assert_close(weight("velocity"), clamp / (ratio + 1) * (s / da) ** 2)
    torch.testing.assert_close(weight("score"), clamp / ratio * s**2)
    assert torch.equal(loss_weight(path, t, "velocity", "uniform"), torch.ones_like(t))


def test_weights_stay_finite_at_the_ends() -> None:
    """On the rectified path a = 0 at t = 0 and s = 0 at t = 1: min-SNR's weights have finite
    limits there (eps: 1 then 0; x0: 0 then gamma)."""
    t = torch.tensor([0.0, 1.0], dtype=torch.float64)
    weights = {p: loss_weight(rectified(), t, p, "min_snr", 5.0) for p in PREDICTIONS}
    assert weights["epsilon"].tolist() == [1.0, 0.0]
    assert weights["data"].tolist() == [0.0, 5.0]
    assert weights["score"].tolist() == [1.0, 0.0]
    assert weights["velocity"].tolist() == [0.0, 0.0]


def test_weightings_change_weights_only() -> None:
    """Same noise and times: each weighted loss is the uniform one times its weight."""
    path = subvp()
    x1 = gaussian_data(256)
    times = {}

    def field(x, t):
        times["t"] = t
        return 0.7 * x

    def run(weighting):
        loss = DiffusionLoss(path, "velocity", weighting, time_sampler=TimeSampler("uniform"))
        return loss(field, x1, generator=torch.Generator().manual_seed(7))

    uniform = run("uniform")
    for weighting in ("snr", "min_snr", "edm"):
        value = run(weighting)
        weight = loss_weight(path, times["t"], "velocity", weighting)
        torch.testing.assert_close(value, weight * uniform, rtol=1e-12, atol=0)


def test_times_are_scaled_below_t_max() -> None:
    times = []

    def field(x, t):
        times.append(t)
        return x

    x1 = torch.zeros(4096, 1)
    for path, t_max in ((vp(), 1 - 1e-3), (ve(), 1 - 1e-5), (cosine(), 1 - 1e-5)):
        loss = DiffusionLoss(path, "epsilon", time_sampler=TimeSampler("uniform", eps=0.0))
        assert loss.t_max == pytest.approx(t_max)
        loss(field, x1, generator=torch.Generator().manual_seed(0))
        assert times[-1].max() <= loss.t_max and times[-1].max() > 0.99 * loss.t_max
    assert DiffusionLoss(ddpm_path()).t_max == pytest.approx(1 - 1 / 1000)
    assert DiffusionLoss(vp(), t_max=0.5).t_max == 0.5


# -- EDM preconditioning -----------------------------------------------------------------------


def ve_time(sigma: float) -> float:
    """The time at which the default VE path has noise level ``sigma``."""
    return 1 - math.log(sigma / 0.01) / math.log(50.0 / 0.01)


def test_edm_scalings_match_karras_et_al() -> None:
    precond = EDMPreconditioner(lambda x, c: x)
    sigmas = [0.002, 0.5, 1.0, 10.0]
    t = torch.tensor([ve_time(s) for s in sigmas], dtype=torch.float64)
    c_skip, c_out, c_in, c_noise = precond.scalings(t)
    for i, sigma in enumerate(sigmas):
        norm = math.sqrt(sigma**2 + 0.25)
        assert float(c_skip[i]) == pytest.approx(0.25 / norm**2, rel=1e-9)
        assert float(c_out[i]) == pytest.approx(sigma * 0.5 / norm, rel=1e-9)
        assert float(c_in[i]) == pytest.approx(1 / norm, rel=1e-9)
        assert float(c_noise[i]) == pytest.approx(math.log(sigma) / 4, rel=1e-9, abs=1e-12)
    assert [float(c) for c in precond.scalings(t[2:3])] == pytest.approx(
        [0.2, 0.5 / math.sqrt(1.25), 1 / math.sqrt(1.25), 0.0], abs=1e-12
    )


def perfect_raw_network(sigma_data: float):
    """The raw F for which EDM's D is the exact Gaussian denoiser E[x1 | x1 + sigma n = x~]:
    it reads sigma from c_noise and x~ from c_in x~."""

    def net(u: torch.Tensor, c_noise: torch.Tensor) -> torch.Tensor:
        sigma = torch.exp(4 * c_noise)[:, None]
        norm = torch.sqrt(sigma**2 + sigma_data**2)
        x_tilde = u * norm
        denoised = MU + S**2 / (S**2 + sigma**2) * (x_tilde - MU)
        c_skip, c_out = sigma_data**2 / norm**2, sigma * sigma_data / norm
        return (denoised - c_skip * x_tilde) / c_out

    return net


@pytest.mark.parametrize("path", [ve(), vp(), cosine()], ids=["ve", "vp", "cosine"])
def test_edm_preconditioner_with_perfect_network_gives_analytic_x0(path) -> None:
    field = EDMPreconditioner(perfect_raw_network(0.5), path)
    assert field.prediction == "data" and VelocityField(field).path is path
    for t in (0.2, 0.5, 0.9):
        x = gaussian_data(64) * 3
        t_batch = torch.full((64,), t, dtype=torch.float64)
        torch.testing.assert_close(field(x, t_batch), analytic(path, t, x, "data"))


def test_edm_weighting_trains_the_raw_output_with_unit_weight() -> None:
    """With lambda = 1 / c_out^2, the loss on D is the MSE of F against
    (x1 - c_skip x~) / c_out."""
    path, t = ve(), ve_time(1.7)

    def net(u, c_noise, class_labels=None):
        return torch.tanh(u) + c_noise[:, None] + class_labels[:, None]

    field = EDMPreconditioner(net, path)
    x1 = gaussian_data(50)
    x0 = torch.randn(x1.shape, generator=torch.Generator().manual_seed(8), dtype=x1.dtype)
    labels = torch.arange(50, dtype=torch.float64) / 50
    loss = DiffusionLoss(path, weighting="edm", time_sampler=FixedTime(t), t_max=1.0)
    value = loss(field, x1, x0=x0, cond=labels)
    t_batch = torch.full((50,), t, dtype=torch.float64)
    c_skip, c_out, c_in, c_noise = (c[:, None] for c in field.scalings(t_batch))
    x = x1 + 1.7 * x0
    raw_target = (x1 - c_skip * x) / c_out
    raw = net(c_in * x, c_noise[:, 0], labels)
    torch.testing.assert_close(value, (raw - raw_target).pow(2).mean(1), rtol=1e-6, atol=0)


# -- errors and repr ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"weighting": "bogus"}, "'bogus'"),
        ({"weighting": "min_snr", "gamma": 0.0}, "gamma=0.0"),
        ({"gamma": -1.0}, "gamma=-1.0"),
        ({"gamma": math.inf}, "gamma=inf"),
        ({"sigma_data": 0.0}, "sigma_data=0.0"),
        ({"metric": "l1"}, "'l1'"),
        ({"c": 0.0}, "c=0.0"),
        ({"t_max": 0.0}, "t_max=0.0"),
        ({"t_max": 1.5}, "t_max=1.5"),
        ({"prediction": "noise"}, "'noise'"),
        ({"target_space": "v"}, "'v'"),
    ],
)
def test_bad_values_raise_naming_them(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        DiffusionLoss(vp(), **kwargs)


def test_other_bad_values() -> None:
    with pytest.raises(ValueError, match="sigma_data=-1"):
        EDMPreconditioner(lambda x, c: x, sigma_data=-1)
    with pytest.raises(ValueError, match="'foo'"):
        loss_weight(vp(), torch.zeros(1), "foo", "uniform")
    with pytest.raises(ValueError, match="shape"):
        DiffusionLoss(vp(), "data")(lambda x, t: x, torch.zeros(3, 2), x0=torch.zeros(3, 4))


def test_repr_names_the_options() -> None:
    text = repr(RectifiedDiffusionLoss(ve(), "epsilon", "min_snr", gamma=2.0))
    assert text.startswith("RectifiedDiffusionLoss(path=AffinePath(ve")
    for part in ("'epsilon'", "'min_snr'", "gamma=2.0", "'pseudo_huber'", "target_space='data'"):
        assert part in text


# -- builder, preset and trainer ---------------------------------------------------------------


def build(objective: dict, prediction: str = "epsilon"):
    return build_objective(
        config_from_dict({"objective": objective, "model": {"prediction": prediction}})
    )


def test_builder_builds_diffusion_losses_from_config() -> None:
    loss = build(
        {
            "kind": "diffusion",
            "path": "ve",
            "path_kwargs": {"sigma_max": 20.0},
            "time_sampler": "logit_normal",
            "kwargs": {"weighting": "min_snr", "gamma": 3, "t_max": 0.99, "c": "1e-2"},
        },
        prediction="data",
    )
    assert type(loss) is DiffusionLoss
    assert (loss.weighting, loss.gamma, loss.t_max, loss.c) == ("min_snr", 3.0, 0.99, 0.01)
    assert loss.prediction == "data"
    assert loss.path.name == "ve" and loss.path.params["sigma_max"] == 20.0
    assert loss.time_sampler.kind == "logit_normal"
    rectified_loss = build({"kind": "rectified_diffusion", "path": "vp"})
    assert type(rectified_loss) is RectifiedDiffusionLoss
    assert (rectified_loss.metric, rectified_loss.c, rectified_loss.target_space) == (
        "pseudo_huber",
        1e-3,
        "data",
    )


@pytest.mark.parametrize(
    ("objective", "message"),
    [
        ({"kwargs": {"weighting": "bogus"}}, "bogus"),
        ({"kwargs": {"gama": 1.0}}, "gama"),
        ({"kwargs": {"precondition": True}}, "precondition"),
        ({"metric": "pseudo_huber"}, "objective.kwargs.metric"),
        ({"coupling": "minibatch_ot"}, "minibatch_ot"),
    ],
)
def test_builder_rejects_bad_options(objective: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        build({"kind": "diffusion", "path": "vp", **objective})


def test_digits_vp_preset_builds_a_vp_epsilon_diffusion_loss() -> None:
    config = load_config(CONFIGS / "digits_vp.yaml")
    loss = build_objective(config)
    assert type(loss) is DiffusionLoss
    assert (loss.path.name, loss.prediction, loss.weighting) == ("vp", "epsilon", "uniform")


TRAIN = [
    "data.name=checkerboard",
    "data.num_points=512",
    "model.kind=mlp",
    "model.prediction=epsilon",
    "model.kwargs={hidden_dim: 16, num_layers: 2}",
    "objective.kind=diffusion",
    "objective.path=vp",
    "objective.kwargs={weighting: min_snr}",
    "optim.batch_size=32",
    "train.steps=6",
    "train.log_every=3",
    "train.checkpoint_every=6",
    "train.sample_num=16",
    "train.sample_nfe=4",
    "train.device=cpu",
]


def test_trainer_runs_diffusion_and_saves_a_loadable_pipeline(tmp_path: Path) -> None:
    from safetensors.torch import load_file

    from flowkit.cli.main import main
    from flowkit.loading import load

    Trainer(load_config(None, TRAIN), tmp_path / "run", progress=False).fit()
    model = load(tmp_path / "run")
    assert model.prediction == "epsilon" and model.path.name == "vp"
    out = tmp_path / "samples.safetensors"
    command = ["sample", str(tmp_path / "run"), "--nfe", "4", "--num", "8", "--out", str(out)]
    for method in ("euler", "dpm_solver_pp"):
        assert main([*command, "--method", method]) == 0
        samples = load_file(out)["samples"]
        assert samples.shape == (8, 2) and torch.isfinite(samples).all()


def test_trainer_refuses_rectified_diffusion_without_pairs(tmp_path: Path) -> None:
    config = load_config(None, [*TRAIN, "objective.kind=rectified_diffusion"])
    with pytest.raises(ValueError, match="paired"):
        Trainer(config, tmp_path / "run", progress=False).fit()
