"""The committed experiment logs still hold: the first steps of one point of every committed sweep
in results/, rerun with today's code on the same data, give the logged losses.

A change to the model or training code that changes results fails here until the logs are
regenerated (`make reproduce SCALE=cpu`). Each point's config is the one its run recorded; the run
stops after `PREFIX` steps on its own schedule (`train(..., stop_after=PREFIX)`), which for a
wall-clock run is still inside its step-counted warm-up, so the prefix does not depend on timing.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import pytest

from cs336.experiments.cpu import DATA_DIRS, cpu_tokens
from cs336.paths import RESULTS_DIR
from cs336.runs import CONFIG, LOG, SUMMARY
from cs336.training.config import TrainConfig
from cs336.training.runlog import read_log
from cs336.training.trainer import train

pytestmark = pytest.mark.usefixtures("one_thread")  # the sweeps ran one thread a run

PREFIX = 10
# Float32 on another CPU (other SIMD kernels, other summation orders) moves a loss by ~1e-6 at
# the start and the difference grows with the steps: logs written on an Intel Xeon and rerun on an
# AMD EPYC stay within 2e-3 for 10 steps, but a batch of 128 at lr 0.1 drifts by 7e-3 by step 15.
# A change of code moves the losses from the first steps on, by far more.
TOLERANCE = 2e-3
SWEEPS = sorted(p.parent for p in RESULTS_DIR.glob("*/sweep.json"))


@pytest.fixture(scope="module")
def cpu_data(tmp_path_factory):
    """The sweeps' token files, made as `make data-cpu` makes them (`cs336.experiments.cpu`), each
    corpus once, when a sweep needs it."""
    root = tmp_path_factory.mktemp("cpu_data")
    return lambda data_dir: cpu_tokens(DATA_DIRS[data_dir], root / Path(data_dir).name)


def first_point(sweep: Path) -> Path:
    return sorted(p for p in sweep.iterdir() if (p / CONFIG).is_file())[0]


def test_every_committed_sweep_is_checked():
    assert {s.name for s in SWEEPS} >= {"lr_cpu", "batch_size_cpu", "ablations_cpu", "owt_cpu", "leaderboard_track_cpu", "leaderboard_screen_cpu"}


@pytest.mark.parametrize("sweep", SWEEPS, ids=lambda p: p.name)
def test_every_committed_run_records_its_code_version(sweep):
    for run in (p for p in sweep.iterdir() if (p / SUMMARY).is_file()):
        code = json.loads((run / SUMMARY).read_text())["code"]
        assert code["commit"] and code["dirty"] is False, f"{run}: trained from {code}"
        assert code["torch"] and code["hardware"] and code["threads"] >= 1


@pytest.mark.slow
@pytest.mark.parametrize("sweep", SWEEPS, ids=lambda p: p.name)
def test_the_first_steps_of_a_committed_run_reproduce(sweep, cpu_data, tmp_path):
    point = first_point(sweep)
    cfg = TrainConfig.from_dict(json.loads((point / CONFIG).read_text()))
    data_dir = str(Path(cfg.data.train).parent)
    assert data_dir in DATA_DIRS and {cfg.data.train, cfg.data.valid} == {f"{data_dir}/train.npy", f"{data_dir}/valid.npy"}
    files = cpu_data(data_dir)
    cfg = dataclasses.replace(cfg, run_dir=str(tmp_path / point.name), checkpoint_interval=0,
                              data=dataclasses.replace(cfg.data, train=str(files["train"]), valid=str(files["valid"])))
    assert train(cfg, progress=False, stop_after=PREFIX)["status"] == "stopped"

    def losses(path: Path) -> dict[tuple[int, str], float]:
        return {(r["step"], k): r[k] for r in read_log(path) if r["step"] <= PREFIX
                for k in ("train_loss", "val_loss") if r.get(k) is not None}

    logged, now = losses(point / LOG), losses(tmp_path / point.name / LOG)
    assert len(logged) >= 3 and logged.keys() == now.keys()
    off = {k: (logged[k], now[k]) for k in logged if not math.isclose(logged[k], now[k], rel_tol=0, abs_tol=TOLERANCE)}
    assert not off, f"{point}: today's code gives other losses (step, kind): (logged, now) {off}; regenerate the logs"
