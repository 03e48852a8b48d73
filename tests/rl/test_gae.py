"""GAE against a hand-computed example with a termination and a truncation."""

from __future__ import annotations

import pytest
import torch

from flowkit.rl.advantages import gae


def test_gae_equals_a_hand_computed_example() -> None:
    # one env, 4 steps: step 1 terminates, step 3 is truncated (bootstraps from V(s'_3))
    g, lam = 0.5, 0.5
    r = torch.tensor([[1.0], [2.0], [3.0], [4.0]])
    v = torch.tensor([[0.5], [1.0], [1.5], [2.0]])
    nv = torch.tensor([[1.0], [9.0], [2.0], [8.0]])  # V(s'_1)=9 must be ignored (terminal)
    term = torch.tensor([[False], [True], [False], [False]])
    done = torch.tensor([[False], [True], [False], [True]])
    adv, ret = gae(r, v, nv, term, done, gamma=g, lam=lam)
    d3 = 4 + g * 8 - 2.0  # 6
    d2 = 3 + g * 2 - 1.5  # 2.5
    d1 = 2 + 0 - 1.0  # 1
    d0 = 1 + g * 1 - 0.5  # 1
    a3 = d3
    a2 = d2 + g * lam * a3
    a1 = d1  # the trace is cut at a termination
    a0 = d0 + g * lam * a1
    expected = torch.tensor([[a0], [a1], [a2], [a3]])
    torch.testing.assert_close(adv, expected)
    torch.testing.assert_close(ret, expected + v)
    # a truncation cuts the trace too, but keeps the bootstrap value
    adv2, _ = gae(r, v, nv, term, torch.tensor([[False], [True], [True], [True]]), g, lam)
    assert adv2[2, 0] == pytest.approx(d2) and adv2[3, 0] == pytest.approx(d3)


def test_gae_checks_shapes_and_ranges() -> None:
    x = torch.zeros(3, 2)
    b = torch.zeros(3, 2, dtype=torch.bool)
    with pytest.raises(ValueError, match="next_values"):
        gae(x, x, torch.zeros(3, 1), b, b)
    with pytest.raises(ValueError, match="gamma"):
        gae(x, x, x, b, b, gamma=1.5)
