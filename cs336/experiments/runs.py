"""Run directories → pandas: every logged metric of every run, with its configuration attached.

A run directory (`cs336.runs`) holds `config.json` (the resolved training configuration),
`log.jsonl` (one JSON record a line: training records carry `train_loss`, evaluation records
`val_loss`) and, once the run has ended, `summary.json` (its `status`: "finished", "diverged", ...).
`load_runs` walks a folder for such directories and returns one row per log record:

>>> df = load_runs("results/lr_cpu")                    # doctest: +SKIP
>>> df[["run", "status", "optim.lr", "step", "val_loss"]].dropna().tail(1)   # doctest: +SKIP
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pandas as pd

from cs336.errors import CS336Error
from cs336.runs import CONFIG, LOG, find_runs, read_json, run_status
from cs336.training.runlog import read_log

SWEEP = "sweep.json"  # what a sweep writes beside its runs


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested dicts → one dict with dotted keys; lists stay values.

    >>> flatten({"optim": {"lr": 0.01, "betas": [0.9, 0.95]}, "seed": 0})
    {'optim.lr': 0.01, 'optim.betas': [0.9, 0.95], 'seed': 0}
    """
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, name + "."))
        else:
            flat[name] = value
    return flat


def load_runs(root: str | Path, *, members: bool = False) -> pd.DataFrame:
    """One row per log record of every run under `root` (with `members`, also of each ensemble
    run's members, as `<run>/member_k`).

    Columns: `run` (its path relative to `root`), `status`, `kind` ("train" or "eval"), the logged
    metrics (`step`, `tokens`, `wall_s`, `train_loss`, `val_loss`, ...; NaN where a record lacks one)
    and the run's configuration flattened to dotted keys (`optim.lr`, `model.d_model`, ...). A run
    that has logged nothing yet still appears, as one row with only its configuration.
    """
    root = Path(root)
    frames = []
    for run_dir in find_runs(root, members=members):
        config = flatten(read_json(run_dir / CONFIG)) if (run_dir / CONFIG).exists() else {}
        records = read_log(run_dir / LOG)
        rows = pd.DataFrame.from_records(records or [{}])
        rows.insert(0, "kind", ["eval" if "val_loss" in r else "train" for r in records] or [None])
        rows.insert(0, "status", run_status(run_dir))
        rows.insert(0, "run", run_dir.relative_to(root).as_posix() if run_dir != root else run_dir.name)
        for key, value in config.items():
            if key not in rows:
                rows[key] = [value] * len(rows) if isinstance(value, list) else value
        frames.append(rows)
    if not frames:
        raise CS336Error(f"no runs (folders with {LOG} or {CONFIG}) under {root}")
    return pd.concat(frames, ignore_index=True)


def _last_finite(values: pd.Series) -> float:
    finite = values[values.map(lambda v: isinstance(v, (int, float)) and math.isfinite(v))]
    return float(finite.iloc[-1]) if len(finite) else math.nan


def summarize_runs(df: pd.DataFrame) -> pd.DataFrame:
    """One row per run: status, final/best losses, steps and tokens reached, and its configuration.

    `final_val_loss` is the last evaluation (NaN or inf when the run diverged); `diverged` is true
    when the status says so or any logged loss is not finite.
    """
    metrics = {"step", "tokens", "wall_s", "lr", "train_loss", "grad_norm", "tokens_per_s", "mfu", "val_loss", "val_ppl", "kind"}
    config_cols = [c for c in df.columns if "." in c or c not in metrics | {"run", "status"}]
    rows = []
    for run, g in df.groupby("run", sort=False):
        # NaN marks a metric a record does not carry, so pick each loss from its own kind of record
        train = g.loc[g["kind"] == "train", "train_loss"] if "train_loss" in g else pd.Series(dtype=float)
        val = g.loc[g["kind"] == "eval", "val_loss"] if "val_loss" in g else pd.Series(dtype=float)
        losses = pd.concat([train, val])
        status = g["status"].iloc[0]
        row = {
            "run": run,
            "status": status,
            "diverged": status == "diverged" or bool((~losses.map(math.isfinite)).any()),
            "steps": g["step"].max() if "step" in g else math.nan,
            "tokens": g["tokens"].max() if "tokens" in g else math.nan,
            "wall_s": g["wall_s"].max() if "wall_s" in g else math.nan,
            "final_train_loss": float(train.iloc[-1]) if len(train) else math.nan,
            "final_val_loss": float(val.iloc[-1]) if len(val) else math.nan,
            "last_finite_val_loss": _last_finite(val),
            "best_val_loss": float(val[val.map(math.isfinite)].min()) if len(val) else math.nan,
        }
        row.update({c: g[c].iloc[0] for c in config_cols})
        rows.append(row)
    return pd.DataFrame(rows)


def swept_keys(summary: pd.DataFrame) -> list[str]:
    """The configuration columns (dotted keys) whose value differs between runs, ignoring where each
    run writes its files.

    >>> swept_keys(pd.DataFrame({"optim.lr": [1e-3, 1e-2], "model.d_model": [64, 64]}))
    ['optim.lr']
    """
    keys = []
    for c in summary.columns:
        if "." not in c or c.split(".")[-1] in ("run_dir", "out_dir", "name"):
            continue
        if summary[c].map(repr).nunique() > 1:
            keys.append(c)
    return keys


def sweep_info(root: str | Path) -> dict[str, Any]:
    """The `sweep.json` a sweep writes beside its runs (scale, hardware, command), or {}."""
    path = Path(root) / SWEEP
    return read_json(path) if path.exists() else {}
