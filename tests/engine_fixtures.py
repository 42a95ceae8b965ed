"""Small real data and a tiny config for the training-engine tests.

Byte-level token files (ids = UTF-8 bytes, vocab 256) cut from the shared TinyStories samples keep
these tests independent of the tokenizer while still training on real text.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from cs336.data import corpus_path
from cs336.training.config import TrainConfig

ROOT = Path(__file__).resolve().parents[1]


def byte_token_files(dest: Path, n_train: int = 200_000, n_valid: int = 50_000) -> tuple[Path, Path]:
    dest.mkdir(parents=True, exist_ok=True)
    paths = []
    for split, n in (("train", n_train), ("valid", n_valid)):
        raw = corpus_path("tinystories", split).read_bytes()[:n]
        path = dest / f"{split}.npy"
        np.save(path, np.frombuffer(raw, dtype=np.uint8).astype(np.uint16))
        paths.append(path)
    return paths[0], paths[1]


def tiny_config(train: Path, valid: Path, run_dir: Path, **top) -> TrainConfig:
    """A 2-layer, 32-wide model on byte tokens; a step takes a few milliseconds on a CPU."""
    d = {
        "name": "tiny",
        "run_dir": str(run_dir),
        "batch_size": 8,
        "max_steps": 12,
        "eval_interval": 6,
        "eval_batches": 2,
        "log_interval": 1,
        "checkpoint_interval": 4,
        "keep_checkpoints": 2,
        "device": "cpu",
        "model": {"vocab_size": 256, "context_length": 32, "d_model": 32, "num_layers": 2, "num_heads": 4, "d_ff": 64},
        "optim": {"lr": 3e-3, "min_lr": 3e-4, "warmup_iters": 3},
        "data": {"train": str(train), "valid": str(valid)},
    }
    if any(k in top for k in ("max_tokens", "max_minutes")):
        del d["max_steps"]
    for key, value in top.items():
        if key in ("model", "optim", "data"):
            d[key] = {**d[key], **value}
        else:
            d[key] = value
    return TrainConfig.from_dict(d)



def subprocess_env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
