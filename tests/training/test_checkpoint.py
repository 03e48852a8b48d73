"""Checkpoints: optimizer state round-trips through safetensors, writes are atomic."""

from pathlib import Path

import pytest
import torch
from torch import nn

from flowkit.training.checkpoint import CheckpointManager
from flowkit.training.optimizer_state import flatten_optimizer_state, unflatten_optimizer_state


def _trained_adamw() -> tuple[nn.Module, torch.optim.AdamW]:
    torch.manual_seed(0)
    model = nn.Linear(3, 2)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2, betas=(0.8, 0.95))
    for _ in range(3):
        model(torch.randn(4, 3)).pow(2).sum().backward()
        optimizer.step()
    return model, optimizer


def test_optimizer_state_round_trip() -> None:
    _, optimizer = _trained_adamw()
    tensors, meta = flatten_optimizer_state(optimizer.state_dict())
    restored = unflatten_optimizer_state(tensors, meta)
    original = optimizer.state_dict()
    assert restored["param_groups"] == original["param_groups"]
    for pid, state in original["state"].items():
        for name, value in state.items():
            torch.testing.assert_close(restored["state"][pid][name], value)


def test_save_load_and_prune(tmp_path: Path) -> None:
    model, optimizer = _trained_adamw()
    manager = CheckpointManager(tmp_path, keep=2)
    for step in (10, 20, 30):
        manager.save(step, model, model, optimizer, {"note": step})
    assert [p.name for p in manager.list()] == ["step-00000020", "step-00000030"]
    (manager.root / ".tmp-step-00000040").mkdir()  # a half-written checkpoint is ignored
    assert manager.latest().name == "step-00000030"
    fresh_model = nn.Linear(3, 2)
    fresh_opt = torch.optim.AdamW(fresh_model.parameters(), lr=1.0)
    ckpt = manager.load(manager.latest(), fresh_model, fresh_model, fresh_opt)
    assert ckpt.step == 30 and ckpt.state["note"] == 30
    torch.testing.assert_close(fresh_model.weight, model.weight)
    assert fresh_opt.param_groups[0]["betas"] == (0.8, 0.95)
    assert not list(tmp_path.rglob("*.pt")) and not list(tmp_path.rglob("*.bin"))


def test_named_modules_and_optimizers_round_trip(tmp_path: Path) -> None:
    """A loop of several networks checkpoints them all; a clash of names is refused."""
    torch.manual_seed(0)
    nets = {"generator": nn.Linear(3, 3), "fake": nn.Linear(3, 2)}
    opts = {f"{k}_opt": torch.optim.Adam(v.parameters(), lr=0.1) for k, v in nets.items()}
    for net, opt in zip(nets.values(), opts.values(), strict=True):
        net(torch.randn(4, 3)).square().sum().backward()
        opt.step()
    manager = CheckpointManager(tmp_path)
    path = manager.save_named(7, nets, opts, {"extra": 1})
    fresh = {"generator": nn.Linear(3, 3), "fake": nn.Linear(3, 2)}
    fresh_opts = {f"{k}_opt": torch.optim.Adam(v.parameters(), lr=0.1) for k, v in fresh.items()}
    ckpt = manager.load_named(path, fresh, fresh_opts)
    assert ckpt.step == 7 and ckpt.state["extra"] == 1
    for name in nets:
        for a, b in zip(nets[name].parameters(), fresh[name].parameters(), strict=True):
            assert torch.equal(a, b)
        saved = opts[f"{name}_opt"].state_dict()["state"][0]["exp_avg"]
        assert torch.equal(saved, fresh_opts[f"{name}_opt"].state_dict()["state"][0]["exp_avg"])
    with pytest.raises(ValueError, match="used twice"):
        manager.save_named(8, {"a": nets["fake"]}, {"a": opts["fake_opt"]}, {})
    with pytest.raises(FileNotFoundError, match="missing"):
        manager.load_named(path, {"critic": nn.Linear(3, 3)}, {})
