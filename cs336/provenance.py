"""What produced a result: the code version, the libraries, the threads and the machine.

Every training run records `code_version()` in its `summary.json` and in the first record of its
`log.jsonl`, so a committed log says which commit (and whether the tree had uncommitted changes)
wrote it; `tests/test_reproduce.py` reruns the first steps of each committed sweep and checks them
against the log.

>>> v = code_version()
>>> sorted(v)  # doctest: +NORMALIZE_WHITESPACE
['commit', 'cs336', 'dirty', 'hardware', 'numpy', 'platform', 'python', 'threads', 'torch']
"""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
import time
from functools import cache
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy
import torch

from cs336.paths import PROJECT_ROOT

OUTPUTS = ("results", "figures")  # folders of results, not of code


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(["git", "-C", str(PROJECT_ROOT), *args], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


@cache
def _commit() -> tuple[str | None, bool | None]:
    """(HEAD's commit, whether tracked files other than outputs differ from it); (None, None)
    outside a git checkout. Outputs (`OUTPUTS`: committed logs and figures, which a sweep rewrites
    while it runs) do not make the code dirty."""
    if not (PROJECT_ROOT / ".git").exists():
        return None, None
    commit = _git("rev-parse", "HEAD")
    status = _git("status", "--porcelain", "--untracked-files=no", "--", ".", *(f":!{o}" for o in OUTPUTS))
    return commit, (None if status is None else bool(status))


def cpu_name() -> str:
    """The CPU's model name (from /proc/cpuinfo where there is one)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def hardware() -> str:
    """One line naming the machine: the GPU, or the CPU model and its core count; and torch's version."""
    if torch.cuda.is_available():
        return f"{torch.cuda.get_device_name(0)}, torch {torch.__version__}"
    return f"{cpu_name()} ({os.cpu_count()} cores), torch {torch.__version__}"


def matmul_peak_flops(device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32,
                      sizes: tuple[int, ...] | None = None, repeats: int = 3) -> float:
    """The measured peak of matrix products (FLOP/s) on `device` in `dtype`, at the current thread
    count: for each size the median of `repeats` square products after a warm-up, the best over
    sizes (default 2048 and 3072 on a CPU, 4096 and 8192 on a GPU). What MFU is measured against
    when no data-sheet peak is given."""
    device = torch.device(device)
    sizes = sizes or ((4096, 8192) if device.type == "cuda" else (2048, 3072))
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    best = 0.0
    for n in sizes:
        a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
        a @ b
        times = []
        for _ in range(repeats):
            sync()
            start = time.perf_counter()
            a @ b
            sync()
            times.append(time.perf_counter() - start)
        best = max(best, 2 * n**3 / statistics.median(times))
    return best


def code_version() -> dict[str, Any]:
    """The commit (and dirty flag), package and library versions, torch's threads and the machine.

    The git state is read once per process: a run started from a clean tree stays recorded as clean
    even if files are edited while it trains."""

    commit, dirty = _commit()
    try:
        version = metadata.version("cs336")
    except metadata.PackageNotFoundError:
        version = None
    return {
        "commit": commit,
        "dirty": dirty,
        "cs336": version,
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "python": platform.python_version(),
        "threads": torch.get_num_threads(),
        "hardware": hardware(),
        "platform": platform.platform(),
    }
