"""Worker for the two-process interrupt test (run by torchrun).

Every rank trains the run three times: uninterrupted (``RUN/full``); in ``RUN/split`` with
SIGINT sent to rank 1 alone during step 7 and rank 0's wall clock alone at one minute per
step (a checkpoint is due every ``train.checkpoint_minutes``); and resumed from there.
Each rank writes ``RUN/rank{r}.json``: where it stopped, the checkpoints it saw and
whether its resumed weights equal the uninterrupted ones bitwise.
"""

import json
import os
import signal
import sys
from pathlib import Path

import torch

from flowkit.distributed import shutdown_and_exit
from flowkit.training import Trainer, load_config
from flowkit.training.interrupts import TrainingInterrupted

run = Path(sys.argv[1])
config = load_config(None, sys.argv[2:])

full = Trainer(config, run / "full", progress=False)
full.fit()
rank = full.dist.rank

split = Trainer(config, run / "split", progress=False)
if rank == 0:
    split.timer.clock = lambda: 60.0 * split.step
else:
    original = split._train_step

    def step_then_signal(autocast):
        result = original(autocast)
        if split.step + 1 == 7:
            os.kill(os.getpid(), signal.SIGINT)
        return result

    split._train_step = step_then_signal
stopped = None
try:
    split.fit()
except TrainingInterrupted as stop:
    stopped = {"step": stop.step, "exit_code": stop.exit_code, "checkpoint": stop.checkpoint.name}
checkpoints = sorted(int(p.name[5:]) for p in (run / "split" / "checkpoints").iterdir())

resumed = Trainer(config, run / "split", resume=True, progress=False)
resumed_from = resumed.step
resumed.fit()
pairs = [(full.model, resumed.model), (full.ema.ema_model, resumed.ema.ema_model)]
equal = all(
    torch.equal(a, b)
    for one, other in pairs
    for a, b in zip(one.state_dict().values(), other.state_dict().values(), strict=True)
)
report = {
    "stopped": stopped,
    "checkpoints": checkpoints,
    "resumed_from": resumed_from,
    "equal": equal,
}
(run / f"rank{rank}.json").write_text(json.dumps(report))
shutdown_and_exit(0)
