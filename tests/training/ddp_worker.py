"""Worker for the two-process test: trains, then each rank saves its own weights."""

import sys
from pathlib import Path

import torch.distributed as dist
from safetensors.torch import save_file

from flowkit.distributed import shutdown_and_exit
from flowkit.training import Trainer, load_config

run = Path(sys.argv[1])
overrides = sys.argv[2:]
trainer = Trainer(load_config(None, overrides), run, progress=False)
trainer.fit()
weights = {k: v.contiguous() for k, v in trainer.model.state_dict().items()}
save_file(weights, run / f"rank{dist.get_rank()}.safetensors")
shutdown_and_exit(0)
