"""``flowkit --help`` and every command's ``--help`` build their parsers without torch."""

from __future__ import annotations

import subprocess
import sys

import pytest

from flowkit.solvers import GRIDS, ODE_METHODS, SDE_METHODS
from flowkit.solvers import names as solver_names

HEAVY = ("torch", "diffusers", "scipy", "numpy", "safetensors", "torchdiffeq")
PROBE = """
import sys
from flowkit.cli.main import main
try:
    main({argv!r})
except SystemExit as done:
    assert done.code == 0, done.code
print("imported:" + ",".join(m for m in {heavy!r} if m in sys.modules))
"""


@pytest.mark.parametrize(
    "argv", [["--help"], ["train", "--help"], ["sample", "--help"], ["reflow", "--help"],
             ["stats", "--help"], ["fid", "--help"], ["distill", "--help"],
             ["reinflow", "--help"]]  # fmt: skip
)
def test_help_imports_neither_torch_nor_diffusers(argv: list[str]) -> None:
    code = PROBE.format(argv=argv, heavy=HEAVY)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "examples" in done.stdout
    assert done.stdout.strip().splitlines()[-1] == "imported:"


def test_the_parsers_choices_are_the_solvers_tables() -> None:
    from flowkit.solvers.gbm import sample_gbm  # noqa: F401  (the tables are used there)
    from flowkit.solvers.ode import SINGLE_STEP_METHODS

    assert tuple(SINGLE_STEP_METHODS) == solver_names.SINGLE_STEP_NAMES
    assert ODE_METHODS == solver_names.ODE_METHODS and SDE_METHODS == solver_names.SDE_METHODS
    assert GRIDS == solver_names.GRIDS
