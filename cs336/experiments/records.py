"""The leaderboard track's table: each condition of a track sweep over its seeds, against the baseline.

A track sweep (`configs/sweeps/leaderboard_track_cpu.toml`) names its runs `<condition>__seed=<n>`.
For every condition with ended runs this gives the final validation loss's mean and standard
deviation over its seeds, and, against the baseline run with the same seeds, the mean difference
and the paired t-test's p-value (`cs336.experiments.stats`), beside the steps taken and the commit
that made the runs:

    python -m cs336.experiments.records results/leaderboard_track_cpu
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import pandas as pd

from cs336.errors import CS336Error
from cs336.experiments.stats import paired_t_test
from cs336.runs import SUMMARY, find_runs, read_json


#: The CPU track's records, oldest first, each as the point of configs/sweeps/leaderboard_track_cpu.toml
#: it was measured as; the last is configs/leaderboard_cpu.toml. A point becomes a record when its
#: mean over three seeds or more is below the record before it with p < 0.05 (paired over the seeds).
CPU_RECORDS = ("lr_5e-3", "lr_5e-3_ensemble_2")

#: The track's baseline config under another name, rerun after the ablations that were measured
#: against it: on a wall-clock track the machine's speed moves the losses too, and the rerun
#: measures by how much (notebook 10).
BASELINE_RERUN = "baseline_again"


def track_runs(root: str | Path) -> pd.DataFrame:
    """One row per ended run under `root`: condition, seed, status, final validation loss, steps,
    wall-clock seconds, commit."""
    rows = []
    for run_dir in find_runs(root):
        if not (run_dir / SUMMARY).is_file():
            continue  # still running, or interrupted
        condition, _, seed = run_dir.name.partition("__seed=")
        summary = read_json(run_dir / SUMMARY)
        rows.append({"condition": condition, "seed": int(seed) if seed else None, "status": summary["status"],
                     "val_loss": summary.get("val_loss"), "steps": summary.get("step"), "wall_s": summary.get("wall_s"),
                     "commit": (summary.get("code") or {}).get("commit")})
    return pd.DataFrame(rows)


def track_table(root: str | Path, baseline: str = "baseline") -> pd.DataFrame:
    """Per condition: seeds, mean ± sd of the final validation loss, mean steps, and against
    `baseline` (paired by seed, on the seeds both have) the mean difference and, with two seeds or
    more, its p-value (a one-seed screen gets the difference alone)."""
    runs = track_runs(root)
    if runs.empty:
        raise CS336Error(f"no ended runs under {root}")
    base = runs[runs["condition"] == baseline].set_index("seed")["val_loss"]
    table = []
    for condition, group in runs.groupby("condition", sort=False):
        losses = group.set_index("seed")["val_loss"].sort_index()
        row = {"condition": condition, "seeds": len(losses), "mean": statistics.fmean(losses),
               "sd": statistics.stdev(losses) if len(losses) > 1 else float("nan"),
               "steps": round(group["steps"].mean()), "commit": ", ".join(sorted(set(group["commit"].dropna().str[:7])))}
        shared = sorted(set(losses.index) & set(base.index))
        if condition != baseline and shared:
            diffs = [losses[s] - base[s] for s in shared]
            row["vs baseline"] = statistics.fmean(diffs)
            if len(shared) >= 2:
                row["p"] = paired_t_test([base[s] for s in shared], [losses[s] for s in shared]).p
        table.append(row)
    return pd.DataFrame(table).set_index("condition")


def main(argv: list[str] | None = None) -> pd.DataFrame:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("root", help="a track sweep's results folder, e.g. results/leaderboard_track_cpu")
    p.add_argument("--baseline", default="baseline", help="the condition the others are compared with")
    a = p.parse_args(argv)
    try:
        table = track_table(a.root, a.baseline)
    except CS336Error as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    print(table.to_string(float_format=lambda v: f"{v:.4g}"))
    return table


if __name__ == "__main__":
    main()
