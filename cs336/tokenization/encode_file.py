"""Encode a whole text file into a `.npy` array of token ids: parallel, bounded memory.

The file is cut into chunks at byte offsets where a cut provably changes no pre-token (the start of
a special token, or between a non-space and a space: `pretokenize.chunk_boundaries`, the same cuts
BPE training uses), so the chunks can be encoded independently and their ids concatenated: the
result equals `tokenizer.encode(whole_text)`. Worker processes encode the chunks; the parent
writes each chunk's ids, in order, straight into the output file, whose `.npy` header is
rewritten with the final length at the end. Memory is a few chunks, whatever the file size.

>>> import tempfile, os, numpy as np
>>> d = tempfile.mkdtemp(); src = os.path.join(d, "a.txt")
>>> _ = open(src, "w").write("hi there<|eot|>hi")
>>> tok = Tokenizer({i: bytes([i]) for i in range(256)}, [], ["<|eot|>"])
>>> stats = encode_file(tok, src, os.path.join(d, "a.npy"), workers=1, progress=False)
>>> np.load(os.path.join(d, "a.npy")).tolist() == tok.encode("hi there<|eot|>hi"), stats.tokens
(True, 11)
"""

from __future__ import annotations

import os
import time
from collections import deque
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from itertools import islice
from pathlib import Path

import numpy as np
from numpy.lib import format as npy_format
from tqdm import tqdm

from cs336.errors import CS336Error, input_file
from cs336.outputs import output_file
from cs336.tokenization.pretokenize import chunk_boundaries
from cs336.tokenization.tokenizer import Tokenizer


def smallest_dtype(vocab_size: int) -> np.dtype:
    """The narrowest unsigned integer type that holds ids `0 .. vocab_size - 1`.

    >>> smallest_dtype(50_257), smallest_dtype(65_536), smallest_dtype(65_537)
    (dtype('uint16'), dtype('uint16'), dtype('uint32'))
    """
    return np.dtype(np.uint16) if vocab_size <= 1 << 16 else np.dtype(np.uint32)


# ---------------------------------------------------------------------------------------------
# Writing a .npy file whose length is known only at the end
# ---------------------------------------------------------------------------------------------
def _write_npy_header(f, dtype: np.dtype, length: int) -> int:
    """Write NumPy's own header of a 1-D `.npy` array of `length` ids; return its size in bytes.
    NumPy pads it with room for a length of up to 21 digits, so the header written first
    (length 0) is rewritten in place once the length is known."""
    start = f.tell()
    header = {"descr": npy_format.dtype_to_descr(dtype), "fortran_order": False, "shape": (length,)}
    npy_format.write_array_header_1_0(f, header)
    return f.tell() - start


# ---------------------------------------------------------------------------------------------
# Encoding
# ---------------------------------------------------------------------------------------------
@dataclass
class EncodeStats:
    """What `encode_file` did, for the throughput report."""

    input_path: str
    output_path: str
    input_bytes: int
    tokens: int
    seconds: float
    dtype: str
    chunks: int
    workers: int

    @property
    def mb_per_s(self) -> float:
        return self.input_bytes / 1e6 / self.seconds

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.seconds

    def __str__(self) -> str:
        return (
            f"{self.tokens:,} tokens ({self.dtype}) from {self.input_bytes / 1e6:,.1f} MB in {self.seconds:.2f} s: "
            f"{self.mb_per_s:.2f} MB/s, {self.tokens_per_s / 1e6:.2f} M tokens/s, "
            f"{self.input_bytes / max(self.tokens, 1):.3f} bytes/token ({self.workers} workers, {self.chunks} chunks) "
            f"-> {self.output_path}"
        )


_worker: dict = {}


def _init_worker(tokenizer: Tokenizer, path: str, dtype: np.dtype) -> None:
    _worker.update(tokenizer=tokenizer, path=path, dtype=dtype)


def _encode_chunk(bounds: tuple[int, int]) -> np.ndarray:
    start, end = bounds
    with open(_worker["path"], "rb") as f:
        f.seek(start)
        data = f.read(end - start)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise CS336Error(f"{_worker['path']}: invalid UTF-8 at byte offset {start + e.start} ({e.reason})") from None
    return np.array(_worker["tokenizer"].encode(text), dtype=_worker["dtype"])


def encode_file(
    tokenizer: Tokenizer,
    input_path: str | os.PathLike,
    output_path: str | os.PathLike,
    *,
    workers: int | None = None,
    progress: bool = True,
    chunk_bytes: int = 1 << 20,
) -> EncodeStats:
    """Encode `input_path` (UTF-8 text) to `output_path` (`.npy`, uint16 when the vocab fits).

    `workers` processes (default: all cores) encode chunks of about `chunk_bytes`: each holds at
    most a few chunks, so memory does not grow with the file, and a chunk of 1 MiB still has
    enough new pre-tokens for `merge_many` to merge them together. The output is written to a
    temporary file and renamed at the end, so a failure leaves no partial `.npy` behind.
    """
    t0 = time.perf_counter()
    input_path, output_path = input_file(input_path), Path(output_path)
    size = input_path.stat().st_size
    output_file(output_path)
    workers = max(1, workers or os.cpu_count() or 1)
    bounds = chunk_boundaries(input_path, chunk_bytes, tokenizer.special_tokens)
    chunks = list(zip(bounds, bounds[1:]))
    dtype = smallest_dtype(max(tokenizer.vocab) + 1)

    tmp_path = output_path.with_name(output_path.name + ".partial")
    tokens = 0
    bar = tqdm(total=size, unit="B", unit_scale=True, desc=f"encode {input_path.name}", disable=not progress)
    try:
        with open(tmp_path, "wb") as out:
            header_bytes = _write_npy_header(out, dtype, 0)
            for (start, end), ids in zip(chunks, _map_in_order(tokenizer, str(input_path), dtype, chunks, workers)):
                ids.tofile(out)
                tokens += len(ids)
                bar.update(end - start)
            out.seek(0)
            if _write_npy_header(out, dtype, tokens) != header_bytes:  # a NumPy without that room
                raise CS336Error(f"numpy {np.__version__} cannot rewrite a .npy header in place; upgrade numpy")
        os.replace(tmp_path, output_path)
    finally:
        bar.close()
        if tmp_path.exists():
            tmp_path.unlink()
    return EncodeStats(
        str(input_path), str(output_path), size, tokens, time.perf_counter() - t0, dtype.name, len(chunks), workers
    )


def _map_in_order(tokenizer: Tokenizer, path: str, dtype: np.dtype, chunks: list[tuple[int, int]], workers: int):
    """Yield `_encode_chunk(c)` for each chunk in order, at most `2 * workers` chunks in flight.

    The first chunk is encoded here, before the pool starts: forked workers inherit the caches it
    filled (where processes fork, as on Linux), instead of each paying the same misses on the
    commonest words.
    """
    _init_worker(tokenizer, path, dtype)
    yield _encode_chunk(chunks[0])
    if workers == 1 or len(chunks) <= 2:
        yield from map(_encode_chunk, chunks[1:])
        return
    chunks = chunks[1:]
    pool = ProcessPoolExecutor(min(workers, len(chunks)), initializer=_init_worker, initargs=(tokenizer, path, dtype))
    try:
        todo = iter(chunks)
        pending = deque(pool.submit(_encode_chunk, c) for c in islice(todo, 2 * workers))
        while pending:
            ids = pending.popleft().result()
            pending.extend(pool.submit(_encode_chunk, c) for c in islice(todo, 1))
            yield ids
    finally:  # on an error (bad UTF-8 in a chunk, Ctrl-C) drop the queued chunks at once
        pool.shutdown(wait=True, cancel_futures=True)
