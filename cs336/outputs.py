"""Where results are written: output paths checked up front, so a bad `--out` is a one-line error.

Every command that writes (encode, export, train-bpe, the demo) asks here first. A path that names
a directory where a file is wanted, a file where a directory is wanted, or a place that cannot be
created is a `CS336Error` raised before any work is done and before anything is written.

>>> output_file("ids.npy")
PosixPath('ids.npy')
"""

from __future__ import annotations

import os
from pathlib import Path

from cs336.errors import CS336Error


def _make_dir(directory: Path, what: str, create: bool = True) -> None:
    if directory.exists() and not directory.is_dir():
        raise CS336Error(f"{what} {directory} is a file, not a directory")
    if not create:  # check only: the nearest existing ancestor must be a writable directory
        existing = next(p for p in (directory, *directory.absolute().parents) if p.exists())
        if not existing.is_dir():
            raise CS336Error(f"cannot create {what} {directory}: {existing} is a file")
        if not os.access(existing, os.W_OK | os.X_OK):
            raise CS336Error(f"cannot write to {what} {directory}: permission denied")
        return
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise CS336Error(f"cannot create {what} {directory}: {e.strerror or e}") from None
    if not os.access(directory, os.W_OK | os.X_OK):
        raise CS336Error(f"cannot write to {what} {directory}: permission denied")


def output_file(path: str | os.PathLike, what: str = "output") -> Path:
    """`path` as a file to be written: not a directory, its parent created and writable."""
    path = Path(path)
    if path.is_dir():
        raise CS336Error(f"{what} {path} is a directory; give a file name")
    _make_dir(path.parent, f"{what} directory")
    return path


def output_dir(path: str | os.PathLike, what: str = "output directory", *, create: bool = True) -> Path:
    """`path` as a directory to be written into: not a file, writable, and created if missing
    (with `create=False`, only checked, for a command that has slow work to do first)."""
    path = Path(path)
    _make_dir(path, what, create)
    return path


def write_atomic(path: str | os.PathLike, data: str | bytes) -> Path:
    """Replace `path` with `data` in one step (a temporary file beside it, then a rename), so a
    reader or a crash never sees half a file. Text is written as UTF-8."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path
