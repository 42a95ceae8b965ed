"""A training run of a few seconds, for the notebooks' live checks and the tests: a 2-layer,
32-wide model on the raw bytes (vocab 256, no tokenizer needed) of the shipped TinyStories sample,
trained by the package's own trainer. The tests start from `tiny_config` with their own overrides.

>>> s = tiny_run("/tmp/tiny", "lr=0.03", "optim.lr=3e-2")     # doctest: +SKIP
>>> s["status"], round(s["val_loss"], 1)                      # doctest: +SKIP
('finished', 2.3)
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from cs336.data import CORPORA, sample_path
from cs336.training.config import TrainConfig, load_config
from cs336.training.trainer import train


# Overrides of the trainer's defaults: 60 steps of 8 × 32 bytes, one evaluation at the end.
TINY = (
    "model.vocab_size=256", "model.context_length=32", "model.d_model=32", "model.num_layers=2",
    "model.num_heads=2", "model.d_ff=96", "model.fused=true", "batch_size=8", "max_steps=60",
    "eval_interval=0", "eval_batches=4", "log_interval=1", "checkpoint_interval=0",
    "optim.warmup_iters=5", 'device="cpu"',
)


def byte_tokens(workdir: str | Path, n_bytes: int = 300_000) -> tuple[Path, Path]:
    """The first `n_bytes` of the TinyStories sample's train and valid files (the shipped samples,
    even where the full corpus is fetched) as uint16 byte ids in `workdir/{train,valid}.npy`
    (written once)."""
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    paths = []
    for split in ("train", "valid"):
        out = workdir / f"{split}.npy"
        if not out.exists():
            with open(sample_path(CORPORA["tinystories"].samples[split]), "rb") as f:
                raw = f.read(n_bytes)
            np.save(out, np.frombuffer(raw, dtype=np.uint8).astype(np.uint16))
        paths.append(out)
    return paths[0], paths[1]


def _paths(train: str | Path, valid: str | Path, run_dir: str | Path) -> list[str]:
    return [f"data.train={json.dumps(str(train))}", f"data.valid={json.dumps(str(valid))}",
            f"run_dir={json.dumps(str(run_dir))}"]


def tiny_overrides(workdir: str | Path, name: str, *overrides: str) -> list[str]:
    """The `key=value` overrides of a tiny run named `name` in `workdir`, then the caller's."""
    return [*TINY, *_paths(*byte_tokens(workdir), Path(workdir) / name), *overrides]


def tiny_config(train: str | Path, valid: str | Path, run_dir: str | Path, *overrides: str) -> TrainConfig:
    """The tiny run's config on the token files `train` and `valid` (see `byte_tokens`), written to
    `run_dir`, with the caller's `key=value` overrides last."""
    return load_config(None, [*TINY, *_paths(train, valid, run_dir), *overrides])


def tiny_run(workdir: str | Path, name: str, *overrides: str) -> dict[str, Any]:
    """Train a tiny run (resuming it if it exists) and return its summary."""
    return train(tiny_config(*byte_tokens(workdir), Path(workdir) / name, *overrides), progress=False)
