"""The corpora the workbook uses, where they come from, and which file stands for each split.

Where the data directory is: `cs336.paths.data_dir`.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from cs336.errors import CS336Error
from cs336.outputs import write_atomic
from cs336.paths import data_dir, sample_path
from cs336.tokenization import END_OF_TEXT



@dataclass(frozen=True)
class RemoteFile:
    name: str  # file name inside the data directory
    url: str
    sha256: str | None = None  # None: not published; the fetcher records the digest it saw


@dataclass(frozen=True)
class Corpus:
    name: str
    files: tuple[RemoteFile, ...]
    # The shipped samples (`sample_path` names), used when the full files are absent.
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
        samples={"train": "owt/owt-sample-680K.txt"},
    ),
}


def corpus_path(name: str, split: str = "train", *, allow_sample: bool = True) -> Path:
    """Path of a corpus split: the full-size file when fetched, else the shipped sample.

    >>> corpus_path("tinystories", "valid").name  # doctest: +SKIP
    'TinyStories-valid-800K.txt'
    """
    if name not in CORPORA:
        raise CS336Error(f"unknown corpus {name!r}; known: {', '.join(CORPORA)}")
    corpus = CORPORA[name]
    root = data_dir()
    for f in corpus.files:
        if f"-{split}" in f.name or f"_{split}" in f.name:
            for full in (root / f.name.removesuffix(".gz"), root / f.name):  # unzipped first
                if full.exists():
                    return full
    if allow_sample and split in corpus.samples:
        return sample_path(corpus.samples[split])
    raise CS336Error(
        f"corpus {name!r} split {split!r} not found in {root}; run `cs336 data fetch {name}` "
        f"or set CS336_DATA_DIR"
    )


def read_head(path: str | os.PathLike, max_bytes: int, separator: bytes = END_OF_TEXT.encode()) -> bytes:
    """The first `max_bytes` of a corpus, cut after its last complete document (at `separator`,
    else at a blank line), reading no more than that: a 2 GB corpus costs `max_bytes` of memory.
    A file no longer than `max_bytes` comes back whole."""
    with open(path, "rb") as f:
        data = f.read(max_bytes)
        more = bool(f.read(1))
    if more:
        end = data.rfind(separator)
        if end > 0:
            data = data[: end + len(separator)]
        elif (end := data.rfind(b"\n\n")) > 0:
            data = data[:end]
    return data


# tiktoken caches a download under the SHA-1 of its URL; these are the two files of `gpt2`.
_TIKTOKEN_GPT2 = "https://openaipublic.blob.core.windows.net/gpt-2/encodings/main/"


def tiktoken_gpt2():
    """tiktoken's `gpt2` encoding without a network: its cache is written from the shipped GPT-2
    files (tiktoken checks both digests). Uses `$TIKTOKEN_CACHE_DIR` when set, else a folder in
    the temporary directory, and sets the variable to it."""
    import tiktoken  # here: a test dependency (the `test` extra), not the package's

    cache = Path(os.environ.get("TIKTOKEN_CACHE_DIR") or Path(tempfile.gettempdir()) / "cs336-tiktoken")
    vocab = sample_path("cs336-fixtures/gpt2_vocab.json").read_bytes()
    merges = b"#version: 0.2\n" + sample_path("cs336-fixtures/gpt2_merges.txt").read_bytes()
    for url, content in ((_TIKTOKEN_GPT2 + "encoder.json", vocab), (_TIKTOKEN_GPT2 + "vocab.bpe", merges)):
        path = cache / hashlib.sha1(url.encode()).hexdigest()
        if not path.is_file() or path.read_bytes() != content:
            cache.mkdir(parents=True, exist_ok=True)
            write_atomic(path, content)
    os.environ["TIKTOKEN_CACHE_DIR"] = str(cache)
    return tiktoken.get_encoding("gpt2")
