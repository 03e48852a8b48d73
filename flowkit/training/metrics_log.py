"""``RUN/metrics.jsonl``: one JSON object per logged step."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from flowkit.files import write_text


class MetricsLog:
    """Appends records to a JSON-lines file; on resume, drops records past the restart step
    so the file reads as one uninterrupted run."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)

    def truncate_after(self, step: int) -> None:
        if not self.path.is_file():
            return
        kept = [
            line
            for line in self.path.read_text().splitlines()
            if line.strip() and json.loads(line).get("step", 0) <= step
        ]
        write_text(self.path, "".join(line + "\n" for line in kept))

    def write(self, record: dict[str, Any]) -> None:
        with self.path.open("a") as handle:
            handle.write(json.dumps(record) + "\n")
