"""Batches of next-token prediction examples from a token array on disk."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt
import torch

from cs336.errors import CS336Error


def get_batch(dataset: npt.NDArray, batch_size: int, context_length: int, device: str | torch.device, *, generator: np.random.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Sample `batch_size` windows with uniform random starts in [0, len − context_length).

    `x[b] = dataset[s:s+L]`, `y[b] = dataset[s+1:s+L+1]`, both int64 on `device`. Works on an
    `np.memmap` without reading more than the sampled windows.
    """
    n = len(dataset)
    if n <= context_length:
        raise CS336Error(f"dataset has {n} tokens, needs more than context_length={context_length}")
    device = torch.device(device)  # raises on a malformed device string
    rng = generator if generator is not None else np.random.default_rng()
    starts = rng.integers(0, n - context_length, size=batch_size)
    offsets = np.arange(context_length + 1)
    windows = np.asarray(dataset[starts[:, None] + offsets[None, :]], dtype=np.int64)
    batch = torch.from_numpy(windows)
    if device.type == "cuda":
        batch = batch.pin_memory().to(device, non_blocking=True)
    else:
        batch = batch.to(device)
    return batch[:, :-1], batch[:, 1:]


def load_tokens(path: str | Path, dtype: str | np.dtype | None = None) -> np.memmap:
    """Open a token file written by `cs336 encode` (`.npy`, or raw with an explicit dtype) as a memmap."""
    path = Path(path)
    if not path.exists():
        raise CS336Error(f"token file not found: {path}")
    if path.suffix == ".npy":
        arr = np.load(path, mmap_mode="r")
    else:
        if dtype is None:
            raise CS336Error(f"{path} is a raw token file: give its dtype (uint16 or uint32)")
        arr = np.memmap(path, dtype=dtype, mode="r")
    if arr.ndim != 1 or arr.dtype.kind != "u":
        raise CS336Error(f"{path} is not a 1-D unsigned token array (got {arr.dtype}, shape {arr.shape})")
    return arr
