"""What the benchmark scripts share: the machine's description and writing a result file."""

from __future__ import annotations

import platform
from pathlib import Path

from flowkit.files import write_text


def cpu_name() -> str:
    """The CPU model (from /proc/cpuinfo), else what ``platform`` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def write_result(path: str | Path, text: str) -> Path:
    """Write a results table atomically (missing folders are created)."""
    return write_text(path, text)
