"""``flowkit reinflow --help`` builds its parser without torch."""

from __future__ import annotations

import subprocess
import sys

PROBE = """
import argparse, sys
from flowkit.cli import reinflow
parser = argparse.ArgumentParser(prog="flowkit")
reinflow.add_parser(parser.add_subparsers())
try:
    parser.parse_args(["reinflow", "--help"])
except SystemExit as done:
    assert done.code == 0
print("imported:" + ",".join(m for m in ("torch", "numpy", "gymnasium") if m in sys.modules))
"""


def test_help_has_examples_and_imports_no_torch() -> None:
    done = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "examples" in done.stdout and "--resume" in done.stdout
    assert done.stdout.strip().splitlines()[-1] == "imported:"
