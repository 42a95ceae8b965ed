"""Encoding throughput of `Tokenizer` against tiktoken, measured in the same run.

    python benchmarks/encode.py [--text FILE] [--repeat N] [--workers K]

Both use the GPT-2 vocabulary on TinyStories text. Targets:
- `Tokenizer.encode`, one thread, a fresh tokenizer (empty pre-token cache): >= 0.5x tiktoken's
  single-threaded `encode`;
- dataset encoding with all cores (`encode_file`, the `cs336 encode` path, including process
  start-up and writing the .npy): >= 1.0x tiktoken's single-threaded `encode`.
Each figure is the best of `--repeat` runs, interleaved, so that load from other processes on a
shared machine hurts both sides alike.
"""

from __future__ import annotations

import argparse
import os
import pickle
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import tiktoken

from cs336 import Tokenizer
from cs336.data import data_dir
from cs336.tokenization.encode_file import encode_file

EOT = "<|endoftext|>"


def timed(fn) -> tuple[float, float, object]:
    """(wall seconds, CPU seconds of this process and its finished children, result)."""
    def cpu() -> float:
        me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
        return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime

    w0, c0 = time.perf_counter(), cpu()
    result = fn()
    return time.perf_counter() - w0, cpu() - c0, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--text", type=Path, default=data_dir() / "tinystories" / "TinyStories-train-2M.txt")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--workers", type=int, default=os.cpu_count())
    args = parser.parse_args()

    fixtures = data_dir() / "cs336-fixtures"
    loaded = Tokenizer.from_files(fixtures / "gpt2_vocab.json", fixtures / "gpt2_merges.txt", [EOT])
    blob = pickle.dumps(loaded)  # unpickling gives a fresh tokenizer (empty cache) in milliseconds
    reference = tiktoken.get_encoding("gpt2")
    text = args.text.read_text(encoding="utf-8")
    mb = len(text.encode("utf-8")) / 1e6
    reference.encode(text[:10_000], allowed_special={EOT})  # load tiktoken's tables

    wall = {k: [] for k in ("tiktoken", "fresh", "warm", "file")}
    cpu = {k: [] for k in wall}

    def record(key, fn):
        w, c, result = timed(fn)
        wall[key].append(w)
        cpu[key].append(c)
        return result

    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "ids.npy"
        for _ in range(args.repeat):
            expected = record("tiktoken", lambda: reference.encode(text, allowed_special={EOT}))
            tok = pickle.loads(blob)
            assert record("fresh", lambda: tok.encode(text)) == expected, "Tokenizer.encode differs from tiktoken"
            record("warm", lambda: tok.encode(text))
            record("file", lambda: encode_file(pickle.loads(blob), args.text, out, workers=args.workers, progress=False))
            assert np.array_equal(np.load(out), np.asarray(expected)), "encode_file differs from tiktoken"

    best = {k: min(v) for k, v in wall.items()}
    best_cpu = {k: min(v) for k, v in cpu.items()}
    rate = {k: mb / t for k, t in best.items()}
    print(f"text: {args.text.name} ({mb:.2f} MB, {len(expected):,} tokens); best of {args.repeat}; "
          f"{os.cpu_count()} cores, load average {load_before:.1f} -> {os.getloadavg()[0]:.1f}")
    print(f"{'':44s} {'MB/s':>6s} {'M tok/s':>8s} {'vs tiktoken':>11s} {'CPU s':>6s}")
    rows = [
        ("tiktoken gpt2 encode (1 thread)", "tiktoken"),
        ("Tokenizer.encode, fresh (1 thread)", "fresh"),
        ("Tokenizer.encode, warm cache (1 thread)", "warm"),
        (f"encode_file, {args.workers} workers (cs336 encode)", "file"),
    ]
    for label, key in rows:
        print(f"{label:44s} {rate[key]:6.2f} {len(expected) / best[key] / 1e6:8.2f} "
              f"{rate[key] / rate['tiktoken']:10.2f}x {best_cpu[key]:6.2f}")
    print(f"fresh encode >= 0.5x tiktoken (wall): {'met' if rate['fresh'] >= 0.5 * rate['tiktoken'] else 'NOT met'}; "
          f"by CPU time: {best_cpu['tiktoken'] / best_cpu['fresh']:.2f}x")
    print(f"all-core encode_file >= 1.0x tiktoken (wall): {'met' if rate['file'] >= rate['tiktoken'] else 'NOT met'}"
          f" (wall-clock parallel speed-up needs idle cores; see the load average above)")


if __name__ == "__main__":
    main()
