"""The run directory: its checkpoints in step order."""

from __future__ import annotations

from cs336.runs import checkpoint_path, checkpoint_paths


def test_checkpoints_are_listed_by_step_number_and_other_files_are_ignored(tmp_path):
    for step in (10_000_000, 999, 5):
        path = checkpoint_path(tmp_path, step)
        path.parent.mkdir(exist_ok=True)
        path.touch()
    (tmp_path / "checkpoints" / ".step_0001000.pt.tmp").touch()  # a write cut short
    (tmp_path / "checkpoints" / "notes.txt").touch()
    assert [p.name for p in checkpoint_paths(tmp_path)] == ["step_0000005.pt", "step_0000999.pt", "step_10000000.pt"]
    assert checkpoint_paths(tmp_path / "nowhere") == []
