"""A tiny saved teacher shared by the reflow tests."""

from pathlib import Path

import pytest
import torch

from flowkit.models import MLPField


@pytest.fixture
def teacher_dir(tmp_path: Path) -> Path:
    """An untrained 2-D MLP velocity field saved as a model directory (config + safetensors)."""
    torch.manual_seed(0)
    model = MLPField(dim=2, hidden_dim=16, num_layers=2)
    folder = tmp_path / "teacher"
    model.save_pretrained(folder)
    return folder


@pytest.fixture
def conditional_teacher_dir(tmp_path: Path) -> Path:
    torch.manual_seed(0)
    model = MLPField(dim=3, hidden_dim=16, num_layers=2, num_classes=4)
    folder = tmp_path / "cond_teacher"
    model.save_pretrained(folder)
    return folder
