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
import subprocess
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
