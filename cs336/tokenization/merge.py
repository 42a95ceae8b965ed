"""Applying BPE merges to pre-tokens: stage 3 of encoding (see `tokenizer.py`).

A pre-token's UTF-8 bytes start as one id each; then, again and again, the lowest-ranked adjacent
pair that has a merge is replaced by the merged id, everywhere in the pre-token, left to right.
`merge_plain` does exactly that and is the reference. The others give the same ids faster:

- `merge_fast`: one short pre-token, one merge at a time (plain Python);
- `merge_heap`: one long pre-token (a 100 kB run of digits) in O(n log n);
- `merge_many`: many pre-tokens at once, the way a new text arrives, with numpy: every pre-token
  takes its own lowest-ranked merge in the same round, so the Python work is per round, not per
  pre-token.
"""

from __future__ import annotations

import heapq
from itertools import chain, repeat

import numpy as np

from cs336.tokenization.hashing import IntTable, substring_hashes, substrings_equal

# A merge table maps a pair of ids to `(rank, merged id)`; lower ranks merge first.
MergeTable = dict[tuple[int, int], tuple[int, int]]


def merge_plain(ids: list[int], merges: MergeTable) -> list[int]:
    """The reference: repeatedly merge every occurrence of the lowest-ranked adjacent pair.

    >>> merge_plain([1, 2, 3], {(1, 2): (0, 4), (4, 3): (1, 5)})
    [5]
    """
    while len(ids) > 1:
        best = min(zip(ids, ids[1:]), key=lambda pair: merges.get(pair, (float("inf"),))[0])
        if best not in merges:
            break
        new_id, out, i = merges[best][1], [], 0
        while i < len(ids):
            if i + 1 < len(ids) and (ids[i], ids[i + 1]) == best:
                out.append(new_id)
                i += 2
            else:
                out.append(ids[i])
                i += 1
        ids = out
    return ids


_NO_MERGE = (1 << 62, -1)  # sorts after every real `(rank, id)`


def merge_fast(ids: list[int], merges: MergeTable) -> list[int]:
    """`merge_plain` for short pre-tokens: merge the leftmost lowest-ranked pair, one at a time.

    The pairs' `(rank, id)` entries live in a list kept in step with `ids`, so a merge looks up
    only the two pairs it changes, and finding the minimum is a C-level `min` over that list.
    Merging one occurrence at a time gives the same result as `merge_plain`'s all-occurrences
    step: a merge never creates a pair of lower rank than its own.

    >>> merge_fast([1, 2, 3], {(1, 2): (0, 4), (4, 3): (1, 5)})
    [5]
    """
    get = merges.get
    pairs = list(map(get, zip(ids, ids[1:]), repeat(_NO_MERGE)))
    while pairs:
        best = min(pairs)
        if best is _NO_MERGE:
            break
        i = pairs.index(best)
        new_id = ids[i] = best[1]
        del ids[i + 1], pairs[i]
        if i > 0:
            pairs[i - 1] = get((ids[i - 1], new_id), _NO_MERGE)
        if i < len(pairs):
            pairs[i] = get((new_id, ids[i + 1]), _NO_MERGE)
    return ids


def merge_heap(ids: list[int], merges: MergeTable) -> list[int]:
    """`merge_plain` in O(n log n) for long pre-tokens (a 100 kB run of digits, say).

    The ids form a doubly linked list; a heap holds `(rank, position)` of every adjacent pair that
    has a merge. Popping gives the lowest rank, leftmost first, which is the order `merge_plain`
    uses. Entries made stale by an earlier merge are recognised and skipped.

    >>> merge_heap([1, 2, 3], {(1, 2): (0, 4), (4, 3): (1, 5)})
    [5]
    """
    n = len(ids)
    val = list(ids)
    nxt = list(range(1, n + 1))  # n marks the end
    prv = list(range(-1, n - 1))
    alive = [True] * n
    heap = [(merges[p][0], i) for i, p in enumerate(zip(ids, ids[1:])) if p in merges]
    heapq.heapify(heap)
    while heap:
        rank, i = heapq.heappop(heap)
        j = nxt[i] if alive[i] else n
        entry = merges.get((val[i], val[j])) if j < n else None
        if entry is None or entry[0] != rank:
            continue  # stale: a neighbour was merged away or changed since this entry was pushed
        val[i] = entry[1]
        alive[j] = False
        nxt[i] = nxt[j]
        if nxt[j] < n:
            prv[nxt[j]] = i
        for a in (prv[i], i):
            if a >= 0 and nxt[a] < n and (val[a], val[nxt[a]]) in merges:
                heapq.heappush(heap, (merges[(val[a], val[nxt[a]])][0], a))
    return [v for v, keep in zip(val, alive) if keep]


# ---------------------------------------------------------------------------------------------
# Many pre-tokens at once
# ---------------------------------------------------------------------------------------------
NO_RANK = np.iinfo(np.int32).max  # the rank of a pair without a merge: above every real rank


class PairRanks:
    """A merge table in numpy arrays, to look up the ranks of many pairs in one call.

    The pairs are keys `left * n_ids + right` of an `IntTable` whose values are ranks, and
    `merged[rank]` is the id a merge makes. Pairs of two single bytes, which every pre-token starts
    with, also get a dense table.

    >>> table = PairRanks({(1, 2): (0, 4), (4, 3): (1, 5)}, byte_ids=list(range(256)), n_ids=6)
    >>> table.ranks(np.array([1, 4, 2]), np.array([2, 3, 1])).tolist() == [0, 1, NO_RANK]
    True
    """

    def __init__(self, merges: MergeTable, byte_ids: list[int], n_ids: int):
        self.n_ids = n_ids

        def columns(pairs) -> np.ndarray:  # `len(merges)` pairs of ints -> their two columns
            return np.fromiter(chain.from_iterable(pairs), np.int64, 2 * len(merges)).reshape(-1, 2).T

        (left, right), (ranks, merged) = columns(merges), columns(merges.values())
        self.merged = np.zeros(len(merges) and ranks.max() + 1, np.int32)
        self.merged[ranks] = merged
        self._table = IntTable(left * n_ids + right, ranks)
        self.byte_ids = np.array(byte_ids, np.int32)
        self.byte_pair_ranks = self.ranks(np.repeat(self.byte_ids, 256), np.tile(self.byte_ids, 256))

    def ranks(self, left: np.ndarray, right: np.ndarray) -> np.ndarray:
        """The rank of each pair `(left[i], right[i])`, or `NO_RANK` where it has no merge."""
        return self._table.get(left.astype(np.int64) * self.n_ids + right, NO_RANK)


# ---------------------------------------------------------------------------------------------
# Whole tokens among many pre-tokens
# ---------------------------------------------------------------------------------------------
class WholeTokens:
    """Which of many pre-tokens are whole tokens, in a few numpy calls: `tokens` maps each token
    whose bytes merge into itself (and that is one pre-token) to its id.

    The tokens' bytes lie end to end in one array, and an `IntTable` maps the hash of each
    (`substring_hashes`) to its id. A pre-token whose hash is found is compared byte for byte
    with the token found, so a hash collision can never give a wrong id.

    >>> whole = WholeTokens({b" cat": 9, b"a": 3})
    >>> data = np.frombuffer(b" cat cab", np.uint8)
    >>> whole.ids(data, np.array([0, 4, 2]), np.array([4, 8, 3])).tolist()
    [9, -1, 3]
    """

    def __init__(self, tokens: dict[bytes, int]):
        lengths = np.fromiter(map(len, tokens), np.int64, len(tokens))
        ids = np.fromiter(tokens.values(), np.int64, len(tokens))
        self._bytes = np.frombuffer(b"".join(tokens), np.uint8)
        starts = np.cumsum(lengths) - lengths
        size = int(ids.max()) + 1 if len(ids) else 0
        self._start, self._length = np.zeros(size, np.int64), np.zeros(size, np.int32)
        self._start[ids], self._length[ids] = starts, lengths
        self._table = IntTable(substring_hashes(self._bytes, starts, starts + lengths), ids)

    def ids(self, data: np.ndarray, starts: np.ndarray, ends: np.ndarray,
            hashes: np.ndarray | None = None) -> np.ndarray:
        """The id of each pre-token `data[starts[i]:ends[i]]` that is a whole token, else -1."""
        if hashes is None:
            hashes = substring_hashes(data, starts, ends)
        ids = self._table.get(hashes, -1).astype(np.int64)
        found = np.flatnonzero(ids >= 0)
        found = found[self._length[ids[found]] == ends[found] - starts[found]]
        same = substrings_equal(data, starts[found], self._bytes, self._start[ids[found]], ends[found] - starts[found])
        out = np.full(len(starts), -1, np.int64)
        out[found[same]] = ids[found[same]]
        return out


def merge_many(words: list[bytes], table: PairRanks) -> list[list[int]]:
    """`merge_plain` of every word (the UTF-8 bytes of a non-empty pre-token), all at once.

    All the words' ids lie end to end in one array, with the rank of each pair beside it. Each
    round every unfinished word finds its lowest rank (`np.minimum.reduceat`) and merges every
    occurrence of that pair, left to right, exactly as `merge_plain` does; only the pairs next
    to a merge are looked up again. A word without a merge left is finished and leaves the
    arrays. The rounds number the merges of the busiest word (so long words belong to
    `merge_heap`), and each costs a few numpy calls over the words still merging.

    >>> vocab = {(ord("a"), ord("b")): (0, 256), (256, ord("c")): (1, 257)}
    >>> merge_many([b"abc", b"x", b"abab"], PairRanks(vocab, list(range(256)), 258))
    [[257], [120], [256, 256]]
    """
    if not words:
        return []
    lengths = np.fromiter(map(len, words), np.int64, len(words))
    data = np.frombuffer(b"".join(words), np.uint8)
    starts = np.cumsum(lengths) - lengths
    # first[i]: position i starts a word; first[n] marks the end, so (i, i + 1) lies inside a
    # word exactly when first[i + 1] is False.
    first = np.zeros(len(data) + 1, bool)
    first[starts] = first[-1] = True
    ids = table.byte_ids[data]
    rank = np.full(len(data), NO_RANK, np.int32)  # rank[i]: the rank of the pair (ids[i], ids[i + 1])
    inner = np.flatnonzero(~first[1:])
    rank[inner] = table.byte_pair_ranks[data[inner].astype(np.int32) * 256 + data[inner + 1]]

    word = np.arange(len(words))  # which word each row of `starts` is
    finished: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []  # (words, their lengths, their ids)
    while len(word):
        best = np.minimum.reduceat(rank, starts)
        done = best == NO_RANK
        at = _left_to_right(np.flatnonzero(rank == np.repeat(np.where(done, -1, best), lengths)))
        gone = np.repeat(done, lengths)  # positions that leave the arrays after this round
        if done.any():
            finished.append((word[done], lengths[done], ids[gone]))
            word = word[~done]

        # Merge the pair (at, at + 1) into `at`: the pairs (left, at) and (at, right) change.
        ids[at] = table.merged[rank[at]]
        gone[at + 1] = True
        rank[at] = NO_RANK
        right = at[~first[at + 2]]  # `at + 2` is in the same word: `at` gets a new right pair
        rank[right] = table.ranks(ids[right], ids[right + 2])
        # A left neighbour `at - 1` pairs with the merged id now. (Were `at - 1` merged away into
        # `at - 2` this round, the rank written here leaves with it, and `at - 2` has already
        # looked up its pair with `at` above, as its right pair.)
        inner = at[~first[at]]
        rank[inner - 1] = table.ranks(ids[inner - 1], ids[inner])

        keep = np.flatnonzero(~gone)
        ids, rank, first = ids[keep], rank[keep], np.append(first[keep], True)
        starts = np.flatnonzero(first[:-1])
        lengths = np.diff(starts, append=len(ids))

    words_in_order, lengths, ids = map(np.concatenate, zip(*finished))
    ends, flat, out = np.cumsum(lengths), ids.tolist(), [None] * len(words)
    for w, start, end in zip(words_in_order.tolist(), (ends - lengths).tolist(), ends.tolist()):
        out[w] = flat[start:end]
    return out


def _left_to_right(at: np.ndarray) -> np.ndarray:
    """Of the sorted positions where a word's chosen pair occurs, those a left-to-right scan
    merges. Occurrences overlap only for a pair `(x, x)` in a run `x x x ...`, where the scan
    takes every other one from the run's start.

    >>> _left_to_right(np.array([1, 2, 3, 7, 8])).tolist()
    [1, 3, 7]
    """
    new_run = np.ones(len(at), bool)
    new_run[1:] = np.diff(at) != 1
    run_start = np.maximum.accumulate(np.where(new_run, at, 0))
    return at[(at - run_start) % 2 == 0]
