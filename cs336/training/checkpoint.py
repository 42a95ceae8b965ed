"""Checkpoints: everything needed to resume a run, loaded without executing code.

A checkpoint is a dict of tensors and plain Python values, written with `torch.save` and read with
`torch.load(weights_only=True)`, so a malicious file cannot run code. `extra` carries whatever else
resuming exactly needs (RNG states, the data sampler, the config).
"""

from __future__ import annotations

import os
import signal
import threading
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
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


@contextmanager
def _interrupts_held() -> Iterator[None]:
    """Hold back Ctrl-C (SIGINT) until the block has run, then deliver it.

    `torch.save` into a Python file object can turn a KeyboardInterrupt raised inside its writes
    into a RuntimeError ("[enforce fail at inline_container.cc] ... unexpected pos"): an interrupted
    run would read as a failed write and end without its summary. Held back, the interrupt arrives after the
    checkpoint is complete and renamed into place. (Python's signal handlers belong to the main
    thread; in another thread the block runs as it is.)"""
    if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGINT) is None:
        yield  # None: a handler not installed from Python, which could not be put back
        return
    caught: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: caught.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if caught:
            signal.raise_signal(signal.SIGINT)  # to the handler the process had: KeyboardInterrupt by default


def save_checkpoint(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    iteration: int,
    out: str | os.PathLike | BinaryIO | IO[bytes],
    *,
    extra: dict[str, Any] | None = None,
) -> None:
    """Write model, optimizer and iteration (and `extra`) to a path or a binary file object.

    A path is written to a hidden temporary file beside it, flushed to disk and renamed over the
    target only when complete, so a crash, a kill or a full disk while saving leaves the previous
    file as it was; a Ctrl-C while saving takes effect once the new file is in place."""
    payload = {
        "format": FORMAT,
        "model": _unwrap(model).state_dict(),
        "optimizer": optimizer.state_dict(),
        "iteration": int(iteration),
        "extra": extra or {},
    }
    if not isinstance(out, (str, os.PathLike)):
        torch.save(payload, out)
        return
    out = Path(out)
    tmp = out.with_name(f".{out.name}.tmp")
    with _interrupts_held():
        try:
            with open(tmp, "wb") as f:
                torch.save(payload, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, out)
        finally:
            tmp.unlink(missing_ok=True)


def read_checkpoint(src: str | os.PathLike | BinaryIO | IO[bytes]) -> dict[str, Any]:
    """Load a checkpoint dict safely; a truncated or foreign file is a `CS336Error`."""
    name = os.fspath(src) if isinstance(src, (str, os.PathLike)) else getattr(src, "name", "<file object>")
    if isinstance(src, (str, os.PathLike)) and not Path(src).exists():
        raise CS336Error(f"checkpoint not found: {name}")
    _check_archive(src, name)
    try:
        payload = torch.load(src, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many types for corrupt zip/pickle data
        raise CS336Error(f"cannot read checkpoint {name}: {_why(e)}") from e
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CS336Error(f"{name} is not a cs336 checkpoint")
    return payload


def _check_archive(src, name: str) -> None:
    """torch.save writes a zip archive: its first bytes say whether the file is one at all, and its
    central directory (written last) whether it is complete."""
    f = open(src, "rb") if isinstance(src, (str, os.PathLike)) else src
    try:
        start = f.tell()
        magic = f.read(4)
        f.seek(start)
        complete = zipfile.is_zipfile(f)
        f.seek(start)
    finally:
        if f is not src:
            f.close()
    if magic != b"PK\x03\x04":
        raise CS336Error(f"cannot read checkpoint {name}: not a torch checkpoint (no zip header)")
    if not complete:
        raise CS336Error(f"cannot read checkpoint {name}: the file is truncated or corrupt (incomplete zip archive)")


def _why(e: Exception) -> str:
    """One line saying why torch.load failed (its own messages run to paragraphs)."""
    msg = str(e)
    if "Weights only load failed" in msg:
        return "it contains pickled Python objects, which are not loaded because they could run code"
    if "zip archive" in msg or "central directory" in msg:
        return "the file is truncated or corrupt (incomplete zip archive)"
    return f"not a torch checkpoint ({type(e).__name__})"


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
