"""numpy helpers for looking up many keys and substrings at once: a hash table from int64 keys to
int32 values (`IntTable`), hashes of substrings (`substring_hashes`), and equal substrings found
together (`distinct_substrings`). Encoding (`merge.py`, `tokenizer.py`) and counting pre-tokens
(`pretokenize.py`) use them; a hash only ever proposes, and bytes compared decide.
"""

from __future__ import annotations

import numpy as np

_EMPTY = -1  # a free slot of an `IntTable`
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)  # 2^64 / golden ratio: Knuth's multiplicative hash


class IntTable:
    """A dictionary from non-negative int64 keys to int32 values that looks up many keys in one
    call: numpy has none, so this is a small one, an open-addressing hash table with linear
    probing kept at most a quarter full, so that a lookup rarely probes twice.

    >>> table = IntTable(np.array([7, 2**40]), np.array([1, 2]))
    >>> table.get(np.array([2**40, 5, 7]), -1).tolist()
    [2, -1, 1]
    """

    def __init__(self, keys: np.ndarray, values: np.ndarray):
        bits = max(2, (4 * len(keys) - 1).bit_length())
        self._shift, self._mask = np.uint64(64 - bits), (1 << bits) - 1
        self._keys = np.full(1 << bits, _EMPTY, np.int64)
        self._values = np.zeros(1 << bits, np.int32)
        todo, slot = np.arange(len(keys)), self._home(keys)
        while len(todo):
            free = np.flatnonzero(self._keys[slot] == _EMPTY)
            # Of the keys that want the same free slot, the first takes it; the others probe on.
            taken, first = np.unique(slot[free], return_index=True)
            self._keys[taken], self._values[taken] = keys[todo[free[first]]], values[todo[free[first]]]
            waiting = np.ones(len(todo), bool)
            waiting[free[first]] = False
            todo, slot = todo[waiting], (slot[waiting] + 1) & self._mask

    def _home(self, keys: np.ndarray) -> np.ndarray:
        return ((keys.astype(np.uint64) * _GOLDEN) >> self._shift).astype(np.int64)

    def get(self, keys: np.ndarray, default: int) -> np.ndarray:
        """The value of each key, or `default` where it has none."""
        keys = keys.astype(np.int64, copy=False)
        out = np.full(len(keys), default, np.int32)
        todo, slot = np.arange(len(keys)), self._home(keys)
        while len(todo):
            held = self._keys[slot]
            found = held == keys[todo]
            out[todo[found]] = self._values[slot[found]]
            probe = ~found & (held != _EMPTY)  # another key sits there: try the next slot
            todo, slot = todo[probe], (slot[probe] + 1) & self._mask
        return out


_BASE = np.uint64(0x100000001B3)  # odd, so invertible modulo 2^64
_BASE_INVERSE = np.uint64(pow(int(_BASE), -1, 1 << 64))
_LOW_63 = np.uint64((1 << 63) - 1)


def _powers(base: np.uint64, n: int) -> np.ndarray:
    """base^0 .. base^(n-1) modulo 2^64 (numpy's uint64 products wrap around)."""
    out = np.full(n, base, np.uint64)
    out[:1] = 1
    return np.cumprod(out)


def substring_hashes(data: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """A 63-bit hash of each `data[starts[i]:ends[i]]` (unsigned integers: bytes, or code points),
    the same wherever the substring lies: `sum(b_j * B^j)` modulo 2^64, from one running sum over `data`, shifted back
    to position 0 by the inverse of `B^start`.

    >>> data = np.frombuffer(b"abcab", np.uint8)
    >>> h = substring_hashes(data, np.array([0, 3, 1]), np.array([2, 5, 3]))
    >>> bool(h[0] == h[1]), bool(h[0] == h[2])
    (True, False)
    """
    n = len(data)
    running = np.zeros(n + 1, np.uint64)
    np.cumsum(data * _powers(_BASE, n), out=running[1:])
    return (((running[ends] - running[starts]) * _powers(_BASE_INVERSE, n + 1)[starts]) & _LOW_63).astype(np.int64)


def substrings_equal(data: np.ndarray, starts: np.ndarray, other: np.ndarray, other_starts: np.ndarray,
                     lengths: np.ndarray) -> np.ndarray:
    """Whether `data[starts[i]:][:lengths[i]]` equals `other[other_starts[i]:][:lengths[i]]`, for
    each i (every length > 0)."""
    if not len(lengths):
        return np.zeros(0, bool)
    offsets = np.cumsum(lengths) - lengths
    within = np.arange(offsets[-1] + lengths[-1]) - np.repeat(offsets, lengths)
    same = data[np.repeat(starts, lengths) + within] == other[np.repeat(other_starts, lengths) + within]
    return np.logical_and.reduceat(same, offsets)


def distinct_substrings(data: np.ndarray, starts: np.ndarray, ends: np.ndarray,
                        hashes: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """`(first, group)` for the substrings `data[starts[i]:ends[i]]` (none empty): `group[i]`
    numbers the distinct substrings in the order they first occur, and `first[g]` is where group g
    first occurs. Equal hashes are checked byte for byte; should two different substrings share
    one, every substring is its own group, so a caller can never mix two of them up.

    >>> data = np.frombuffer(b"abxab", np.uint8)
    >>> [a.tolist() for a in distinct_substrings(data, np.array([0, 2, 3]), np.array([2, 3, 5]))]
    [[0, 1], [0, 1, 0]]
    """
    if hashes is None:
        hashes = substring_hashes(data, starts, ends)
    _, first, group = np.unique(hashes, return_index=True, return_inverse=True)
    group, lengths = group.reshape(-1), ends - starts
    same = first[group]  # the first substring with each one's hash
    if not (np.array_equal(lengths, lengths[same]) and substrings_equal(data, starts, data, starts[same], lengths).all()):
        return np.arange(len(starts)), np.arange(len(starts))
    order = np.argsort(first)
    renumber = np.empty_like(order)
    renumber[order] = np.arange(len(order))
    return first[order], renumber[group]
