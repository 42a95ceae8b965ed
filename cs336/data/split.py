"""A train / held-out split of a corpus sample by whole documents.

The OpenWebText sample in `data/` ships as one file (133 documents joined by `<|endoftext|>`), with
no validation split of its own. `split_documents` makes one that is the same on every machine and
needs no random numbers: counting documents from 1, every `holdout_every`-th document (the 5th,
10th, 15th, ... by default) is held out, the others are for training. Taking every k-th document
spreads the held-out part over the whole file instead of one stretch of it, so no run of
neighbouring documents decides it. Each output keeps the input's format: its documents, byte for
byte, joined by the separator.

>>> split = split_documents(sample_path("owt/owt-sample-680K.txt"), "runs/data/owt_cpu")  # doctest: +SKIP
>>> split.documents                                                                   # doctest: +SKIP
{'train': 107, 'valid': 26}
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Iterator

from cs336.errors import CS336Error
from cs336.outputs import output_dir
from cs336.tokenization import END_OF_TEXT

HOLDOUT_EVERY = 5  # the default: one document in five is held out
SPLITS = ("train", "valid")
_CHUNK = 1 << 20


@dataclass(frozen=True)
class DocumentSplit:
    """What `split_documents` wrote: a path, a document count and a byte count per split."""

    paths: dict[str, Path]
    documents: dict[str, int]
    bytes: dict[str, int]

    @property
    def train(self) -> Path:
        return self.paths["train"]

    @property
    def valid(self) -> Path:
        return self.paths["valid"]


def is_held_out(index: int, holdout_every: int = HOLDOUT_EVERY) -> bool:
    """Whether document `index` (counted from 0) goes to the held-out split."""
    return index % holdout_every == holdout_every - 1


def iter_documents(f: BinaryIO, separator: bytes = END_OF_TEXT.encode()) -> Iterator[bytes]:
    """The documents of a binary stream, separator removed, reading 1 MiB at a time (memory: the
    longest document). Text after the last separator is the last document, even when empty."""
    rest = b""
    while chunk := f.read(_CHUNK):
        parts = (rest + chunk).split(separator)
        rest = parts.pop()
        yield from parts
    yield rest


def split_documents(
    source: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    holdout_every: int = HOLDOUT_EVERY,
    separator: str = END_OF_TEXT,
) -> DocumentSplit:
    """Write `out_dir/train.txt` and `out_dir/valid.txt` from the documents of `source` (joined by
    `separator`): every `holdout_every`-th document to valid, the rest to train (see the module
    docstring). Each file appears only when complete."""
    source = Path(source)
    if not source.is_file():
        raise CS336Error(f"no such file: {source}")
    if holdout_every < 2:
        raise CS336Error(f"holdout_every must be at least 2 (one document in k held out), got {holdout_every}")
    out = output_dir(out_dir, "split directory")
    sep = separator.encode("utf-8")
    paths = {split: out / f"{split}.txt" for split in SPLITS}
    tmps = {split: p.with_name(f".{p.name}.{os.getpid()}.tmp") for split, p in paths.items()}
    documents = dict.fromkeys(SPLITS, 0)
    written = dict.fromkeys(SPLITS, 0)
    try:
        with open(source, "rb") as f, open(tmps["train"], "wb") as train, open(tmps["valid"], "wb") as valid:
            files = {"train": train, "valid": valid}
            for index, doc in enumerate(iter_documents(f, sep)):
                split = "valid" if is_held_out(index, holdout_every) else "train"
                if documents[split]:
                    written[split] += files[split].write(sep)
                written[split] += files[split].write(doc)
                documents[split] += 1
        if not documents["valid"]:
            raise CS336Error(f"{source} has {documents['train']} document(s): fewer than {holdout_every}, so none is held out")
        for split in SPLITS:
            os.replace(tmps[split], paths[split])
    finally:
        for tmp in tmps.values():
            tmp.unlink(missing_ok=True)
    return DocumentSplit(paths, documents, written)
