"""A run's log: one rule for reading it (a torn last line is skipped, damage elsewhere is an
error naming the line) and non-finite values written as null."""

from __future__ import annotations

import math

import pytest

from cs336.errors import CS336Error
from cs336.experiments.runs import load_runs, summarize_runs
from cs336.training.runlog import RunLog, read_log, truncate_log


def test_a_torn_last_line_from_a_killed_run_is_skipped(tmp_path):
    log = tmp_path / "log.jsonl"
    log.write_text('{"step": 1, "train_loss": 3.0}\n\n{"step": 2, "train_loss": 2.5}\n{"step": 3, "tr')
    assert read_log(log) == [{"step": 1, "train_loss": 3.0}, {"step": 2, "train_loss": 2.5}]


@pytest.mark.parametrize("bad", ['not json', '{"step": 2, "tr', '[2, 2.5]'])
def test_a_bad_line_before_the_last_is_an_error_naming_file_and_line(tmp_path, bad):
    log = tmp_path / "log.jsonl"
    log.write_text(f'{{"step": 1}}\n{bad}\n{{"step": 3}}\n')
    with pytest.raises(CS336Error, match=r"log\.jsonl:2 is not a JSON record"):
        read_log(log)
    with pytest.raises(CS336Error, match=r"log\.jsonl:2"):  # resuming does not silently drop records
        truncate_log(log, 3)


def test_a_missing_log_has_no_records(tmp_path):
    assert read_log(tmp_path / "log.jsonl") == []


def test_non_finite_values_are_written_as_null_read_as_none_and_tabled_as_nan(tmp_path):
    with RunLog(tmp_path / "run" / "log.jsonl") as log:
        log.write({"step": 1, "train_loss": 3.0, "grad_norm": 1.0})
        log.write({"step": 2, "train_loss": math.nan, "grad_norm": math.inf})
        log.write({"step": 2, "val_loss": -math.inf})
    assert '"train_loss": null' in (tmp_path / "run" / "log.jsonl").read_text()
    assert read_log(tmp_path / "run" / "log.jsonl")[1:] == [
        {"step": 2, "train_loss": None, "grad_norm": None}, {"step": 2, "val_loss": None},
    ]
    df = load_runs(tmp_path)
    assert df["train_loss"].tolist()[:2] == [3.0, pytest.approx(math.nan, nan_ok=True)]
    summary = summarize_runs(df).iloc[0]
    assert summary["diverged"] and math.isnan(summary["final_val_loss"])


def test_nan_and_infinity_tokens_from_other_writers_read_as_floats(tmp_path):
    log = tmp_path / "log.jsonl"
    log.write_text('{"step": 1, "train_loss": NaN}\n{"step": 2, "train_loss": Infinity}\n')
    first, second = read_log(log)
    assert math.isnan(first["train_loss"]) and second["train_loss"] == math.inf
