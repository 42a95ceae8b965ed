"""results/leaderboard_cpu/RECORDS.md states what the committed track runs compute."""

from __future__ import annotations

import re

import pytest

from cs336.experiments.records import BASELINE_RERUN, CPU_RECORDS, track_table
from cs336.paths import RESULTS_DIR

RECORDS = RESULTS_DIR / "leaderboard_cpu" / "RECORDS.md"
TRACK = RESULTS_DIR / "leaderboard_track_cpu"


def _table_rows(heading: str) -> list[list[str]]:
    """The cells of each body row of the Markdown table under `heading`."""
    text = RECORDS.read_text(encoding="utf-8")
    section = text.split(heading, 1)[1].split("\n## ", 1)[0]
    section = section if heading.startswith("#") else heading + section  # a table found by its header
    lines = [line for line in section.splitlines() if line.startswith("| ")]
    return [[cell.strip() for cell in line.strip("|").split(" | ")] for line in lines[2:]]  # header and rule


def _number(text: str) -> float:
    return float(text.replace("−", "-").replace(",", "").strip("*"))


def _difference_and_p(cell: str) -> tuple[float, str]:
    """'+0.209 (0.00017)' -> (0.209, '0.00017')."""
    m = re.fullmatch(r"([+−-][0-9.]+) \(([0-9.e-]+)\)", cell)
    assert m, cell
    return _number(m.group(1)), m.group(2)


NOT_RECORDS = _table_rows("## Measured on the track, not a record (yet)")


def test_the_table_of_points_that_are_not_records_lists_every_other_track_point():
    table = track_table(TRACK)
    named = [re.match(r"`([^`]+)`", row[1]).group(1) for row in NOT_RECORDS]
    expected = set(table.index) - {"baseline", BASELINE_RERUN, *CPU_RECORDS}
    assert sorted(named) == sorted(expected)


@pytest.mark.parametrize("row", NOT_RECORDS, ids=[re.match(r"`([^`]+)`", r[1]).group(1) for r in NOT_RECORDS])
def test_each_row_states_the_runs_mean_spread_comparisons_steps_and_commit(row):
    date, change, mean, sd, vs_record, vs_baseline, steps, commit = row
    name = re.match(r"`([^`]+)`", change).group(1)
    against = {"record": track_table(TRACK, baseline=CPU_RECORDS[-1]).loc[name], "baseline": track_table(TRACK).loc[name]}
    assert _number(mean) == round(against["baseline"]["mean"], 3)
    assert _number(sd) == round(against["baseline"]["sd"], 4)
    for cell, computed in ((vs_record, against["record"]), (vs_baseline, against["baseline"])):
        difference, p = _difference_and_p(cell)
        assert difference == round(computed["vs baseline"], 3) and float(p) == float(f"{computed['p']:.2g}"), (cell, computed)
    assert _number(steps.removesuffix(" a member")) == against["baseline"]["steps"]
    assert commit == against["baseline"]["commit"]


RECORD_ROWS = [row for row in _table_rows("| date | change | config | hardware |") if "`" in row[1]]


@pytest.mark.parametrize("row", RECORD_ROWS, ids=[re.search(r"`([^`]+)`", r[1]).group(1) for r in RECORD_ROWS])
def test_each_record_and_the_baselines_rerun_state_what_their_runs_compute(row):
    date, change, config, hardware, mean, sd, vs_baseline, steps, commit = row
    computed = track_table(TRACK).loc[re.search(r"`([^`]+)`", change).group(1)]
    assert _number(mean) == round(computed["mean"], 3) and _number(sd) == round(computed["sd"], 4)
    m = re.fullmatch(r"([0-9.e-]+) \(([+−-][0-9.]+)\)", vs_baseline)
    assert m and float(m.group(1)) == float(f"{computed['p']:.2g}") and _number(m.group(2)) == round(computed["vs baseline"], 3)
    assert _number(steps.removesuffix(" a member")) == computed["steps"] and commit == computed["commit"]
