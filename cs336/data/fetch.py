"""`cs336 data fetch`: put the full-size corpora into the data directory.

Each file of a corpus (see `registry.CORPORA`) is downloaded over HTTP(S) with the standard
library, or copied from a local mirror directory, into `<name>.part` beside its final place:

- an interrupted download resumes: the next run asks for the rest with an HTTP `Range` request
  (a server that ignores it sends the whole file, which then replaces the partial one);
- the bytes are hashed while they arrive; a registered SHA-256 must match, and where the registry
  has none the observed digest is written to `<name>.sha256` (sha256sum format) and checked the
  next time;
- only a complete, verified file is renamed (atomically) to its final name, so a file with the
  final name is always whole.

Mirrored files are copied byte for byte (gzip files stay gzip files).
"""

from __future__ import annotations

import hashlib
import http.client
import os
import shutil
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import BinaryIO

from tqdm import tqdm

from cs336.data.registry import CORPORA, RemoteFile, data_dir
from cs336.errors import CS336Error

CHUNK = 1 << 20  # 1 MiB reads: large enough to be fast, small enough for a smooth progress bar
USER_AGENT = "cs336-data-fetch"


def fetch(corpus: str, *, mirror: str | os.PathLike | None = None, dest: str | os.PathLike | None = None, progress: bool = True, timeout: float = 30.0) -> list[Path]:
    """Download (or copy from `mirror`) every file of `corpus` into `dest` (default: the data
    directory); return the final paths. Files already present and verified are left alone."""
    if corpus not in CORPORA:
        raise CS336Error(f"unknown corpus {corpus!r}; known: {', '.join(CORPORA)}")
    dest_dir = Path(dest).expanduser() if dest is not None else data_dir()
    dest_dir.mkdir(parents=True, exist_ok=True)
    mirror_dir = Path(mirror).expanduser() if mirror is not None else None
    if mirror_dir is not None and not mirror_dir.is_dir():
        raise CS336Error(f"mirror directory not found: {mirror_dir}")
    return [fetch_file(f, dest_dir, mirror=mirror_dir, progress=progress, timeout=timeout) for f in CORPORA[corpus].files]


def fetch_file(remote: RemoteFile, dest_dir: Path, *, mirror: Path | None = None, progress: bool = True, timeout: float = 30.0) -> Path:
    """One file of a corpus: skip it when present and verified, else copy or download it."""
    target = Path(dest_dir) / remote.name
    if target.exists():
        expected = remote.sha256 or _recorded_digest(target)
        if expected is None or _sha256_of(target) == expected:
            return target
        raise CS336Error(f"{target} exists but its SHA-256 does not match; delete it and fetch again")
    part = target.with_name(target.name + ".part")
    if mirror is not None:
        digest = _copy_from_mirror(mirror / remote.name, part, progress=progress)
    else:
        digest = _download(remote.url, part, progress=progress, timeout=timeout)
    if remote.sha256 is not None and digest != remote.sha256:
        part.unlink()
        raise CS336Error(f"checksum mismatch for {remote.name}: expected sha256 {remote.sha256}, got {digest}; the bad copy was removed, fetch again")
    recorded = None if remote.sha256 else _recorded_digest(target)
    if recorded is not None and digest != recorded:
        part.unlink()
        raise CS336Error(f"checksum mismatch for {remote.name}: {target.name}.sha256 records {recorded}, got {digest}; the bad copy was removed")
    os.replace(part, target)  # atomic: the final name only ever holds a complete, verified file
    if remote.sha256 is None and recorded is None:
        _sidecar(target).write_text(f"{digest}  {target.name}\n")
    return target


# ------------------------------------------------------------------------------------- download
def _download(url: str, part: Path, *, progress: bool, timeout: float) -> str:
    """Fetch `url` into `part`, resuming from its current size; return the SHA-256 of the whole file."""
    have = part.stat().st_size if part.exists() else 0
    headers = {"User-Agent": USER_AGENT}
    if have:
        headers["Range"] = f"bytes={have}-"
    request = urllib.request.Request(url, headers=headers)
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as e:
        if e.code == 416 and have:  # nothing left to send: the partial file is already whole
            return _sha256_of(part)
        raise CS336Error(f"download of {url} failed: HTTP {e.code} {e.reason}") from None
    except OSError as e:  # URLError, refused connections and timeouts are all OSErrors
        reason = getattr(e, "reason", e)
        raise CS336Error(f"cannot reach {urllib.parse.urlsplit(url).netloc} ({reason}); check the network, or copy the files with --mirror DIR") from None
    with response:
        resumed = response.status == 206
        if resumed and not response.headers.get("Content-Range", "").startswith(f"bytes {have}-"):
            raise CS336Error(f"the server answered the resume of {part.name} with another range; delete it and fetch again")
        if not resumed:
            have = 0  # the server sent the whole file (no Range support): start over
        length = response.headers.get("Content-Length")
        total = have + int(length) if length is not None else None
        hasher = hashlib.sha256()
        if resumed:
            _hash_into(hasher, part)
        with open(part, "ab" if resumed else "wb") as out:
            received = _stream(response, out, hasher, total=total, initial=have, desc=part.name[: -len(".part")], progress=progress)
    if total is not None and have + received < total:
        raise CS336Error(f"download of {url} stopped at {have + received:,} of {total:,} bytes; run the command again to resume")
    return hasher.hexdigest()


def _stream(src: BinaryIO, out: BinaryIO, hasher, *, total: int | None, initial: int, desc: str, progress: bool) -> int:
    received = 0
    with tqdm(total=total, initial=initial, unit="B", unit_scale=True, unit_divisor=1024, desc=desc, disable=not progress) as bar:
        while True:
            try:
                chunk = src.read(CHUNK)
            except (OSError, http.client.HTTPException):  # connection dropped mid-file: keep what arrived
                break
            if not chunk:
                break
            out.write(chunk)
            hasher.update(chunk)
            received += len(chunk)
            bar.update(len(chunk))
    return received


# --------------------------------------------------------------------------------------- mirror
def _copy_from_mirror(source: Path, part: Path, *, progress: bool) -> str:
    if not source.is_file():
        raise CS336Error(f"{source.name} not found in mirror {source.parent}")
    hasher = hashlib.sha256()
    with open(source, "rb") as src, open(part, "wb") as out:
        _stream(src, out, hasher, total=source.stat().st_size, initial=0, desc=source.name, progress=progress)
    shutil.copystat(source, part)
    return hasher.hexdigest()


# ------------------------------------------------------------------------------------ checksums
def _sidecar(target: Path) -> Path:
    return target.with_name(target.name + ".sha256")


def _recorded_digest(target: Path) -> str | None:
    sidecar = _sidecar(target)
    return sidecar.read_text().split()[0] if sidecar.exists() and sidecar.read_text().strip() else None


def _hash_into(hasher, path: Path) -> None:
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            hasher.update(chunk)


def _sha256_of(path: Path) -> str:
    hasher = hashlib.sha256()
    _hash_into(hasher, path)
    return hasher.hexdigest()
