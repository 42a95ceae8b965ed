"""Encoding throughput of `Tokenizer` against tiktoken, measured in the same run.

    python benchmarks/encode.py [--text-rounds N] [--repeat N] [--dataset-mb N] [--workers K] [--memory-mb A B]

Reference: tiktoken's `gpt2` `encode` (one thread), on the same text with the same GPT-2 vocabulary;
every output is checked equal to tiktoken's. Targets:
- `Tokenizer.encode`, one thread, a fresh tokenizer (empty caches): >= 0.6x tiktoken on
  TinyStories text, >= 0.5x on OpenWebText text;
- dataset encoding with all cores (`encode_file`, the `cs336 encode` path, including worker
  start-up and writing the .npy) of a `--dataset-mb` file of the TinyStories and OpenWebText
  samples in turn: >= 1.4x tiktoken's one thread, with peak memory flat in the file size (measured
  at the two `--memory-mb` sizes).
Rounds are interleaved and each figure is the best of the rounds (`--text-rounds` of the one-thread
encodes, which take a second a round, and `--repeat` of the dataset's), so that load from other
processes on a shared machine hurts both sides alike; beside each ratio of the best times, the
median over rounds of the ratio of two times taken in the same round. Every timed call starts after
a garbage collection.
`encode_file` runs in a child process of its own, as `cs336 encode` does, so that its workers do
not inherit this process's copies of the text and of tiktoken's ids.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import pickle
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from cs336 import Tokenizer
from cs336.data import sample_path, tiktoken_gpt2
from cs336.tokenization import END_OF_TEXT
from cs336.tokenization.encode_file import encode_file
from cs336.tokenization.pretokenize import peak_rss_bytes

TINYSTORIES = sample_path("tinystories/TinyStories-train-2M.txt")
OWT = sample_path("owt/owt-sample-680K.txt")
# The dataset file: these samples in turn, repeated to the size asked for.
MIXED = [TINYSTORIES, OWT, sample_path("tinystories/TinyStories-valid-800K.txt")]


def gpt2_tokenizer() -> Tokenizer:
    vocab, merges = sample_path("cs336-fixtures/gpt2_vocab.json"), sample_path("cs336-fixtures/gpt2_merges.txt")
    return Tokenizer.from_files(vocab, merges, [END_OF_TEXT])


def cpu_seconds() -> float:
    """CPU time of this process and its finished children."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def timed(fn) -> tuple[float, float, object]:
    """(wall seconds, CPU seconds, result) of `fn()`, started after a garbage collection so that
    no earlier run's garbage is charged to it."""
    gc.collect()
    w0, c0 = time.perf_counter(), cpu_seconds()
    result = fn()
    return time.perf_counter() - w0, cpu_seconds() - c0, result


def _spin(n: int) -> int:
    return sum(i * i for i in range(n))


def parallel_capacity(workers: int, n: int = 3_000_000) -> float:
    """Speed-up that `workers` processes get on pure CPU-bound Python right now (ideal: `workers`).

    On a machine shared with other jobs this is the ceiling for any parallel encoder.
    """
    t0 = time.perf_counter()
    for _ in range(workers):
        _spin(n)
    serial = time.perf_counter() - t0
    with ProcessPoolExecutor(workers) as pool:
        t0 = time.perf_counter()
        list(pool.map(_spin, [n] * workers))
        parallel = time.perf_counter() - t0
    return serial / parallel


def make_dataset(path: Path, megabytes: float) -> None:
    """The `MIXED` samples in turn, repeated, into a file of about `megabytes` MB."""
    written = 0
    with open(path, "wb") as out:
        while written < megabytes * 1e6:
            for src in MIXED:
                data = src.read_bytes()
                data = data if data.endswith(b"\n") else data + b"\n"
                out.write(data)
                written += len(data)


def run_encode_file(dataset: Path, out: Path, workers: int) -> dict:
    """`encode_file` in a fresh child process (`--child`): its seconds, CPU seconds (workers
    included) and peak resident memory (its own and its largest worker's)."""
    command = [sys.executable, __file__, "--child", str(dataset), str(out), str(workers)]
    return json.loads(subprocess.run(command, check=True, capture_output=True, text=True).stdout)


def child(dataset: Path, out: Path, workers: int) -> None:
    tokenizer = gpt2_tokenizer()
    seconds, cpu, _ = timed(lambda: encode_file(tokenizer, dataset, out, workers=workers, progress=False))
    print(json.dumps({
        "seconds": seconds,
        "cpu": cpu,
        # VmHWM, not ru_maxrss: that would count the benchmark's own memory, from before the exec
        "peak_mib": peak_rss_bytes() / 2**20,
        "worker_peak_mib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024 / 2**20,  # KiB
    }))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--text-rounds", type=int, default=15, help="rounds of the one-thread encodes")
    parser.add_argument("--repeat", type=int, default=5, help="rounds of the dataset encoding")
    parser.add_argument("--dataset-mb", type=float, default=50.0)
    parser.add_argument("--workers", type=int, default=os.cpu_count())
    parser.add_argument("--memory-mb", type=float, nargs=2, default=(50.0, 200.0))
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        dataset, out, workers = args.child
        return child(Path(dataset), Path(out), int(workers))

    blob = pickle.dumps(gpt2_tokenizer())  # unpickling gives a fresh tokenizer (empty caches)
    reference = tiktoken_gpt2()
    allowed = {END_OF_TEXT}
    texts = {"TinyStories": TINYSTORIES.read_text(encoding="utf-8"), "OpenWebText": OWT.read_text(encoding="utf-8")}
    reference.encode(texts["OpenWebText"][:10_000], allowed_special=allowed)  # load tiktoken's tables

    wall: dict[str, list[float]] = {}
    cpu: dict[str, list[float]] = {}

    def record(key, fn):
        w, c, result = timed(fn)
        wall.setdefault(key, []).append(w)
        cpu.setdefault(key, []).append(c)
        return result

    load_before = os.getloadavg()
    capacity = parallel_capacity(args.workers)
    tokens = {}
    for _ in range(args.text_rounds):
        for name, text in texts.items():
            expected = record(f"{name} tiktoken", lambda: reference.encode(text, allowed_special=allowed))
            tok = pickle.loads(blob)
            assert record(f"{name} fresh", lambda: tok.encode(text)) == expected, f"{name}: differs from tiktoken"
            assert record(f"{name} warm", lambda: tok.encode(text)) == expected, f"{name}: differs from tiktoken"
            tokens[name] = len(expected)

    peaks = {}
    with tempfile.TemporaryDirectory() as tmp:
        dataset, out = Path(tmp) / "dataset.txt", Path(tmp) / "ids.npy"
        make_dataset(dataset, args.dataset_mb)
        dataset_text = dataset.read_text(encoding="utf-8")
        dataset_mb = dataset.stat().st_size / 1e6
        for _ in range(args.repeat):
            ids = record("dataset tiktoken", lambda: reference.encode(dataset_text, allowed_special=allowed))
            for workers in dict.fromkeys((args.workers, 1)):
                run = run_encode_file(dataset, out, workers)
                wall.setdefault(f"dataset {workers}", []).append(run["seconds"])
                cpu.setdefault(f"dataset {workers}", []).append(run["cpu"])
                assert np.array_equal(np.load(out), np.asarray(ids)), "encode_file differs from tiktoken"
        tokens["dataset"] = len(ids)
        del dataset_text, ids
        for megabytes in args.memory_mb:
            make_dataset(dataset, megabytes)
            peaks[dataset.stat().st_size / 1e6] = run_encode_file(dataset, out, args.workers)
    load_after = os.getloadavg()

    best = {k: min(v) for k, v in wall.items()}

    def round_ratio(ref: str, key: str) -> float:
        """The median over rounds of (reference time / time), each pair timed in the same round."""
        return statistics.median(r / k for r, k in zip(wall[ref], wall[key], strict=True))

    best_cpu = {k: min(v) for k, v in cpu.items()}
    print(f"{os.cpu_count()} cores; load average (1, 5, 15 min) {' '.join(f'{x:.2f}' for x in load_before)} before, "
          f"{' '.join(f'{x:.2f}' for x in load_after)} after; best of {args.text_rounds} interleaved rounds (of the dataset's: {args.repeat}) "
          f"(in brackets the median of the rounds' ratios); tiktoken and Tokenizer.encode on 1 thread")

    def table(title, megabytes, n_tokens, rows, ref):
        print(f"\n{title} ({megabytes:.2f} MB, {n_tokens:,} tokens)")
        print(f"{'':44s} {'MB/s':>6s} {'vs tiktoken':>18s} {'CPU s':>6s}")
        for label, key in rows:
            ratio = f"{best[ref] / best[key]:.2f}x ({round_ratio(ref, key):.2f}x)"
            print(f"{label:44s} {megabytes / best[key]:6.2f} {ratio:>18s} {best_cpu[key]:6.2f}")

    for name, text in texts.items():
        table(f"Tokenizer.encode, {name} sample", len(text.encode("utf-8")) / 1e6, tokens[name], [
            ("tiktoken gpt2 encode", f"{name} tiktoken"),
            ("Tokenizer.encode, fresh tokenizer", f"{name} fresh"),
            ("Tokenizer.encode, warm caches", f"{name} warm"),
        ], f"{name} tiktoken")
    table("dataset encoding: TinyStories and OpenWebText samples in turn", dataset_mb, tokens["dataset"], [
        ("tiktoken gpt2 encode (1 thread)", "dataset tiktoken"),
        ("encode_file, 1 worker", "dataset 1"),
        (f"encode_file, {args.workers} workers (cs336 encode)", f"dataset {args.workers}"),
    ], "dataset tiktoken")
    print(f"\npeak resident memory of encode_file, {args.workers} workers:")
    for megabytes, run in peaks.items():
        print(f"  {megabytes:7.1f} MB file: {run['peak_mib']:6.0f} MiB parent, {run['worker_peak_mib']:6.0f} MiB largest worker")

    print()
    for name, target in (("TinyStories", 0.6), ("OpenWebText", 0.5)):
        ratio = best[f"{name} tiktoken"] / best[f"{name} fresh"]
        print(f"fresh encode, {name} >= {target}x tiktoken: {ratio:.3f}x {'met' if ratio >= target else 'NOT met'} "
              f"(median of the rounds' ratios {round_ratio(f'{name} tiktoken', f'{name} fresh'):.3f}x)")
    ratio = best["dataset tiktoken"] / best[f"dataset {args.workers}"]
    print(f"{args.workers}-worker dataset encoding >= 1.4x tiktoken: {ratio:.3f}x {'met' if ratio >= 1.4 else 'NOT met'} "
          f"(speed-up over 1 worker {best['dataset 1'] / best[f'dataset {args.workers}']:.2f}x; a pure CPU loop gets "
          f"{capacity:.2f}x from {args.workers} processes on this machine right now)")


if __name__ == "__main__":
    main()
