"""`code_version()`: what every run records about the code and machine that produced it."""

from __future__ import annotations

import subprocess

import torch

from cs336 import provenance
from cs336.paths import PROJECT_ROOT


def test_code_version_names_commit_versions_threads_and_machine():
    v = provenance.code_version()
    assert v["torch"] == torch.__version__ and v["threads"] == torch.get_num_threads()
    assert v["python"].count(".") == 2 and v["hardware"] and v["platform"]
    if (PROJECT_ROOT / ".git").exists():
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=PROJECT_ROOT, capture_output=True, text=True).stdout.strip()
        assert v["commit"] == head and isinstance(v["dirty"], bool)


def test_dirty_flag_follows_tracked_changes(tmp_path, monkeypatch):
    """A throw-away repository: clean after a commit, dirty after editing a tracked file."""
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-C", str(tmp_path)]
    subprocess.run([*git, "init", "-q"], check=True)
    (tmp_path / "f.txt").write_text("a")
    subprocess.run([*git, "add", "f.txt"], check=True)
    subprocess.run([*git, "commit", "-qm", "x"], check=True)
    monkeypatch.setattr(provenance, "PROJECT_ROOT", tmp_path)
    provenance._commit.cache_clear()
    try:
        commit, dirty = provenance._commit()
        assert len(commit) == 40 and dirty is False
        (tmp_path / "untracked.txt").write_text("b")  # untracked files do not change results
        (tmp_path / "results").mkdir()
        (tmp_path / "results" / "log.jsonl").write_text("{}")
        subprocess.run([*git, "add", "results"], check=True)
        subprocess.run([*git, "commit", "-qm", "y"], check=True)
        (tmp_path / "results" / "log.jsonl").write_text('{"step": 1}')  # a sweep rewriting its outputs
        provenance._commit.cache_clear()
        assert provenance._commit()[1] is False
        (tmp_path / "f.txt").write_text("changed")
        provenance._commit.cache_clear()
        assert provenance._commit()[1] is True
    finally:
        provenance._commit.cache_clear()


def test_outside_a_checkout_the_commit_is_unknown(tmp_path, monkeypatch):
    monkeypatch.setattr(provenance, "PROJECT_ROOT", tmp_path)
    provenance._commit.cache_clear()
    try:
        assert provenance._commit() == (None, None)
    finally:
        provenance._commit.cache_clear()
