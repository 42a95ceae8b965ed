"""Checkpoints: everything needed to resume a run, loaded without executing code.

A checkpoint is a dict of tensors and plain Python values, written with `torch.save` and read with
`torch.load(weights_only=True)`, so a malicious file cannot run code. `extra` carries whatever else
resuming exactly needs (RNG states, the data sampler, the config).
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import IO, Any, BinaryIO

import torch
from torch import nn

from cs336.errors import CS336Error

FORMAT = "cs336-checkpoint-v1"


def _unwrap(model: nn.Module) -> nn.Module:
    """The bare model under DDP (`.module`) or torch.compile (`._orig_mod`) wrappers."""
    while True:
        if hasattr(model, "_orig_mod"):
            model = model._orig_mod
        elif isinstance(model, nn.parallel.DistributedDataParallel):
            model = model.module
        else:
            return model


def save_checkpoint(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    iteration: int,
    out: str | os.PathLike | BinaryIO | IO[bytes],
    *,
    extra: dict[str, Any] | None = None,
) -> None:
    """Write model, optimizer and iteration (and `extra`) to a path or a binary file object."""
    payload = {
        "format": FORMAT,
        "model": _unwrap(model).state_dict(),
        "optimizer": optimizer.state_dict(),
        "iteration": int(iteration),
        "extra": extra or {},
    }
    torch.save(payload, out)


def read_checkpoint(src: str | os.PathLike | BinaryIO | IO[bytes]) -> dict[str, Any]:
    """Load a checkpoint dict safely; a truncated or foreign file is a `CS336Error`."""
    name = os.fspath(src) if isinstance(src, (str, os.PathLike)) else getattr(src, "name", "<file object>")
    if isinstance(src, (str, os.PathLike)) and not Path(src).exists():
        raise CS336Error(f"checkpoint not found: {name}")
    try:
        payload = torch.load(src, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many types for corrupt zip/pickle data
        raise CS336Error(f"cannot read checkpoint {name}: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}") from e
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CS336Error(f"{name} is not a cs336 checkpoint")
    return payload


def load_checkpoint(src: str | os.PathLike | BinaryIO | IO[bytes], model: nn.Module, optimizer: torch.optim.Optimizer | None) -> int:
    """Restore model and optimizer state from `src`; return the saved iteration."""
    payload = read_checkpoint(src)
    try:
        _unwrap(model).load_state_dict(payload["model"])
        if optimizer is not None:
            optimizer.load_state_dict(payload["optimizer"])
    except (RuntimeError, ValueError, KeyError) as e:
        # torch lists every missing/unexpected key on many lines; the first says what is wrong
        raise CS336Error(f"checkpoint does not fit this model/optimizer: {str(e).strip().splitlines()[0]}") from e
    return payload["iteration"]
