"""The data a clone ships, and the one rule for where data is found."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cs336.cli import main
from cs336.data import HOLDOUT_EVERY, corpus_path, read_head, sample_path, split_documents, tiktoken_gpt2
from cs336.data import split as split_module
from cs336.errors import CS336Error
from cs336.paths import CHECKOUT_DATA, data_dir, user_data_dir

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "data"
NOT_DATA = {"README.md", "SHA256SUMS", "LICENSE"}


def listed() -> dict[str, str]:
    """`{relative path: sha256}` from data/SHA256SUMS."""
    lines = (DATA / "SHA256SUMS").read_text(encoding="utf-8").splitlines()
    return {name: digest for digest, name in (line.split("  ", 1) for line in lines)}


def tracked_data_files() -> list[str]:
    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    out = subprocess.run(["git", "ls-files", "data"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    return [p.removeprefix("data/") for p in out.split()]


@pytest.mark.parametrize("name", sorted(listed()))
def test_shipped_sample_matches_its_checksum(name):
    assert hashlib.sha256((DATA / name).read_bytes()).hexdigest() == listed()[name]


def test_every_shipped_file_is_listed_and_documented():
    files = tracked_data_files()
    samples = [f for f in files if Path(f).name not in NOT_DATA]
    assert sorted(samples) == sorted(listed()), "data/SHA256SUMS and the committed samples differ"
    readme = (DATA / "README.md").read_text(encoding="utf-8")
    undocumented = [f for f in samples if f"`{f}`" not in readme]
    assert not undocumented, f"data/README.md does not list {undocumented}"
    assert "cs336-fixtures/LICENSE" in files  # the fixtures' MIT notice travels with them


def test_shipped_data_stays_small():
    total = sum((DATA / f).stat().st_size for f in tracked_data_files())
    assert total < 8e6, f"data/ holds {total:,} bytes"


def test_no_tracked_file_points_outside_the_checkout():
    """A user's clone has nothing beside it: nothing may read or name a sibling folder of data."""
    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    sibling = "shared"  # a folder beside the checkout, which a user's clone does not have
    hits = subprocess.run(["git", "grep", "-lE", rf"\.\./{sibling}|{sibling}/data", "--", "."],
                          cwd=ROOT, capture_output=True, text=True).stdout.split()
    assert not hits, f"these files point outside the checkout: {hits}"


# ---------------------------------------------------------------------------------------------
# Where data is
# ---------------------------------------------------------------------------------------------
def where(cwd: Path, **env: str) -> dict:
    """data_dir() and a sample's path as a fresh interpreter in `cwd` sees them."""
    clean = {k: v for k, v in os.environ.items() if k not in {"CS336_DATA_DIR", "PYTHONPATH"}}
    code = ("import json; from cs336.data import corpus_path, data_dir; "
            "print(json.dumps([str(data_dir()), str(corpus_path('tinystories', 'valid'))]))")
    out = subprocess.run([sys.executable, "-c", code], cwd=cwd, env={**clean, **env}, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_without_the_variable_the_checkout_data_is_used_from_any_directory(tmp_path):
    data, valid = where(tmp_path)
    assert Path(data) == DATA == CHECKOUT_DATA
    assert Path(valid) == DATA / "tinystories" / "TinyStories-valid-800K.txt"


def test_the_variable_wins_and_samples_fall_back_to_the_checkout(tmp_path):
    full = tmp_path / "corpora"
    full.mkdir()
    data, valid = where(tmp_path, CS336_DATA_DIR=str(full))
    assert Path(data) == full
    assert Path(valid) == DATA / "tinystories" / "TinyStories-valid-800K.txt"  # only full corpora there
    (full / "TinyStoriesV2-GPT4-valid.txt").write_text("a story<|endoftext|>", encoding="utf-8")
    assert Path(where(tmp_path, CS336_DATA_DIR=str(full))[1]) == full / "TinyStoriesV2-GPT4-valid.txt"


def test_full_corpus_preferred_unzipped(monkeypatch, tmp_path):
    monkeypatch.setenv("CS336_DATA_DIR", str(tmp_path))
    assert corpus_path("owt") == DATA / "owt" / "owt-sample-680K.txt"
    with pytest.raises(CS336Error, match="cs336 data fetch owt"):
        corpus_path("owt", "valid")
    (tmp_path / "owt_train.txt.gz").write_bytes(b"")
    assert corpus_path("owt") == tmp_path / "owt_train.txt.gz"
    (tmp_path / "owt_train.txt").write_text("text", encoding="utf-8")
    assert corpus_path("owt") == tmp_path / "owt_train.txt"


def test_a_missing_sample_is_one_clear_error(monkeypatch, tmp_path):
    monkeypatch.setenv("CS336_DATA_DIR", str(tmp_path))
    with pytest.raises(CS336Error, match=r"sample nope\.txt not found in "):
        sample_path("nope.txt")


def test_installed_without_a_checkout_uses_the_user_data_directory(monkeypatch, tmp_path):
    monkeypatch.delenv("CS336_DATA_DIR")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    monkeypatch.setattr("cs336.paths.CHECKOUT_DATA", None)
    assert user_data_dir() == tmp_path / "cs336" == data_dir()


def test_read_head_cuts_after_the_last_whole_document(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_bytes(b"one<|endoftext|>two<|endoftext|>three")
    assert read_head(path, 1000) == b"one<|endoftext|>two<|endoftext|>three"  # whole file
    assert read_head(path, 30) == b"one<|endoftext|>"
    assert read_head(path, 33) == b"one<|endoftext|>two<|endoftext|>"
    path.write_bytes(b"para one\n\npara two\n\npara three")
    assert read_head(path, 25) == b"para one\n\npara two"


def test_tiktoken_gpt2_is_built_offline_from_the_shipped_files(tmp_path):
    """No network, no cache: the encoding comes from data/'s GPT-2 files (tiktoken checks digests)."""
    env = {k: v for k, v in os.environ.items() if k != "TIKTOKEN_CACHE_DIR"}
    code = ("from cs336.data import tiktoken_gpt2; import os; "
            "e = tiktoken_gpt2(); print(e.n_vocab, e.encode('Hello world'), os.environ['TIKTOKEN_CACHE_DIR'])")
    env["TMPDIR"] = str(tmp_path)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("50257 [15496, 995] ")
    assert Path(out.stdout.split()[-1]) == tmp_path / "cs336-tiktoken"


def test_tiktoken_cache_is_rewritten_when_a_file_is_damaged(monkeypatch, tmp_path):
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path))
    tiktoken_gpt2()
    for f in tmp_path.iterdir():
        f.write_bytes(f.read_bytes()[:100])  # truncated: tiktoken would try to download again
    assert tiktoken_gpt2().encode("Hello world") == [15496, 995]


# ---------------------------------------------------------------------------------------------
# A held-out split of a sample
# ---------------------------------------------------------------------------------------------
EOT = b"<|endoftext|>"


def test_every_kth_document_is_held_out_and_the_files_keep_the_format(tmp_path):
    source = tmp_path / "docs.txt"
    source.write_bytes(EOT.join([b"a", b"b\n", b"c", b"", b"e", b"f"]))
    split = split_documents(source, tmp_path / "out", holdout_every=2)
    assert split.train.read_bytes() == EOT.join([b"a", b"c", b"e"])
    assert split.valid.read_bytes() == EOT.join([b"b\n", b"", b"f"])  # empty documents count too
    assert split.documents == {"train": 3, "valid": 3}
    assert split.bytes == {"train": split.train.stat().st_size, "valid": split.valid.stat().st_size}


def test_split_streams_documents_across_read_boundaries(monkeypatch, tmp_path):
    monkeypatch.setattr(split_module, "_CHUNK", 5)  # separators cut in two by every read
    docs = [f"document {i}: ".encode() + b"x" * i for i in range(23)]
    source = tmp_path / "docs.txt"
    source.write_bytes(EOT.join(docs))
    split = split_documents(source, tmp_path)
    assert split.valid.read_bytes() == EOT.join(docs[4::5]) and split.train.read_bytes() == EOT.join(
        d for i, d in enumerate(docs) if i % 5 != 4)


def test_the_owt_sample_splits_into_whole_documents(tmp_path):
    source = DATA / "owt" / "owt-sample-680K.txt"
    split = split_documents(source, tmp_path)
    assert split.documents == {"train": 107, "valid": 26}
    docs = source.read_bytes().split(EOT)
    assert split.valid.read_bytes().split(EOT) == docs[HOLDOUT_EVERY - 1::HOLDOUT_EVERY]
    assert sum(split.bytes.values()) == source.stat().st_size - len(EOT)  # 132 separators -> 106 + 25


def test_a_split_with_nothing_to_hold_out_writes_nothing(tmp_path):
    source = tmp_path / "docs.txt"
    source.write_bytes(EOT.join([b"a", b"b"]))
    with pytest.raises(CS336Error, match="fewer than 5, so none is held out"):
        split_documents(source, tmp_path / "out")
    assert list((tmp_path / "out").iterdir()) == []
    with pytest.raises(CS336Error, match="no such file"):
        split_documents(tmp_path / "missing.txt", tmp_path / "out")
    with pytest.raises(CS336Error, match="at least 2"):
        split_documents(source, tmp_path / "out", holdout_every=1)


def test_cli_data_split(tmp_path, capsys):
    source = tmp_path / "docs.txt"
    source.write_bytes(EOT.join([b"one", b"two", b"three"]))
    assert main(["data", "split", "--input", str(source), "--out", str(tmp_path / "s"), "--holdout-every", "3"]) == 0
    out = capsys.readouterr().out
    assert "train: 2 documents, 19 bytes" in out and "valid: 1 documents, 5 bytes" in out
    assert (tmp_path / "s" / "valid.txt").read_bytes() == b"three"
    assert main(["data", "split", "--input", str(tmp_path / "nope"), "--out", str(tmp_path / "s")]) == 2
