"""End to end: a 1-rectified flow on the 2-D checkerboard.

With many steps it reproduces the data up to the data's own sampling noise; with one
Euler step it cannot (its paths are curved) — the reason reflow exists. Measured with
the slow test's settings (seeds fixed, one CPU thread): sliced Wasserstein to held-out
data 0.038 at 100 NFE against a noise floor of 0.021 between two data draws, 0.50 at 1
NFE. The fast test checks the same at a fifth of the steps, half the batch and 2000
points (EMA decay 0.99, so the average follows the short run): 0.058 at 100 NFE against
a floor of 0.024, 0.51 at 1 NFE.
"""

from pathlib import Path

import pytest
import torch

from flowkit.data import sample_toy
from flowkit.evaluation import sliced_wasserstein
from flowkit.solvers import sample_ode
from flowkit.training import Trainer, load_config

CONFIG = Path(__file__).parents[2] / "configs" / "checkerboard.yaml"


def errors(tmp_path: Path, overrides: list[str], num: int) -> tuple[float, float, float]:
    """Train with ``overrides``; return SW at 100 NFE, SW at 1 NFE and the data's noise floor."""
    config = load_config(
        CONFIG,
        [
            "model.kwargs={hidden_dim: 64, num_layers: 3}",
            "train.sample_every=0",
            "train.checkpoint_every=100000",
            "train.device=cpu",
            *overrides,
        ],
    )
    trainer = Trainer(config, tmp_path, progress=False)
    trainer.fit()
    held_out = sample_toy("checkerboard", num, seed=99)
    noise_floor = sliced_wasserstein(held_out, sample_toy("checkerboard", num, seed=98))
    x0 = torch.randn(num, 2, generator=torch.Generator().manual_seed(5))
    model = trainer.ema.ema_model
    sw_100 = sliced_wasserstein(sample_ode(model, x0, nfe=100).x, held_out)
    sw_1 = sliced_wasserstein(sample_ode(model, x0, nfe=1).x, held_out)
    return sw_100, sw_1, noise_floor


@pytest.mark.slow
def test_checkerboard_1rf_many_steps_vs_one_step(tmp_path: Path) -> None:
    sw_100, sw_1, noise_floor = errors(
        tmp_path, ["train.steps=2000", "optim.warmup_steps=100"], 5000
    )
    assert sw_100 < 2.5 * noise_floor, (sw_100, noise_floor)
    assert sw_1 > 8 * sw_100, (sw_1, sw_100)


def test_checkerboard_1rf_many_steps_vs_one_step_small(tmp_path: Path) -> None:
    """The same at small size (about 6 s of CPU): the default suite's guard of it."""
    overrides = [
        "train.steps=400",
        "optim.warmup_steps=100",
        "optim.batch_size=256",
        "optim.lr=2e-3",
        "train.ema_decay=0.99",
        "train.sample_num=16",
    ]
    sw_100, sw_1, noise_floor = errors(tmp_path, overrides, 2000)
    assert sw_100 < 3 * noise_floor, (sw_100, noise_floor)
    assert sw_1 > 6 * sw_100, (sw_1, sw_100)
