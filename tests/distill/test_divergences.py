"""The f-divergence table: each built-in h equals f''(r) r^2, f(1) = 0, f convex; names."""

from __future__ import annotations

import pytest
import torch

from flowkit.distill.divergences import DIVERGENCES, Divergence, divergence, second_derivative

R = torch.logspace(-3, 3, 61, dtype=torch.float64)


@pytest.mark.parametrize("name", sorted(DIVERGENCES))
def test_h_is_f_second_derivative_times_r_squared(name: str) -> None:
    div = divergence(name)
    reference = second_derivative(div.f, R) * R.square()
    torch.testing.assert_close(div.h(R), reference, rtol=1e-10, atol=1e-12)
    assert float(div.f(torch.ones(1, dtype=torch.float64))) == pytest.approx(0.0, abs=1e-12)
    assert bool((second_derivative(div.f, R) > 0).all())  # convex


def test_the_check_can_fail_a_wrong_h() -> None:
    js = divergence("js")
    reference = second_derivative(js.f, R) * R.square()
    assert not torch.allclose(divergence("forward_kl").h(R), reference, rtol=1e-3)


def test_weights_and_normalisation_flags() -> None:
    r = torch.tensor([0.5, 1.0, 4.0], dtype=torch.float64)
    assert torch.equal(divergence("reverse_kl").h(r), torch.ones(3, dtype=torch.float64))
    torch.testing.assert_close(divergence("jeffreys").h(r), r + 1)
    normalised = sorted(name for name, d in DIVERGENCES.items() if d.normalize)
    assert normalised == ["forward_kl", "jeffreys"]
    w = divergence("forward_kl").weight(r)
    torch.testing.assert_close(w, r / r.mean())
    torch.testing.assert_close(divergence("js").weight(r), r / (r + 1))  # bounded: as it is


def test_a_divergence_from_f_alone() -> None:
    chi2 = Divergence.from_f("pearson", lambda r: (r - 1) ** 2)  # h = 2 r^2
    torch.testing.assert_close(chi2.h(R), 2 * R.square())
    assert chi2.normalize
    assert divergence(chi2) is chi2


def test_unknown_name_lists_the_valid_ones() -> None:
    with pytest.raises(ValueError, match="unknown divergence 'kl'.*forward_kl.*reverse_kl"):
        divergence("kl")
