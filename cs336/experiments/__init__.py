"""Experiments: sweeps of training runs, their logs as tables, and the figures drawn from them."""

from cs336.experiments.runs import flatten, load_runs, summarize_runs, swept_keys
from cs336.experiments.sweeps import Point, Sweep, load_sweep, run_sweep
from cs336.runs import find_runs

__all__ = ["find_runs", "flatten", "load_runs", "summarize_runs", "swept_keys", "Point", "Sweep", "load_sweep", "run_sweep"]
