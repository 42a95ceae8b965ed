"""Batches of next-token prediction examples from a token array on disk."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt
import torch
from numpy.lib import format as npy_format

from cs336.errors import CS336Error, input_file


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
    """Open a token file written by `cs336 encode` (`.npy`, or raw with an explicit dtype) as a memmap.

    The file's size is checked against what its header (or dtype) promises before it is mapped, so
    an empty, truncated or foreign file is a `CS336Error` naming it."""
    path = input_file(path, "token file")
    size = path.stat().st_size
    if path.suffix == ".npy":
        dtype, shape, offset = _npy_layout(path)
    else:
        if dtype is None:
            raise CS336Error(f"{path} is a raw token file: give its dtype (uint16 or uint32)")
        dtype, offset = np.dtype(dtype), 0
        if size % dtype.itemsize:
            raise CS336Error(f"{path} is truncated or not {dtype}: {size} bytes is not a whole number of {dtype.itemsize}-byte ids")
        shape = (size // dtype.itemsize,)
    if len(shape) != 1 or dtype.kind != "u":
        raise CS336Error(f"{path} is not a 1-D unsigned token array (got {dtype}, shape {shape})")
    need = offset + shape[0] * dtype.itemsize
    if size < need:
        raise CS336Error(f"{path} is truncated: its header promises {shape[0]:,} tokens ({need:,} bytes) but the file has {size:,} bytes")
    return np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=shape)


def _npy_layout(path: Path) -> tuple[np.dtype, tuple[int, ...], int]:
    """The dtype, shape and data offset a `.npy` header declares, read without touching the data."""
    read_header = {(1, 0): npy_format.read_array_header_1_0, (2, 0): npy_format.read_array_header_2_0}
    with open(path, "rb") as f:
        try:
            version = npy_format.read_magic(f)
            if version not in read_header:
                raise CS336Error(f"{path} has .npy format version {version[0]}.{version[1]}; token files are 1.0 or 2.0")
            shape, _, dtype = read_header[version](f)
        except ValueError as e:
            if str(e).startswith("EOF"):  # numpy's word for a file that ends inside the header
                raise CS336Error(f"{path} is truncated: the file ends inside its .npy header") from None
            raise CS336Error(f"{path} is not a .npy token file: {e}") from None
        return dtype, shape, f.tell()
