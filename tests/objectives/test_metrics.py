import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from flowkit.objectives.metrics import L2, LPIPSHuber, PseudoHuber, build_metric
from flowkit.paths.affine import PathSample, rectified, vp


def make_sample(shape=(3, 2, 4, 4), seed=0, path=None) -> PathSample:
    generator = torch.Generator().manual_seed(seed)
    x0 = torch.randn(shape, generator=generator, dtype=torch.float64)
    x1 = torch.rand(shape, generator=generator, dtype=torch.float64) * 2 - 1
    t = torch.tensor([0.1, 0.5, 0.9], dtype=torch.float64)[: shape[0]]
    return (path or rectified()).sample(x0, x1, t)


class MeanAbsDifference(nn.Module):
    """A toy perceptual distance with a parameter and a dropout, returning (B, 1, 1, 1)."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(2.0, dtype=torch.float64))
        self.dropout = nn.Dropout(0.5)
        self.seen_shapes: list[tuple[int, ...]] = []

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        self.seen_shapes.append(tuple(a.shape))
        difference = self.dropout(self.scale * (a - b).abs())
        return difference.mean(dim=(1, 2, 3), keepdim=True)


def test_l2_is_the_per_sample_mean_of_squares():
    pred = torch.tensor([[1.0, 2.0, 3.0, 4.0], [0.0, 0.0, 0.0, 0.0]])
    target = torch.tensor([[1.0, 0.0, 3.0, 0.0], [1.0, 1.0, 1.0, 1.0]])
    value = L2()(pred.reshape(2, 1, 2, 2), target.reshape(2, 1, 2, 2), None)
    assert value.shape == (2,)
    assert value.tolist() == pytest.approx([(4 + 16) / 4, 1.0])


def test_pseudo_huber_hand_value_and_shape():
    pred = torch.tensor([[3.0, 0.0], [0.0, 0.0], [1.0, 1.0]])
    target = torch.tensor([[0.0, 4.0], [0.0, 0.0], [0.0, 0.0]])
    value = PseudoHuber(c=1.0)(pred, target, None)
    assert value.shape == (3,)
    assert value.tolist() == pytest.approx([math.sqrt(26) - 1, 0.0, math.sqrt(3) - 1])


def test_pseudo_huber_default_c_is_2rfpp_formula():
    metric = PseudoHuber()
    pred = torch.zeros(2, 3, 32, 32)
    assert metric.scale(pred) == pytest.approx(0.00054 * math.sqrt(3 * 32 * 32))
    target = torch.full_like(pred, 0.01)
    c = 0.00054 * math.sqrt(3072)
    expected = math.sqrt(3072 * 1e-4 + c**2) - c
    assert metric(pred, target, None).tolist() == pytest.approx([expected] * 2, rel=1e-5)


def test_pseudo_huber_limits():
    # small errors: ||e||^2 / (2c) (quadratic); large errors: ||e|| - c (linear)
    c = 1.0
    direction = torch.tensor([[0.6, 0.8]], dtype=torch.float64)  # unit norm
    metric = PseudoHuber(c=c)
    # float32 on purpose: the small-error value must not cancel to zero
    small = metric((1e-3 * direction).float(), torch.zeros(1, 2), None)
    assert float(small) == pytest.approx((1e-3) ** 2 / (2 * c), rel=1e-5)
    large = metric(1e4 * direction, torch.zeros(1, 2, dtype=torch.float64), None)
    assert float(large) == pytest.approx(1e4 - c, rel=1e-8)


def test_metrics_reject_mismatched_shapes_and_bad_c():
    with pytest.raises(ValueError, match=r"pred has shape \(2, 3\) but target has \(2, 4\)"):
        L2()(torch.zeros(2, 3), torch.zeros(2, 4), None)
    with pytest.raises(ValueError, match="c=0.0 must be > 0"):
        PseudoHuber(c=0.0)


def lpips_huber_by_hand(pred, target, sample, perceptual, c, inverse_t, size=None):
    t = sample.t
    x1_hat = sample.xt + (1 - t).reshape(-1, 1, 1, 1) * pred  # rectified: x1 = x_t + (1-t) v
    a, b = x1_hat, sample.x1
    if size is not None:
        a = F.interpolate(a, size=(size, size), mode="bilinear", align_corners=False)
        b = F.interpolate(b, size=(size, size), mode="bilinear", align_corners=False)
    distance = perceptual(a, b).reshape(-1)
    if inverse_t:
        distance = distance / (1 - t)
    huber = torch.sqrt((pred - target).pow(2).flatten(1).sum(1) + c**2) - c
    return t * huber + distance


@pytest.mark.parametrize("variant", ["t", "inverse_t"])
@pytest.mark.parametrize("resize", [None, 8])
def test_lpips_huber_matches_hand_formula(variant, resize):
    sample = make_sample()
    generator = torch.Generator().manual_seed(1)
    pred = (sample.dxt + 0.3 * torch.randn(sample.dxt.shape, generator=generator)).requires_grad_()
    perceptual = MeanAbsDifference().train()
    metric = LPIPSHuber(perceptual, c=0.05, variant=variant, resize=resize)
    value = metric(pred, sample.dxt, sample)
    assert value.shape == (3,)
    assert not perceptual.training and not perceptual.scale.requires_grad  # frozen
    expected = lpips_huber_by_hand(
        pred, sample.dxt, sample, perceptual, 0.05, variant == "inverse_t", resize
    )
    torch.testing.assert_close(value, expected)
    assert perceptual.seen_shapes[0] == ((3, 2, 8, 8) if resize else (3, 2, 4, 4))
    value.sum().backward()
    assert pred.grad is not None and float(pred.grad.abs().sum()) > 0
    assert perceptual.scale.grad is None


def test_lpips_huber_at_the_target_is_zero_and_perceptual_term_is_weighted():
    sample = make_sample()
    perceptual = MeanAbsDifference()
    exact = LPIPSHuber(perceptual, resize=None)(sample.dxt, sample.dxt, sample)
    torch.testing.assert_close(exact, torch.zeros(3, dtype=torch.float64))
    # with a zero Huber term, inverse_t is the t-variant divided by the noise level 1 - t
    off = sample.dxt + 0.1
    plain = LPIPSHuber(perceptual, resize=None)(off, off, sample)
    inverse = LPIPSHuber(perceptual, variant="inverse_t", resize=None)(off, off, sample)
    torch.testing.assert_close(inverse, plain / (1 - sample.t))


def test_lpips_huber_inverse_t_clamps_the_noise_level():
    sample = make_sample()
    sample.t = torch.tensor([1.0, 1.0, 0.5], dtype=torch.float64)
    off = sample.dxt + 0.1
    plain = LPIPSHuber(MeanAbsDifference(), resize=None)(off, off, sample)
    metric = LPIPSHuber(MeanAbsDifference(), variant="inverse_t", resize=None, min_noise=1e-3)
    value = metric(off, off, sample)
    assert bool(torch.isfinite(value).all())
    torch.testing.assert_close(value[:2], plain[:2] / 1e-3)


def test_lpips_huber_uses_the_path_conversion():
    path = vp()
    sample = make_sample(path=path)
    perceptual = MeanAbsDifference()
    pred = sample.dxt + 0.2
    value = LPIPSHuber(perceptual, path=path, c=0.1, resize=None)(pred, sample.dxt, sample)
    x1_hat = path.convert(pred, sample.xt, sample.t, "velocity", "x0")
    huber = torch.sqrt((pred - sample.dxt).pow(2).flatten(1).sum(1) + 0.01) - 0.1
    expected = sample.t * huber + perceptual(x1_hat, sample.x1).reshape(-1)
    torch.testing.assert_close(value, expected)


def test_lpips_huber_errors():
    sample = make_sample()
    with pytest.raises(ValueError, match="unknown variant 'one_over_t'"):
        LPIPSHuber(MeanAbsDifference(), variant="one_over_t")
    with pytest.raises(ValueError, match="resize=0 must be a positive"):
        LPIPSHuber(MeanAbsDifference(), resize=0)
    with pytest.raises(ValueError, match="needs images"):
        LPIPSHuber(MeanAbsDifference())(sample.dxt.flatten(1), sample.dxt.flatten(1), sample)

    class Bad(nn.Module):
        def forward(self, a, b):
            return (a - b).abs()

    with pytest.raises(ValueError, match=r"perceptual module returned shape \(3, 2, 4, 4\)"):
        LPIPSHuber(Bad(), resize=None)(sample.dxt, sample.dxt, sample)


def test_build_metric():
    assert isinstance(build_metric("l2"), L2)
    huber = build_metric("pseudo_huber", c=0.1)
    assert isinstance(huber, PseudoHuber) and huber.c == 0.1
    lpips_huber = build_metric("lpips_huber", perceptual=MeanAbsDifference(), variant="inverse_t")
    assert isinstance(lpips_huber, LPIPSHuber) and lpips_huber.variant == "inverse_t"
    with pytest.raises(ValueError, match=r"unknown metric 'l1'; expected one of"):
        build_metric("l1")
    with pytest.raises(ValueError, match=r"needs perceptual=.*load_lpips"):
        build_metric("lpips_huber")
