"""A run's metrics log: `log.jsonl`, one JSON object per line, flushed as it is written.

Two kinds of record share the file (told apart by their keys):

    {"step": 100, "tokens": 819200, "wall_s": 12.3, "lr": 0.001, "train_loss": 3.21,
     "grad_norm": 0.84, "tokens_per_s": 66500.0}
    {"step": 100, "tokens": 819200, "wall_s": 12.9, "val_loss": 3.30, "val_ppl": 27.1}

`step` counts finished optimizer steps, `tokens` the training tokens they consumed, `wall_s` the
run's wall-clock seconds (summed over resumptions). `tokens_per_s` is measured over the optimizer
steps since the previous training record; with the config's `peak_tflops` a training record also
carries `mfu`, the model FLOPs utilisation over those steps (`cs336.accounting` FLOPs per second
÷ the peak of all devices). JSON has no NaN or infinity: a non-finite value (a diverged loss) is
written as `null` and reads back as None (pandas shows it as NaN).

A run killed at any moment leaves at most a torn last line; `read_log` skips it and resuming cuts
the log back to the checkpoint's step. A bad line anywhere else means the file was damaged by
something else, and reading it is an error that names the line.

>>> import tempfile, pathlib
>>> p = pathlib.Path(tempfile.mkdtemp()) / "log.jsonl"
>>> with RunLog(p) as log:
...     log.write({"step": 1, "train_loss": 2.5})
>>> read_log(p)
[{'step': 1, 'train_loss': 2.5}]
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from cs336.errors import CS336Error
from cs336.outputs import write_atomic


def _clean(v: Any) -> Any:
    """JSON has no NaN/inf: write them as null."""
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def read_log(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The records of a log, in order ([] when there is no log yet).

    A torn last line (from a killed run) is skipped; any other line that is not a JSON object is a
    `CS336Error` naming the file and line. `null` (a non-finite value) reads as None; the tokens
    `NaN` and `Infinity`, which this writer never uses, read as floats.
    """
    path = Path(path)
    if not path.exists():
        return []
    lines = path.read_text(encoding="utf-8").splitlines()
    records = []
    for lineno, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            record = None
        if isinstance(record, dict):
            records.append(record)
        elif lineno < len(lines):
            raise CS336Error(f"{path}:{lineno} is not a JSON record: the log is damaged")
    return records


def truncate_log(path: str | os.PathLike, last_step: int) -> None:
    """Keep only the records with `step <= last_step` (atomically), e.g. when resuming."""
    path = Path(path)
    if not path.exists():
        return
    kept = [r for r in read_log(path) if r.get("step", 0) <= last_step]
    write_atomic(path, "".join(json.dumps(r) + "\n" for r in kept))


class RunLog:
    """Append-only writer of `log.jsonl` (and, optionally, Weights & Biases)."""

    def __init__(self, path: str | os.PathLike, wandb_run: Any = None):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._f = open(self.path, "a", encoding="utf-8")
        self._wandb = wandb_run

    def write(self, record: dict[str, Any]) -> None:
        self._f.write(json.dumps({k: _clean(v) for k, v in record.items()}) + "\n")
        self._f.flush()
        if self._wandb is not None:
            self._wandb.log({k: v for k, v in record.items() if k != "step"}, step=record.get("step"))

    def close(self) -> None:
        self._f.close()
        if self._wandb is not None:
            self._wandb.finish()
            self._wandb = None

    def __enter__(self) -> RunLog:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
