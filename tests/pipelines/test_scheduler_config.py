"""The diffusers config of flowkit's flow schedulers: shift, dynamic shifting, save/load round
trips and from_config across flowkit and diffusers, both ways, keeping the settings."""

import json
import math

import pytest
import torch
from diffusers import FlowMatchEulerDiscreteScheduler, FlowMatchHeunDiscreteScheduler

from flowkit.models import MLPField
from flowkit.pipelines import FlowEulerScheduler, FlowHeunScheduler, RectifiedFlowPipeline
from flowkit.pipelines.time_shift import dynamic_shift, resolution_mu, static_shift
from flowkit.solvers import sample_ode

DIFFUSERS = {"euler": FlowMatchEulerDiscreteScheduler, "heun": FlowMatchHeunDiscreteScheduler}
FLOWKIT = {"euler": FlowEulerScheduler, "heun": FlowHeunScheduler}
DYNAMIC = {
    "use_dynamic_shifting": True,
    "base_shift": 0.3,
    "max_shift": 1.5,
    "base_image_seq_len": 64,
    "max_image_seq_len": 1024,
    "time_shift_type": "linear",
}


@pytest.mark.parametrize("kind", ["euler", "heun"])
def test_from_config_keeps_the_shift_from_diffusers_to_flowkit(kind) -> None:
    ours = FLOWKIT[kind].from_config(DIFFUSERS[kind](shift=3.0).config)
    assert ours.shift == ours.config.shift == 3.0
    assert ours.config.grid == "diffusers"  # diffusers' levels, as the scheduler it replaces
    dynamic = FlowEulerScheduler.from_config(FlowMatchEulerDiscreteScheduler(**DYNAMIC).config)
    assert {key: dynamic.config[key] for key in DYNAMIC} == DYNAMIC


@pytest.mark.parametrize("source", ["euler", "heun"])
@pytest.mark.parametrize("target", ["euler", "heun"])
def test_from_config_keeps_the_shift_from_flowkit_to_diffusers(source, target) -> None:
    for ours in (
        FLOWKIT[source](shift=3.0),
        FLOWKIT[source](grid="shifted", grid_options={"shift": 3.0}),
    ):
        theirs = DIFFUSERS[target].from_config(ours.config)
        assert theirs.config.shift == 3.0
    theirs = FlowMatchEulerDiscreteScheduler.from_config(FLOWKIT[source](**DYNAMIC).config)
    assert {key: theirs.config[key] for key in DYNAMIC} == DYNAMIC


def test_flowkit_settings_survive_a_trip_through_diffusers() -> None:
    ours = FlowHeunScheduler(
        grid=[0.0, 0.3, 0.8, 1.0], prediction="x0", path="cosine", shift=2.0, final_euler=True
    )
    back = FlowHeunScheduler.from_config(
        FlowMatchHeunDiscreteScheduler.from_config(ours.config).config
    )
    for key in ("grid", "prediction", "path", "shift", "final_euler"):
        assert back.config[key] == ours.config[key], key
    default = FlowEulerScheduler()
    back = FlowEulerScheduler.from_config(
        FlowMatchEulerDiscreteScheduler.from_config(default.config).config
    )
    assert back.config.grid == "uniform" and back.shift == 1.0


@pytest.mark.parametrize("kind", ["euler", "heun"])
def test_compatibles_list_the_diffusers_flow_schedulers(kind) -> None:
    scheduler = FLOWKIT[kind]()
    assert {"FlowMatchEulerDiscreteScheduler", "FlowMatchHeunDiscreteScheduler"} <= set(
        scheduler._compatibles
    )
    compatibles = set(scheduler.compatibles)
    assert {*DIFFUSERS.values(), *FLOWKIT.values()} <= compatibles


@pytest.mark.parametrize("kind", ["euler", "heun"])
@pytest.mark.parametrize(
    "config",
    [
        {"shift": 3.0},
        {**DYNAMIC, "time_shift_type": "exponential"},
        {"grid": "shifted", "grid_options": {"shift": 2.0}},
        {"grid": [0.0, 0.25, 0.6, 1.0], "shift": 1.5},
        {"grid": "diffusers", "shift": 2.0, "shift_terminal": 0.05},
    ],
)
def test_config_round_trip_through_save_pretrained(tmp_path, kind, config) -> None:
    """diffusers' check_over_configs: save, load, same config, timesteps and steps."""
    scheduler = FLOWKIT[kind](**config)
    scheduler.save_config(tmp_path)
    saved = json.loads((tmp_path / "scheduler_config.json").read_text())
    assert saved["_class_name"] == FLOWKIT[kind].__name__ and "shift" in saved
    loaded = FLOWKIT[kind].from_pretrained(tmp_path)
    public = {k: v for k, v in scheduler.config.items() if not k.startswith("_")}
    assert {k: loaded.config[k] for k in public} == public
    steps = None if isinstance(config.get("grid"), list) else 4
    mu = {"mu": 0.7} if config.get("use_dynamic_shifting") else {}
    x = torch.randn(2, 3, generator=torch.Generator().manual_seed(0))
    outputs = []
    for s in (scheduler, loaded):
        s.set_timesteps(steps, **mu)
        y = x
        for t in s.timesteps:
            y = s.step(0.5 * y - 0.1, t, y).prev_sample
        outputs.append((s.timesteps, s.sigmas, y))
    for a, b in zip(*outputs, strict=True):
        assert torch.equal(a, b)


def test_saved_configs_load_across_families(tmp_path) -> None:
    FlowMatchEulerDiscreteScheduler(shift=3.0).save_config(tmp_path / "theirs")
    ours = FlowEulerScheduler.from_pretrained(tmp_path / "theirs")
    theirs = FlowMatchEulerDiscreteScheduler.from_pretrained(tmp_path / "theirs")
    ours.set_timesteps(6)
    theirs.set_timesteps(6)
    assert torch.equal(ours.sigmas, theirs.sigmas) and torch.equal(ours.timesteps, theirs.timesteps)
    FlowHeunScheduler(shift=2.5).save_config(tmp_path / "ours")
    assert FlowMatchHeunDiscreteScheduler.from_pretrained(tmp_path / "ours").config.shift == 2.5


def test_config_without_shift_key_still_loads() -> None:
    """A scheduler_config.json written before ``shift`` existed."""
    old = {"_class_name": "FlowEulerScheduler", "grid": "shifted", "grid_options": {"shift": 3.0}}
    assert FlowEulerScheduler.from_config(old).shift == 3.0
    assert (
        FlowEulerScheduler.from_config({**old, "grid": "uniform", "grid_options": None}).shift == 1
    )


def test_shifted_grid_is_the_uniform_grid_under_shift() -> None:
    named = FlowEulerScheduler(grid="shifted", grid_options={"shift": 3.0})
    plain = FlowEulerScheduler(shift=3.0)
    assert named.config.shift == 3.0
    named.set_timesteps(5)
    plain.set_timesteps(5)
    torch.testing.assert_close(named.sigmas, plain.sigmas, rtol=0, atol=1e-7)
    with pytest.raises(ValueError, match="shift=2.0 disagrees with grid='shifted'"):
        FlowEulerScheduler(grid="shifted", grid_options={"shift": 3.0}, shift=2.0)


@pytest.mark.parametrize("kind", ["euler", "heun"])
def test_pipeline_with_shift_equals_sample_ode_on_the_shifted_grid(kind) -> None:
    torch.manual_seed(0)
    field = MLPField(dim=2, hidden_dim=16, num_layers=2).eval()
    pipe = RectifiedFlowPipeline(model=field, scheduler=FLOWKIT[kind](shift=3.0))
    pipe.set_progress_bar_config(disable=True)
    x0 = torch.randn(8, 2, generator=torch.Generator().manual_seed(1))
    out = pipe(num_inference_steps=3, latents=x0).samples
    nfe = 3 * pipe.scheduler.order
    options = {"grid": "shifted", "grid_options": {"shift": 3.0}}
    expected = sample_ode(field, x0, nfe=nfe, method=kind, **options).x
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)


def test_time_shift_math() -> None:
    sigma = torch.linspace(1.0, 0.05, 9, dtype=torch.float64)
    torch.testing.assert_close(dynamic_shift(sigma, math.log(3.0)), static_shift(sigma, 3.0))
    assert dynamic_shift(sigma, 0.7, "linear")[0] == 1.0
    assert resolution_mu(256) == pytest.approx(0.5) and resolution_mu(4096) == pytest.approx(1.15)


def test_bad_diffusers_options_named_errors() -> None:
    cases = [
        ({"invert_sigmas": True}, "invert_sigmas=True .* is not supported"),
        ({"use_karras_sigmas": True, "use_beta_sigmas": True}, "only one of"),
        ({"time_shift_type": "cubic"}, "time_shift_type must be 'exponential' or 'linear'"),
        ({"shift": 0.0}, r"shift must be a number > 0.0, got 0.0"),
        ({"shift": True}, "shift must be a number"),
        ({"shift_terminal": 1.5}, r"shift_terminal must be a number in \(0.0, 1.0\)"),
        ({"use_dynamic_shifting": "yes"}, "use_dynamic_shifting must be a bool"),
        ({"grid": "diffusers", "grid_options": {"shift": 2.0}}, "takes no options"),
        ({"grid": "shifted", "use_dynamic_shifting": True}, "grid='shifted' is a static shift"),
    ]
    for kwargs, message in cases:
        with pytest.raises(ValueError, match=message):
            FlowEulerScheduler(**kwargs)
    with pytest.raises(ValueError, match="stochastic_sampling=True is an Euler option"):
        FlowHeunScheduler(stochastic_sampling=True)
    with pytest.raises(ValueError, match="unknown grid 'karras'.*'diffusers'"):
        FlowHeunScheduler(grid="karras")
    with pytest.raises(ValueError, match="shift must be a number > 0.0"):
        FlowEulerScheduler().set_shift(-1.0)
