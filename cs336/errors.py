"""The one exception type the package raises for bad input.

Every user-facing problem (a missing file, an empty corpus, a corrupt vocabulary, a bad config key,
a NaN loss) is a `CS336Error` with a one-line message naming the problem. The CLI prints such errors
as `error: <message>` and exits with status 2, without a traceback.
"""

from __future__ import annotations

import os
from pathlib import Path


class CS336Error(Exception):
    """A user-facing error: the message alone says what is wrong and what to do."""


def input_file(path: str | os.PathLike, what: str = "input file") -> Path:
    """`path` as a file to be read: it exists, is a file and is not empty; else a `CS336Error`
    that names it (`what` says what it is for)."""
    path = Path(path)
    if not path.exists():
        raise CS336Error(f"{what} not found: {path}")
    if not path.is_file():
        raise CS336Error(f"{what} is not a file: {path}")
    if path.stat().st_size == 0:
        raise CS336Error(f"{what} is empty: {path}")
    return path
