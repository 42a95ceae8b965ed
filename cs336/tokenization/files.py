"""GPT-2 file formats for a byte-level BPE: `vocab.json` and `merges.txt`.

Token bytes are written in GPT-2's printable byte-to-unicode alphabet (`bytes_to_unicode`), so the
files load in GPT-2-compatible tools:

- `vocab.json`: `{token_string: id}`;
- `merges.txt`: a `#version: 0.2` header, then one merge `a b` per line, in creation order.

A tokenizer directory (what `cs336 train-bpe --out DIR` writes, and what a run directory may hold
beside its checkpoints) has these two files under the names below, and optionally `stats.json`
with the special tokens it was trained with; `tokenizer.load_tokenizer` reads one.

>>> import tempfile, os
>>> d = tempfile.mkdtemp()
>>> vocab = {0: b"<|endoftext|>", **{i + 1: bytes([i]) for i in range(256)}, 257: b" t"}
>>> save_vocab_merges(vocab, [(b" ", b"t")], os.path.join(d, "v.json"), os.path.join(d, "m.txt"))
>>> load_vocab_merges(os.path.join(d, "v.json"), os.path.join(d, "m.txt")) == (vocab, [(b" ", b"t")])
True
"""

from __future__ import annotations

import json
import os
from functools import lru_cache

from cs336.errors import CS336Error

VOCAB_FILE, MERGES_FILE, STATS_FILE = "vocab.json", "merges.txt", "stats.json"


@lru_cache(maxsize=1)
def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's map from each byte value to a printable character.

    Printable Latin-1 bytes map to themselves; the other 68 bytes (controls, space, ...) map to
    U+0100, U+0101, ... in byte order, so every token prints without whitespace or control
    characters and `a b` in merges.txt is unambiguous.

    >>> m = bytes_to_unicode()
    >>> m[ord("a")], m[ord(" ")], m[ord("\\n")], len(set(m.values()))
    ('a', 'Ġ', 'Ċ', 256)
    """
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    mapping = {b: chr(b) for b in printable}
    extra = 0
    for b in range(256):
        if b not in mapping:
            mapping[b] = chr(256 + extra)
            extra += 1
    return mapping


@lru_cache(maxsize=1)
def _unicode_to_bytes() -> dict[str, int]:
    return {c: b for b, c in bytes_to_unicode().items()}


def token_to_string(token: bytes) -> str:
    """`b" the"` -> `'Ġthe'`."""
    table = bytes_to_unicode()
    return "".join(table[b] for b in token)


def string_to_token(s: str, where: str = "") -> bytes:
    """`'Ġthe'` -> `b" the"`; a character outside the alphabet is a `CS336Error`."""
    table = _unicode_to_bytes()
    try:
        return bytes(table[c] for c in s)
    except KeyError as e:
        raise CS336Error(f"{where}token {s!r} has character {e.args[0]!r} outside GPT-2's byte alphabet") from None


def save_vocab_merges(
    vocab: dict[int, bytes],
    merges: list[tuple[bytes, bytes]],
    vocab_path: str | os.PathLike,
    merges_path: str | os.PathLike,
) -> None:
    """Write `vocab` as GPT-2 `vocab.json` and `merges` as GPT-2 `merges.txt`.

    Both files are written in full to temporary files beside their targets and only then renamed
    over them, so a failure part way (a full disk, an interrupt) leaves any previous pair intact
    rather than a new vocab beside old merges.
    """
    by_string = {token_to_string(tok): i for i, tok in sorted(vocab.items())}
    if len(by_string) != len(vocab):
        raise CS336Error("vocab is not a bijection: two ids share the same token bytes")
    targets = [os.fspath(vocab_path), os.fspath(merges_path)]
    temps = [f"{t}.tmp-{os.getpid()}" for t in targets]
    try:
        with open(temps[0], "w", encoding="utf-8") as f:
            json.dump(by_string, f, ensure_ascii=False, indent=0)
            f.write("\n")
        with open(temps[1], "w", encoding="utf-8") as f:
            f.write("#version: 0.2\n")
            for a, b in merges:
                f.write(f"{token_to_string(a)} {token_to_string(b)}\n")
        for temp, target in zip(temps, targets):
            os.replace(temp, target)
    finally:
        for temp in temps:
            if os.path.exists(temp):
                os.remove(temp)


def load_vocab_merges(
    vocab_path: str | os.PathLike, merges_path: str | os.PathLike
) -> tuple[dict[int, bytes], list[tuple[bytes, bytes]]]:
    """Read GPT-2 `vocab.json` and `merges.txt` back into `(vocab, merges)` of raw bytes.

    Lines starting with `#version` and blank lines in merges.txt are skipped. Missing files,
    bad JSON, non-integer or duplicate ids, and malformed merge lines are `CS336Error`s.
    """
    vocab_path, merges_path = os.fspath(vocab_path), os.fspath(merges_path)
    for p in (vocab_path, merges_path):
        if not os.path.isfile(p):
            raise CS336Error(f"file not found: {p}")
    try:
        with open(vocab_path, encoding="utf-8") as f:
            raw = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CS336Error(f"{vocab_path}: not a valid vocab JSON file ({e})") from None
    if not isinstance(raw, dict):
        raise CS336Error(f"{vocab_path}: expected a JSON object {{token_string: id}}")
    vocab: dict[int, bytes] = {}
    for s, i in raw.items():
        if not isinstance(i, int) or isinstance(i, bool):
            raise CS336Error(f"{vocab_path}: id of token {s!r} is {i!r}, not an integer")
        if i in vocab:
            raise CS336Error(f"{vocab_path}: id {i} is used twice")
        vocab[i] = string_to_token(s, where=f"{vocab_path}: ")
    merges: list[tuple[bytes, bytes]] = []
    try:
        with open(merges_path, encoding="utf-8") as f:
            for lineno, line in enumerate(f, 1):
                line = line.rstrip("\r\n")
                if not line or line.startswith("#version"):
                    continue
                parts = line.split(" ")
                if len(parts) != 2 or not parts[0] or not parts[1]:
                    raise CS336Error(f"{merges_path}:{lineno}: expected two tokens 'a b', got {line!r}")
                where = f"{merges_path}:{lineno}: "
                merges.append((string_to_token(parts[0], where), string_to_token(parts[1], where)))
    except UnicodeDecodeError as e:
        raise CS336Error(f"{merges_path}: not UTF-8 text ({e})") from None
    return vocab, merges
