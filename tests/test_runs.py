"""The run directory: its checkpoints in step order, and its config.toml as the way to rerun it."""

from __future__ import annotations

import json

import pytest

from cs336.cli import main
from cs336.runs import CONFIG, CONFIG_TOML, LOG, checkpoint_path, checkpoint_paths
from cs336.training.runlog import read_log
from cs336.training.trainer import train
from cs336.experiments.tiny import byte_tokens
from engine_fixtures import tiny_config

pytestmark = pytest.mark.usefixtures("one_thread")


def test_checkpoints_are_listed_by_step_number_and_other_files_are_ignored(tmp_path):
    for step in (10_000_000, 999, 5):
        path = checkpoint_path(tmp_path, step)
        path.parent.mkdir(exist_ok=True)
        path.touch()
    (tmp_path / "checkpoints" / ".step_0001000.pt.tmp").touch()  # a write cut short
    (tmp_path / "checkpoints" / "notes.txt").touch()
    assert [p.name for p in checkpoint_paths(tmp_path)] == ["step_0000005.pt", "step_0000999.pt", "step_10000000.pt"]
    assert checkpoint_paths(tmp_path / "nowhere") == []


def metrics(run_dir) -> list[dict]:
    """The log's records without their timings (which differ from run to run)."""
    return [{k: v for k, v in r.items() if k not in ("wall_s", "tokens_per_s")} for r in read_log(run_dir / LOG)]


def test_a_runs_config_toml_reruns_it_with_identical_losses(tmp_path):
    train_ids, valid_ids = byte_tokens(tmp_path / "tokens")
    first = tmp_path / "first"
    train(tiny_config(train_ids, valid_ids, first, max_steps=6), progress=False)
    again = tmp_path / "again"
    assert main(["train", "--config", str(first / CONFIG_TOML), "--run-dir", str(again), "--no-progress"]) == 0
    assert any("train_loss" in r for r in metrics(first)) and metrics(again) == metrics(first)
    assert json.loads((again / CONFIG).read_text()) == {**json.loads((first / CONFIG).read_text()), "run_dir": str(again)}
