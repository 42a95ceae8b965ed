"""Sweeps: a base training config plus a grid of overrides → one run directory per point.

A sweep file is TOML:

    [sweep]
    name = "lr_cpu"
    base = "../tinystories_cpu.toml"     # the training config, relative to this file
    scale = "cpu"                        # a label for figures: "cpu" or "full"
    name_keys = ["optim.lr"]             # optional: the keys that name the points (default: all swept)
    out_dir = "runs/sweeps/lr_cpu"       # run directories (with checkpoints); relative to the cwd
    results_dir = "results/lr_cpu"       # optional: each ended run's small logs are copied here
    seeds = [0, 1, 2]                    # optional: every point once per seed (`<point>__seed=N`)

    [set]                                # overrides every point shares (any dotted key)
    "optim.max_steps" = 300

    [grid]                               # cartesian product of these values
    "optim.lr" = [1e-3, 3e-3, 1e-2]

    [[points]]                           # explicit points, after the grid's; `name` is optional
    "optim.lr" = 3e-2
    "model.norm" = "none"

Each point is named from the values it sweeps (`lr=0.001`, `norm=none__lr=0.03`). Points whose run
has ended (`summary.json` status finished or diverged) are skipped; others are (re)started and the
trainer resumes them from their last checkpoint.

Each point trains in a subprocess of its own, N at a time (a thread pool of N waits on them): a
process reads `OMP_NUM_THREADS` once, when torch loads, so only a fresh one can take the thread
count the sweep gives it; its output, C libraries' included, goes to the run's `sweep.log`; and a
point that crashes or is killed ends as "failed (exit N)" while the others go on, where a dead
worker would break a `ProcessPoolExecutor` and every point still in it.

>>> points = expand({"optim.lr": [1e-3, 1e-2]}, [{"model.norm": "none"}], {})
>>> [p.name for p in points]
['lr=0.001', 'norm=none']
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cs336.errors import CS336Error
from cs336.experiments.runs import SWEEP, flatten
from cs336.provenance import hardware
from cs336.runs import CONFIG, DONE_STATUSES, LOG, SUMMARY, run_status
from cs336.training.config import load_config
from cs336.training.trainer import train

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

SWEEP_KEYS = ("name", "base", "scale", "out_dir", "results_dir", "description", "name_keys", "seeds")
SECTIONS = ("sweep", "set", "grid", "points")
# The training config key that says where a run writes its files.
RUN_DIR_KEY = "run_dir"


@dataclass(frozen=True)
class Point:
    """One run of a sweep: its name and the overrides that make it (dotted key → value)."""

    name: str
    overrides: dict[str, Any]


@dataclass
class Sweep:
    name: str
    base: Path
    points: list[Point]
    shared: dict[str, Any] = field(default_factory=dict)
    scale: str = ""
    out_dir: Path = Path("runs/sweeps")
    results_dir: Path | None = None
    description: str = ""

    def run_dir(self, point: Point) -> Path:
        return self.out_dir / point.name

    def overrides(self, point: Point) -> dict[str, Any]:
        """Everything a point changes in the base config, its run directory included."""
        return {**self.shared, **point.overrides, RUN_DIR_KEY: str(self.run_dir(point))}


def format_value(value: Any) -> str:
    """A value as it appears in a run name: short, file-name safe.

    >>> [format_value(v) for v in (0.001, 3e-05, 64, True, "post", [0.9, 0.95])]
    ['0.001', '3e-05', '64', 'true', 'post', '0.9-0.95']
    """
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return format(value, "g")
    if isinstance(value, (list, tuple)):
        return "-".join(format_value(v) for v in value)
    text = str(value)
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in text)


def point_name(overrides: dict[str, Any], swept: list[str]) -> str:
    """`key=value` for each swept key the point sets, by the key's last dotted part unless two swept
    keys share it, joined with `__`; "base" when it sets none.

    >>> point_name({"optim.lr": 0.01, "data.batch_size": 64}, ["data.batch_size", "optim.lr"])
    'batch_size=64__lr=0.01'
    """
    short = [k.split(".")[-1] for k in swept]
    parts = []
    for key, label in zip(swept, short):
        if key in overrides:
            label = key if short.count(label) > 1 else label
            parts.append(f"{label}={format_value(overrides[key])}")
    return "__".join(parts) or "base"


def expand(grid: dict[str, list[Any]], points: list[dict[str, Any]], shared: dict[str, Any], name_keys: list[str] | None = None) -> list[Point]:
    """The grid's cartesian product (in the order the keys are written) followed by the explicit
    points, each named from its swept values (or only from `name_keys`, when given). Duplicate
    names are an error."""
    grid = flatten(grid)
    for key, values in grid.items():
        if not isinstance(values, list) or not values:
            raise CS336Error(f"grid key {key!r} needs a non-empty list of values, got {values!r}")
    combos = [dict(zip(grid, values)) for values in itertools.product(*grid.values())] if grid else []
    explicit = []
    for p in points:
        p = dict(p)
        name = p.pop("name", None)
        explicit.append((name, flatten(p)))
    swept = sorted({*grid, *(k for _, p in explicit for k in p)})
    naming = list(name_keys) if name_keys else swept
    out = [Point(point_name(c, naming), c) for c in combos]
    out += [Point(name or point_name(p, naming), p) for name, p in explicit]
    names = [p.name for p in out]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise CS336Error(f"sweep points share a name: {', '.join(dupes)}; give explicit points a `name`")
    if not out:
        raise CS336Error("the sweep has no points: add a [grid] or [[points]]")
    clash = set(shared) & set(swept)
    if clash:
        raise CS336Error(f"keys both set for every point and swept: {', '.join(sorted(clash))}")
    return out


def with_seeds(points: list[Point], seeds: list[int], shared: dict[str, Any]) -> list[Point]:
    """Each point once per seed, named `<point>__seed=<seed>`: the repeats a comparison needs to
    tell an effect from run-to-run noise."""
    if not isinstance(seeds, list) or not seeds or not all(isinstance(x, int) and not isinstance(x, bool) for x in seeds):
        raise CS336Error(f"[sweep] seeds must be a non-empty list of whole numbers, got {seeds!r}")
    if len(set(seeds)) != len(seeds):
        raise CS336Error(f"[sweep] seeds repeat a seed: {seeds}")
    if "seed" in shared or any("seed" in p.overrides for p in points):
        raise CS336Error("[sweep] seeds and a swept or set `seed` cannot be combined")
    return [Point(f"{p.name}__seed={seed}", {**p.overrides, "seed": seed}) for p in points for seed in seeds]


def load_sweep(path: str | Path, *, out_dir: str | Path | None = None) -> Sweep:
    """Read and check a sweep file (see the module docstring)."""
    path = Path(path)
    if not path.is_file():
        raise CS336Error(f"no such sweep file: {path}")
    try:
        raw = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as e:
        raise CS336Error(f"{path}: invalid TOML ({e})") from None
    unknown = set(raw) - set(SECTIONS)
    if unknown:
        raise CS336Error(f"{path}: unknown section(s) {', '.join(sorted(unknown))}; valid: {', '.join(SECTIONS)}")
    head = raw.get("sweep", {})
    unknown = set(head) - set(SWEEP_KEYS)
    if unknown:
        raise CS336Error(f"{path}: unknown [sweep] key(s) {', '.join(sorted(unknown))}; valid: {', '.join(SWEEP_KEYS)}")
    if "base" not in head:
        raise CS336Error(f"{path}: [sweep] needs `base`, the training config the points override")
    base = (path.parent / head["base"]).resolve()
    if not base.is_file():
        raise CS336Error(f"{path}: base config {head['base']!r} not found (looked at {base})")
    name = head.get("name", path.stem)
    shared = flatten(raw.get("set", {}))
    points = expand(raw.get("grid", {}), raw.get("points", []), shared, head.get("name_keys"))
    if "seeds" in head:
        points = with_seeds(points, head["seeds"], shared)
    return Sweep(
        name=name,
        base=base,
        points=points,
        shared=shared,
        scale=head.get("scale", ""),
        out_dir=Path(out_dir if out_dir is not None else head.get("out_dir", f"runs/sweeps/{name}")),
        results_dir=Path(head["results_dir"]) if head.get("results_dir") else None,
        description=head.get("description", ""),
    )


def point_command(sweep: Sweep, point: Point) -> list[str]:
    """The subprocess that trains one point: this module's entry point with the base config and the
    point's overrides as JSON."""
    spec = json.dumps({"config": str(sweep.base), "overrides": sweep.overrides(point)})
    return [sys.executable, "-m", "cs336.experiments.sweeps", spec]


def point_config(config_path: str | Path, overrides: dict[str, Any]):
    """The training config of one point: the base file with the point's overrides, validated."""
    # The config loader takes `key=value` strings whose values are TOML literals; JSON's spelling of
    # numbers, booleans, strings and lists is valid TOML.
    return load_config(config_path, [f"{k}={json.dumps(v)}" for k, v in overrides.items()])


def check_points(sweep: Sweep) -> None:
    """Every point's config must load: a typo in a key fails here, before anything trains."""
    for point in sweep.points:
        try:
            point_config(sweep.base, sweep.overrides(point))
        except CS336Error as e:
            raise CS336Error(f"sweep point {point.name}: {e}") from None


def train_point(config_path: str, overrides: dict[str, Any]) -> dict[str, Any]:
    """Load the base config with the overrides and train it (the trainer resumes from a checkpoint)."""
    return train(point_config(config_path, overrides), progress=False)


def export_run(run_dir: Path, dest: Path) -> None:
    """Copy a run's small files (config, log, summary) to `dest`, and an ensemble's members' to
    `dest/member_k`; never checkpoints."""
    dest.mkdir(parents=True, exist_ok=True)
    for name in (CONFIG, LOG, SUMMARY):
        if (run_dir / name).exists():
            shutil.copy2(run_dir / name, dest / name)
    for member in sorted(run_dir.glob("member_*")):
        export_run(member, dest / member.name)


def _state(sweep: Sweep, point: Point) -> str:
    run_dir = sweep.run_dir(point)
    if not run_dir.exists():
        return "pending"
    status = run_status(run_dir)
    return status if status in DONE_STATUSES else ("resume" if (run_dir / LOG).exists() else "pending")


def _threads_per_run(sweep: Sweep, env_threads: int) -> int | dict[str, int]:
    """The torch threads each run uses: its config's `threads` where set (the trainer applies it),
    else the `OMP_NUM_THREADS` the sweep gives its subprocesses. One number when all agree."""
    per_point = {}
    for point in sweep.points:
        configured = point_config(sweep.base, sweep.overrides(point)).threads
        per_point[point.name] = configured if configured is not None else env_threads
    values = set(per_point.values())
    return values.pop() if len(values) == 1 else per_point


def _write_sweep_info(sweep: Sweep, dest: Path, threads: int) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    info = {
        "name": sweep.name,
        "scale": sweep.scale,
        "description": sweep.description,
        "base": sweep.base.name,
        "set": sweep.shared,
        "points": {p.name: p.overrides for p in sweep.points},
        "hardware": hardware(),
        "threads_per_run": _threads_per_run(sweep, threads),
    }
    (dest / SWEEP).write_text(json.dumps(info, indent=2) + "\n")


def run_sweep(
    path: str | Path,
    *,
    parallel: int = 1,
    dry_run: bool = False,
    out_dir: str | Path | None = None,
    log=print,
) -> dict[str, str]:
    """Run every point of a sweep that has not ended, `parallel` subprocesses at a time.

    Returns each point's final state (finished, diverged, failed (exit N), or for a dry run what
    would happen: pending, resume, or the status that makes it skip). Each subprocess gets
    `cpu_count // parallel` torch threads unless `OMP_NUM_THREADS` is set; its output goes to
    `<run_dir>/sweep.log`. Ended runs are copied to `results_dir` when the sweep names one.
    """
    if parallel < 1:
        raise CS336Error(f"--parallel must be at least 1, got {parallel}")
    sweep = load_sweep(path, out_dir=out_dir)
    check_points(sweep)
    states = {p.name: _state(sweep, p) for p in sweep.points}
    width = max(len(p.name) for p in sweep.points)
    log(f"sweep {sweep.name}: {len(sweep.points)} points, base {sweep.base.name}, runs in {sweep.out_dir}")
    for p in sweep.points:
        action = "skip" if states[p.name] in DONE_STATUSES else states[p.name]
        log(f"  {p.name:<{width}}  {action:<9} {json.dumps(p.overrides)}")
    if dry_run:
        return states
    threads = os.environ.get("OMP_NUM_THREADS") or str(max(1, (os.cpu_count() or 1) // parallel))
    for dest in (sweep.out_dir, sweep.results_dir):
        if dest is not None:
            _write_sweep_info(sweep, dest, int(threads))
    todo = [p for p in sweep.points if states[p.name] not in DONE_STATUSES]
    runner = _PointRunner(sweep, {**os.environ, "OMP_NUM_THREADS": threads}, log)
    with ThreadPoolExecutor(max_workers=parallel) as pool:
        try:
            for point, status in zip(todo, pool.map(runner.run, todo)):
                states[point.name] = status
        except KeyboardInterrupt:
            pool.shutdown(wait=False, cancel_futures=True)
            runner.stop()
            raise
    return states


class _PointRunner:
    """Trains points, each in a subprocess of its own; `stop` ends those running and any that start after."""

    def __init__(self, sweep: Sweep, env: dict[str, str], log):
        self.sweep, self.env, self.log = sweep, env, log
        self._running: set[subprocess.Popen] = set()
        self._lock = threading.Lock()
        self._stopped = False

    def run(self, point: Point) -> str:
        """Train one point; its status, or "failed (exit N)"."""
        run_dir = self.sweep.run_dir(point)
        run_dir.mkdir(parents=True, exist_ok=True)
        started = time.time()
        with open(run_dir / "sweep.log", "a") as out:
            proc = subprocess.Popen(point_command(self.sweep, point), stdout=out, stderr=subprocess.STDOUT, env=self.env)
            with self._lock:
                self._running.add(proc)
                if self._stopped:
                    proc.terminate()
            self.log(f"  {point.name}: started")
            code = proc.wait()
            with self._lock:
                self._running.discard(proc)
        if self._stopped:
            return "interrupted"
        status = run_status(run_dir) if code == 0 else f"failed (exit {code})"
        self.log(f"  {point.name}: {status} in {time.time() - started:.0f} s" + ("" if code == 0 else f"; see {run_dir / 'sweep.log'}"))
        if self.sweep.results_dir is not None and code == 0:
            export_run(run_dir, self.sweep.results_dir / point.name)
        return status

    def stop(self) -> None:
        with self._lock:
            self._stopped = True
            for proc in self._running:
                proc.terminate()


def _main(argv: list[str]) -> int:
    """Subprocess entry point: train one point given as JSON (see `point_command`)."""
    spec = json.loads(argv[0])
    train_point(spec["config"], spec["overrides"])
    return 0


if __name__ == "__main__":
    raise SystemExit(_main(sys.argv[1:]))
