"""The ReinFlow loop on a tiny Pendulum run: resume equals uninterrupted; bad input."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from flowkit.files import load_tensors
from flowkit.rl.config import ReinFlowConfig
from flowkit.rl.envs import EnvSpaceError, check_spaces, make_envs
from flowkit.rl.trainer import ReinFlowTrainer
from flowkit.training.config import ConfigError, config_from_dict, load_config

TINY = {
    "env": {"id": "Pendulum-v1", "num_envs": 2, "steps_per_iteration": 16},
    "policy": {"steps": 2, "hidden_dim": 16, "num_layers": 1, "noise_hidden_dim": 8,
               "noise_layers": 1, "value_hidden_dim": 16, "value_layers": 1},
    "pretrain": {"demonstrations": "pendulum_energy", "episodes": 1, "steps": 5,
                 "batch_size": 32},
    "ppo": {"iterations": 2, "epochs": 2, "minibatch_size": 16, "eval_every": 2,
            "eval_episodes": 1, "bc_coef": 0.1, "sigma_max_end": 0.15, "actor_lr": 1e-3},
    "train": {"seed": 3, "checkpoint_every": 1},
}  # fmt: skip
TIMES = ("wall_s", "pretrain_s")


def _records(run: Path) -> list[dict]:
    lines = (run / "metrics.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(line).items() if k not in TIMES} for line in lines]


def _run(run: Path, resume: bool = False, **sections) -> ReinFlowTrainer:
    values = json.loads(json.dumps(TINY))
    for name, section in sections.items():
        values[name].update(section)
    trainer = ReinFlowTrainer(config_from_dict(values, ReinFlowConfig), run, resume=resume,
                              progress=False)  # fmt: skip
    trainer.fit()
    trainer.close()
    return trainer


def test_resume_equals_uninterrupted(tmp_path: Path) -> None:
    whole = tmp_path / "whole"
    _run(whole)
    records = _records(whole)
    assert [r["step"] for r in records] == [0, 1, 2]
    assert "eval_return" in records[0] and "eval_return" in records[2]
    assert records[1]["first_ratio_dev"] < 1e-5  # fresh rollouts: the first ratio is 1
    # an interruption after iteration 1: only its checkpoint survives
    cut = tmp_path / "cut"
    shutil.copytree(whole, cut)
    shutil.rmtree(cut / "checkpoints" / "step-00000002")
    shutil.rmtree(cut / "policy")
    resumed = _run(cut, resume=True)
    assert resumed.iteration == 2
    a = load_tensors(whole / "policy" / "policy.safetensors")
    b = load_tensors(cut / "policy" / "policy.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert _records(cut) == records
    # and training moved the policy away from the pretrained one (the check can fail)
    pre = load_tensors(whole / "pretrained" / "policy.safetensors")
    assert any(not torch.equal(a[k], pre[k]) for k in a)
    # a run with another seed differs
    other = tmp_path / "other"
    _run(other, train={"seed": 4, "checkpoint_every": 1})
    c = load_tensors(other / "policy" / "policy.safetensors")
    assert any(not torch.equal(a[k], c[k]) for k in a)


def test_resume_refuses_a_changed_policy(tmp_path: Path) -> None:
    _run(tmp_path / "run", ppo={"iterations": 0})
    with pytest.raises(ConfigError, match="policy.steps"):
        _run(tmp_path / "run", resume=True, policy={"steps": 3})


def test_a_discrete_action_space_is_an_error() -> None:
    envs = make_envs("CartPole-v1", 1)
    with pytest.raises(EnvSpaceError, match="not a Box"):
        check_spaces(envs)


def test_a_wrong_action_size_is_an_error() -> None:
    envs = make_envs("Pendulum-v1", 1)
    assert check_spaces(envs) == (3, 1)
    with pytest.raises(EnvSpaceError, match="3 action dimensions.*has 1"):
        check_spaces(envs, action_dim=3)


def test_bad_configs_are_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="ppo.clipp"):
        config_from_dict({"ppo": {"clipp": 0.1}}, ReinFlowConfig)
    with pytest.raises(ValueError, match="sigma_min=0.3 > sigma_max=0.1"):
        _run(tmp_path / "a", policy={"sigma_min": 0.3, "sigma_max": 0.1})
    assert not (tmp_path / "a").exists()  # refused before the run directory was made
    with pytest.raises(ConfigError, match="env.num_envs=0"):
        _run(tmp_path / "b", env={"num_envs": 0})
    preset = Path(__file__).parents[2] / "configs" / "reinflow_pendulum.yaml"
    assert load_config(preset, schema=ReinFlowConfig).env.id == "Pendulum-v1"


def test_a_gaussian_demonstrator_feeds_behaviour_cloning(tmp_path: Path) -> None:
    """The Hopper recipe on Pendulum: PPO trains a Gaussian policy; its noise-free rollouts
    are the demonstrations a flow policy is cloned on."""
    _run(tmp_path / "gauss", policy={"kind": "gaussian"}, pretrain={"demonstrations": None},
         ppo={"iterations": 1, "bc_coef": 0.0})  # fmt: skip
    demo = str(tmp_path / "gauss" / "policy")
    flow = _run(tmp_path / "flow", pretrain={"demonstrations": demo, "episodes": 2},
                ppo={"iterations": 0})  # fmt: skip
    record = _records(tmp_path / "flow")[0]
    assert record["demo_transitions"] == 400 and "demo_return" in record
    assert flow.iteration == 0 and (tmp_path / "flow" / "pretrained" / "policy.json").is_file()
    with pytest.raises(ConfigError, match="pretrain.demonstrations=null"):
        _run(tmp_path / "bad", policy={"kind": "gaussian"})


def test_init_from_a_policy_of_another_shape_is_an_error(tmp_path: Path) -> None:
    _run(tmp_path / "a", ppo={"iterations": 0})
    init = str(tmp_path / "a" / "pretrained")
    again = _run(tmp_path / "b", policy={"init_from": init, "sigma_max": 0.3},
                 ppo={"iterations": 0})  # fmt: skip
    assert again.iteration == 0
    with pytest.raises(ConfigError, match="make them agree"):
        _run(tmp_path / "c", policy={"init_from": init, "hidden_dim": 8}, ppo={"iterations": 0})
