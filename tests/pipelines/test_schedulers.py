"""flowkit's diffusers schedulers: equal to sample_ode, to diffusers' Euler, and round-trip."""

import json

import pytest
import torch
from diffusers import FlowMatchEulerDiscreteScheduler, FlowMatchHeunDiscreteScheduler

from flowkit.models import MLPField
from flowkit.paths.diffusers_flow import from_diffusers_flow, to_diffusers_flow
from flowkit.pipelines import FlowEulerScheduler, FlowHeunScheduler
from flowkit.solvers import sample_ode

SCHEDULERS = {"euler": FlowEulerScheduler, "heun": FlowHeunScheduler}


@pytest.fixture(scope="module")
def field() -> MLPField:
    torch.manual_seed(0)
    return MLPField(dim=2, hidden_dim=32, num_layers=2).eval()


@pytest.fixture
def noise() -> torch.Tensor:
    return torch.randn(64, 2, generator=torch.Generator().manual_seed(1))


class DiffusersModel:
    """A flowkit velocity field seen as a diffusers flow model, counting its calls."""

    def __init__(self, field):
        self.field = field
        self.calls = 0

    def __call__(self, x: torch.Tensor, timestep: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        t = from_diffusers_flow(timestep).t.expand(x.shape[0])
        return to_diffusers_flow(t, self.field(x, t)).model_output


@torch.no_grad()
def run_loop(scheduler, model, x: torch.Tensor) -> torch.Tensor:
    for ts in scheduler.timesteps:
        x = scheduler.step(model(x, ts), ts, x).prev_sample
    return x


@pytest.mark.parametrize("method", ["euler", "heun"])
@pytest.mark.parametrize("steps", [1, 3, 4, 7])
def test_loop_equals_sample_ode(field, noise, method: str, steps: int) -> None:
    scheduler = SCHEDULERS[method]()
    scheduler.set_timesteps(steps)
    model = DiffusersModel(field)
    x = run_loop(scheduler, model, noise)
    expected = sample_ode(field, noise, nfe=scheduler.order * steps, method=method)
    assert model.calls == expected.nfe == len(scheduler.timesteps) == scheduler.order * steps
    torch.testing.assert_close(x, expected.x, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("method", ["euler", "heun"])
def test_configured_grid_and_sigmas_equal_sample_ode(field, noise, method: str) -> None:
    grid = [0.0, 0.125, 0.5, 1.0]
    expected = sample_ode(field, noise, method=method, grid=grid).x
    scheduler = SCHEDULERS[method](grid=grid)
    scheduler.set_timesteps()
    assert scheduler.num_inference_steps == 3
    close = dict(rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(run_loop(scheduler, DiffusersModel(field), noise), expected, **close)
    other = SCHEDULERS[method]()
    other.set_timesteps(sigmas=[1.0, 0.875, 0.5])
    assert torch.equal(other.timesteps, scheduler.timesteps)
    torch.testing.assert_close(run_loop(other, DiffusersModel(field), noise), expected, **close)


@pytest.mark.parametrize("method", ["euler", "heun"])
def test_named_grid_with_options_equals_sample_ode(field, noise, method: str) -> None:
    options = {"grid": "shifted", "grid_options": {"shift": 3.0}}
    scheduler = SCHEDULERS[method](**options)
    scheduler.set_timesteps(3)
    expected = sample_ode(field, noise, nfe=3 * scheduler.order, method=method, **options).x
    x = run_loop(scheduler, DiffusersModel(field), noise)
    torch.testing.assert_close(x, expected, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("steps", [1, 2, 5])
def test_heun_final_euler_equals_sample_ode_and_diffusers_heun(field, noise, steps) -> None:
    scheduler = FlowHeunScheduler(final_euler=True)
    scheduler.set_timesteps(steps)
    model = DiffusersModel(field)
    x = run_loop(scheduler, model, noise)
    assert scheduler.state_in_first_order
    expected = sample_ode(field, noise, nfe=2 * steps - 1, method="heun", final_euler=True)
    assert model.calls == expected.nfe == 2 * steps - 1
    torch.testing.assert_close(x, expected.x, rtol=1e-6, atol=1e-6)
    # diffusers' Heun on its own default grid, linspace(1, 1/1000, n) and a final 0
    theirs = FlowMatchHeunDiscreteScheduler()
    theirs.set_timesteps(steps)
    ours = FlowHeunScheduler(final_euler=True)
    ours.set_timesteps(sigmas=torch.linspace(1.0, 0.001, steps, dtype=torch.float64))
    torch.testing.assert_close(ours.timesteps, theirs.timesteps, rtol=0, atol=1e-4)
    torch.testing.assert_close(ours.sigmas, theirs.sigmas, rtol=0, atol=1e-7)
    x_theirs = run_loop(theirs, DiffusersModel(field), noise)
    # diffusers recovers the corrector's derivative as (x - (x - out * s)) / s, which loses
    # about ulp(x) / s: near s = 0.001 that is 1e-4 relative
    torch.testing.assert_close(run_loop(ours, model, noise), x_theirs, rtol=1e-4, atol=2e-4)


def test_heun_timesteps_follow_diffusers_two_call_pattern() -> None:
    scheduler = FlowHeunScheduler()
    scheduler.set_timesteps(4)
    assert scheduler.timesteps.tolist() == [1000, 750, 750, 500, 500, 250, 250, 0]
    assert scheduler.sigmas.tolist() == [1, 0.75, 0.75, 0.5, 0.5, 0.25, 0.25, 0, 0]
    assert scheduler.state_in_first_order


@pytest.mark.parametrize("sigmas", [[1.0, 0.75, 0.5, 0.25], [1.0, 0.9, 0.6, 0.3, 0.05]])
def test_euler_matches_diffusers_flow_match_euler(field, noise, sigmas) -> None:
    ours, theirs = FlowEulerScheduler(), FlowMatchEulerDiscreteScheduler()
    ours.set_timesteps(sigmas=sigmas)
    theirs.set_timesteps(sigmas=sigmas)
    torch.testing.assert_close(ours.timesteps, theirs.timesteps, rtol=0, atol=1e-4)
    torch.testing.assert_close(ours.sigmas, theirs.sigmas, rtol=0, atol=1e-7)
    x_ours = run_loop(ours, DiffusersModel(field), noise)
    x_theirs = run_loop(theirs, DiffusersModel(field), noise)
    torch.testing.assert_close(x_ours, x_theirs, rtol=1e-5, atol=1e-5)


def test_diffusers_default_grid_is_not_uniform() -> None:
    """diffusers' set_timesteps(n) ends ``..., 1/num_train_timesteps, 0``; ours is uniform."""
    theirs = FlowMatchEulerDiscreteScheduler()
    theirs.set_timesteps(4)
    torch.testing.assert_close(theirs.sigmas, torch.tensor([1.0, 0.667, 0.334, 0.001, 0.0]))
    ours = FlowEulerScheduler()
    ours.set_timesteps(4)
    assert ours.sigmas.tolist() == [1.0, 0.75, 0.5, 0.25, 0.0]


@pytest.mark.parametrize("method", ["euler", "heun"])
@pytest.mark.parametrize("grid", ["uniform", "shifted", [0.0, 0.3, 0.8, 1.0]])
def test_save_load_round_trip(tmp_path, method: str, grid) -> None:
    options = {"shift": 2.0} if grid == "shifted" else None
    scheduler = SCHEDULERS[method](grid=grid, grid_options=options)
    scheduler.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "scheduler_config.json").read_text())
    assert config["_class_name"] == SCHEDULERS[method].__name__
    loaded = SCHEDULERS[method].from_pretrained(tmp_path)
    assert loaded.config.grid == scheduler.config.grid
    assert loaded.config.grid_options == options
    steps = None if not isinstance(grid, str) else 5
    scheduler.set_timesteps(steps)
    loaded.set_timesteps(steps)
    assert torch.equal(loaded.timesteps, scheduler.timesteps)
    assert torch.equal(loaded.sigmas, scheduler.sigmas)


@pytest.mark.parametrize("method", ["euler", "heun"])
def test_loop_runs_again_and_tuple_output(field, noise, method: str) -> None:
    scheduler = SCHEDULERS[method]()
    scheduler.set_timesteps(3)
    model = DiffusersModel(field)
    first = run_loop(scheduler, model, noise)
    assert scheduler.step_index is None
    x = noise
    for ts in scheduler.timesteps:
        (x,) = scheduler.step(model(x, ts), ts, x, return_dict=False)
    assert torch.equal(x, first)


def test_set_timesteps_cache_is_not_shared_with_callers() -> None:
    scheduler = FlowEulerScheduler()
    scheduler.set_timesteps(4)
    scheduler.timesteps += 1
    scheduler.set_timesteps(4)
    assert scheduler.timesteps.tolist() == [1000, 750, 500, 250]
    scheduler.set_timesteps(2)
    assert scheduler.timesteps.tolist() == [1000, 500]


def test_begin_index_starts_mid_grid(field, noise) -> None:
    scheduler = FlowEulerScheduler()
    scheduler.set_timesteps(4)
    scheduler.set_begin_index(2)
    x = noise
    with torch.no_grad():
        for ts in scheduler.timesteps[2:]:
            x = scheduler.step(DiffusersModel(field)(x, ts), ts, x).prev_sample
    expected = sample_ode(field, noise, method="euler", grid=[0.5, 0.75, 1.0]).x
    torch.testing.assert_close(x, expected, rtol=1e-6, atol=1e-6)


def test_scale_noise_is_the_forward_process() -> None:
    gen = torch.Generator().manual_seed(2)
    x1, x0 = torch.randn(3, 1, 4, 4, generator=gen), torch.randn(3, 1, 4, 4, generator=gen)
    scheduler = FlowEulerScheduler()
    out = scheduler.scale_noise(x1, torch.tensor(750.0), x0)
    torch.testing.assert_close(out, 0.25 * x1 + 0.75 * x0)
    per_sample = scheduler.scale_noise(x1, torch.tensor([0.0, 500.0, 1000.0]), x0)
    torch.testing.assert_close(per_sample[0], x1[0])
    torch.testing.assert_close(per_sample[1], 0.5 * (x1[1] + x0[1]))
    torch.testing.assert_close(per_sample[2], x0[2])


def test_diffusers_interface() -> None:
    for cls, order in ((FlowEulerScheduler, 1), (FlowHeunScheduler, 2)):
        scheduler = cls()
        assert scheduler.order == order
        assert scheduler.init_noise_sigma == 1.0
        assert len(scheduler) == 1000
        x = torch.randn(2, 2)
        assert scheduler.scale_model_input(x, 500.0) is x


def test_bad_arguments_named_errors() -> None:
    with pytest.raises(ValueError, match="unknown grid 'karras'"):
        FlowEulerScheduler(grid="karras")
    with pytest.raises(ValueError, match="options"):
        FlowEulerScheduler(grid="uniform", grid_options={"shift": 3.0})
    with pytest.raises(ValueError, match="grid_options apply to named grids only"):
        FlowEulerScheduler(grid=[0.0, 1.0], grid_options={"shift": 3.0})
    with pytest.raises(ValueError, match="final_euler must be a bool"):
        FlowHeunScheduler(final_euler="yes")
    with pytest.raises(ValueError, match="end at t = 1"):
        FlowEulerScheduler(grid=[0.0, 0.5, 0.9])
    with pytest.raises(ValueError, match="increasing"):
        FlowEulerScheduler(grid=[0.0, 0.6, 0.5, 1.0])
    with pytest.raises(ValueError, match="num_train_timesteps must be a positive int"):
        FlowEulerScheduler(num_train_timesteps=0)
    scheduler = FlowEulerScheduler()
    with pytest.raises(RuntimeError, match="set_timesteps"):
        scheduler.step(torch.zeros(1, 2), torch.tensor(1000.0), torch.zeros(1, 2))
    with pytest.raises(ValueError, match="num_inference_steps must be a positive int"):
        scheduler.set_timesteps()
    with pytest.raises(ValueError, match="at least 1 step"):
        scheduler.set_timesteps(0)
    with pytest.raises(ValueError, match="must not include the terminal 0"):
        scheduler.set_timesteps(sigmas=[1.0, 0.5, 0.0])
    with pytest.raises(ValueError, match="sigmas must decrease"):
        scheduler.set_timesteps(sigmas=[0.5, 1.0])
    with pytest.raises(ValueError, match="sigmas must decrease from at most 1"):
        scheduler.set_timesteps(sigmas=[2.0, 1.0])
    with pytest.raises(ValueError, match="does not match the 2 sigmas"):
        scheduler.set_timesteps(3, sigmas=[1.0, 0.5])
    with pytest.raises(ValueError, match="does not match the configured grid"):
        FlowEulerScheduler(grid=[0.0, 0.5, 1.0]).set_timesteps(4)
    scheduler.set_timesteps(2)
    with pytest.raises(ValueError, match="not an integer index"):
        scheduler.step(torch.zeros(1, 2), 0, torch.zeros(1, 2))
    with pytest.raises(ValueError, match="not one of this scheduler's timesteps"):
        scheduler.step(torch.zeros(1, 2), torch.tensor(123.0), torch.zeros(1, 2))
    with pytest.raises(ValueError, match="noise must have the sample's shape"):
        scheduler.scale_noise(torch.zeros(2, 2), 500.0, torch.zeros(3, 2))
    heun = FlowHeunScheduler()
    with pytest.raises(ValueError, match="even index"):
        heun.set_begin_index(1)
    heun.set_timesteps(2)
    with pytest.raises(RuntimeError, match="corrector step came without its predictor"):
        heun.step(torch.zeros(1, 2), heun.timesteps[-1], torch.zeros(1, 2))
