"""The training-engine tests' runs: the package's tiny run (`cs336.experiments.tiny`: byte-level
token files cut from the shipped TinyStories sample, a 2-layer, 32-wide model), made shorter, with
evaluations and checkpoints along the way, so that a test runs in seconds on a CPU.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from cs336.experiments import tiny
from cs336.training.config import TrainConfig

ROOT = Path(__file__).resolve().parents[1]

# 12 steps, evaluated at 6 and 12 and checkpointed every 4, at a learning rate that lowers the loss
# within those steps.
ENGINE = (
    "max_steps=12", "eval_interval=6", "eval_batches=2", "checkpoint_interval=4", "keep_checkpoints=2",
    "optim.lr=3e-3", "optim.min_lr=3e-4", "optim.warmup_iters=3",
)


def tiny_config(train: Path, valid: Path, run_dir: Path, **settings) -> TrainConfig:
    """The engine tests' run on these token files, with `settings` last: top-level keys
    (`max_steps=30`) or a table's keys as a dict (`optim={"cosine_iters": 16}`)."""
    overrides = list(ENGINE)
    for key, value in settings.items():
        items = value.items() if isinstance(value, dict) else [(None, value)]
        overrides += [f"{key}.{sub}={json.dumps(v)}" if sub else f"{key}={json.dumps(v)}" for sub, v in items]
    return tiny.tiny_config(train, valid, run_dir, *overrides)


def subprocess_env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
