"""The corpora the workbook uses, where they are kept, and where they come from.

The data directory is `$CS336_DATA_DIR` when set, else `data/` in the project root. Tests, notebooks
and CI set it to `../shared/data`, which holds small real samples of the corpora below.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from cs336.errors import CS336Error

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def data_dir() -> Path:
    """The data directory: `$CS336_DATA_DIR`, else `<project>/data`."""
    env = os.environ.get("CS336_DATA_DIR")
    return Path(env).expanduser().resolve() if env else PROJECT_ROOT / "data"


@dataclass(frozen=True)
class RemoteFile:
    name: str  # file name inside the data directory
    url: str
    sha256: str | None = None  # None: not published; the fetcher records the digest it saw


@dataclass(frozen=True)
class Corpus:
    name: str
    files: tuple[RemoteFile, ...]
    # Small real samples kept in the shared data directory, used when the full files are absent.
    samples: dict[str, str] = field(default_factory=dict)


_HF = "https://huggingface.co/datasets"
CORPORA: dict[str, Corpus] = {
    "tinystories": Corpus(
        "tinystories",
        (
            RemoteFile("TinyStoriesV2-GPT4-train.txt", f"{_HF}/roneneldan/TinyStories/resolve/main/TinyStoriesV2-GPT4-train.txt"),
            RemoteFile("TinyStoriesV2-GPT4-valid.txt", f"{_HF}/roneneldan/TinyStories/resolve/main/TinyStoriesV2-GPT4-valid.txt"),
        ),
        samples={
            "train": "tinystories/TinyStories-train-2M.txt",
            "valid": "tinystories/TinyStories-valid-800K.txt",
        },
    ),
    "owt": Corpus(
        "owt",
        (
            RemoteFile("owt_train.txt.gz", f"{_HF}/stanford-cs336/owt-sample/resolve/main/owt_train.txt.gz"),
            RemoteFile("owt_valid.txt.gz", f"{_HF}/stanford-cs336/owt-sample/resolve/main/owt_valid.txt.gz"),
        ),
    ),
}


def corpus_path(name: str, split: str = "train", *, allow_sample: bool = True) -> Path:
    """Path of a corpus split: the full-size file when fetched, else the shared sample.

    >>> corpus_path("tinystories", "valid").name  # doctest: +SKIP
    'TinyStories-valid-800K.txt'
    """
    if name not in CORPORA:
        raise CS336Error(f"unknown corpus {name!r}; known: {', '.join(CORPORA)}")
    corpus = CORPORA[name]
    root = data_dir()
    for f in corpus.files:
        if f"-{split}" in f.name or f"_{split}" in f.name:
            full = root / f.name
            if full.exists():
                return full
    if allow_sample and split in corpus.samples and (root / corpus.samples[split]).exists():
        return root / corpus.samples[split]
    raise CS336Error(
        f"corpus {name!r} split {split!r} not found in {root}; run `cs336 data fetch {name}` "
        f"or set CS336_DATA_DIR"
    )
