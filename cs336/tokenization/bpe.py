"""Byte-level BPE training.

The idea, on the words `low` x5 and `lower` x2 (pre-tokens with their counts):

    start from bytes   l o w (5)   l o w e r (2)
    most frequent pair (l, o): 7  ->  merge 1 = (b"l", b"o")   lo w (5)   lo w e r (2)
    most frequent pair (lo, w): 7 ->  merge 2 = (b"lo", b"w")  low (5)    low e r (2)
    ...                                                        until the vocabulary is full

`train_bpe` does exactly this, with the handout's rules: the text is first split on the special
tokens and pre-tokenized with the GPT-2 pattern (`pretokenize.py`), pairs never cross a pre-token,
and among equally frequent pairs the lexicographically greater one (as a tuple of bytes) wins.

Two things make it fast without changing the result (tests/naive_bpe.py is the plain version
that recounts everything each step; the tests check both give the same merges):

- pre-tokens are counted once, in parallel over exact chunks of the file, and each distinct
  pre-token is stored once with its count;
- after a merge only the words that contain the merged pair are touched, and the pair counts are
  *updated* (`_merge_pair`), not recounted; a heap finds the most frequent pair, and entries made
  stale by an update are skipped or re-filed when they come to the top (`_pop_best_pair`).

Token ids: 0..255 are the bytes, then one id per merge in creation order, then the special
tokens. Every token has distinct bytes (a bijection).

Inside the merge loop a word is a `str` whose characters are token ids (`chr(id)`), and a pair is
a 2-character `str`. Merging a pair is then `word.replace(pair, new)`: exactly BPE's
left-to-right, non-overlapping replacement, done in C. Byte strings map onto this for free
(`b"low".decode("latin-1")` is the word of byte ids 108, 111, 119).
"""

from __future__ import annotations

import gc
import heapq
import json
import os
import time
from collections import defaultdict

from tqdm import tqdm

from cs336.errors import CS336Error, input_file
from cs336.outputs import output_dir
from cs336.tokenization.files import MERGES_FILE, STATS_FILE, VOCAB_FILE, save_vocab_merges
from cs336.tokenization.pretokenize import count_pretokens_in_file, peak_rss_bytes, reset_peak_rss


# Heap order must put the *greater* bytes first on ties, but heapq pops the smallest. So a token's
# heap key is its bytes "inverted": each byte b becomes chr(255 - b), and a final chr(256) makes a
# prefix sort after its extensions (b"ab" < b"abc", so its key must be greater).
_INVERT = {b: 255 - b for b in range(256)}


def _heap_key(token: bytes) -> str:
    """A string that sorts in the *reverse* order of `token`.

    >>> sorted([b"a", b"ab", b"b"], key=_heap_key)
    [b'b', b'ab', b'a']
    """
    return token.decode("latin-1").translate(_INVERT) + "\u0100"


def _merge_pair(
    pair: str,
    new: str,
    words: list[str],
    counts: list[int],
    pair_counts: dict[str, int],
    pair_words: dict[str, set[int]],
) -> set[str]:
    """Merge `pair` into token `new` in every word that has it, updating the pair statistics.

    Words and pairs are strings of token ids (see the module docstring). `pair_counts[p]` is how
    often pair `p` occurs, weighted by word counts; `pair_words[p]` holds the indices of the
    words that contain `p` (it may also hold words that no longer do: they are skipped here,
    which is cheaper than keeping the sets exact). Returns the pairs that contain `new`: the only
    pairs whose counts grew, so the only ones the heap must hear about.

    Worked example, merging (l, o) -> L in `l o w` (count 5) and `l o l o` (count 1):

        before  (l,o): 5 + 2 = 7   (o,w): 5   (o,l): 1
        l o w   -> L w      takes away (l,o) 5, (o,w) 5      adds (L,w) 5
        l o l o -> L L      takes away (l,o) 2, (o,l) 1      adds (L,L) 1
        after   (l,o): 0   (o,w): 0   (o,l): 0   (L,w): 5   (L,L): 1

    >>> words, counts = ["low", "lolo"], [5, 1]
    >>> pair_counts = defaultdict(int, {"lo": 7, "ow": 5, "ol": 1})
    >>> pair_words = defaultdict(set, {"lo": {0, 1}, "ow": {0}, "ol": {1}})
    >>> sorted(_merge_pair("lo", "L", words, counts, pair_counts, pair_words))
    ['LL', 'Lw']
    >>> words, {p: c for p, c in pair_counts.items() if c}
    (['Lw', 'LL'], {'Lw': 5, 'LL': 1})

    Only the words containing (l, o) were visited; every other word and count is untouched.
    """
    touched: set[str] = set()
    for i in pair_words.pop(pair, ()):
        word = words[i]
        first = word.find(pair)
        if first < 0:
            continue  # a stale index: this word lost the pair to an earlier merge
        merged = word.replace(pair, new)
        count = counts[i]
        # Before the first occurrence and after the last one, the old and new words have the
        # same pairs. In between (with one neighbour on each side) take away every old pair and
        # add every new one; unchanged pairs there cancel out, simpler than tracking each one.
        lo = max(first - 1, 0)
        hi = word.rfind(pair) + 3
        old_part = word[lo:hi]
        new_part = merged[lo : hi - (len(word) - len(merged))]
        for k in range(len(old_part) - 1):
            pair_counts[old_part[k : k + 2]] -= count
        for k in range(len(new_part) - 1):
            p = new_part[k : k + 2]
            pair_counts[p] += count
            if new in p:
                pair_words[p].add(i)
                touched.add(p)
        words[i] = merged
    return touched


def _pop_best_pair(heap: list[tuple[int, str, str, str]], pair_counts: dict[str, int]) -> str | None:
    """Pop the most frequent pair (ties: greater bytes) from the heap, or None when none is left.

    Heap entries are `(-count, key(a), key(b), pair)`. Counts only grow for pairs that contain
    the newest token, and those are pushed again when they grow, so every pair has an entry at
    least as large as its true count. An entry whose count is out of date is therefore too high:
    when it reaches the top it is re-filed with the true count (or dropped at zero), and the
    first entry that is up to date is the true maximum.
    """
    while heap:
        neg_count, key_a, key_b, pair = heapq.heappop(heap)
        true_count = pair_counts.get(pair, 0)
        if true_count == -neg_count and true_count > 0:
            return pair
        if true_count > 0:
            heapq.heappush(heap, (-true_count, key_a, key_b, pair))
    return None


def _check_arguments(input_path, vocab_size: int, special_tokens: list[str]) -> None:
    input_file(input_path)
    minimum = 256 + len(special_tokens)
    if vocab_size < minimum:
        raise CS336Error(
            f"vocab_size {vocab_size} is too small: the 256 bytes and {len(special_tokens)} special "
            f"token(s) alone need {minimum}"
        )
    for tok in special_tokens:
        if not isinstance(tok, str) or not tok:
            raise CS336Error(f"special tokens must be non-empty strings, got {tok!r}")


def train_bpe(
    input_path: str | os.PathLike,
    vocab_size: int,
    special_tokens: list[str],
    *,
    num_workers: int | None = None,
    progress: bool = False,
    stats: dict | None = None,
    chunk_bytes: int = 1 << 20,
) -> tuple[dict[int, bytes], list[tuple[bytes, bytes]]]:
    """Train a byte-level BPE on the UTF-8 text file `input_path`.

    Returns `(vocab, merges)`: `vocab` maps ids to token bytes (the 256 bytes, the merges, the
    special tokens; `vocab_size` entries at most, fewer only if the text runs out of pairs) and
    `merges` lists the merged pairs in creation order.

    Options: `num_workers` processes pre-tokenize the file (None: all CPUs, 1: no worker
    processes); `progress` shows tqdm bars; `stats`, a dict, receives the run's measurements
    (seconds per phase, peak memory of all processes, longest token, ...); `chunk_bytes` is the
    size of the pieces the workers count (memory use grows with it, not with the file).
    """
    special_tokens = list(dict.fromkeys(special_tokens or []))
    _check_arguments(input_path, vocab_size, special_tokens)
    # The merge loop makes many small tuples and no reference cycles: the cyclic garbage
    # collector would only rescan them (and every other live object) again and again.
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        return _train(input_path, vocab_size, special_tokens, num_workers, progress, stats, chunk_bytes)
    finally:
        if gc_was_enabled:
            gc.enable()


def _train(input_path, vocab_size, special_tokens, num_workers, progress, stats, chunk_bytes):
    """`train_bpe` after its arguments are checked (same arguments, same result)."""
    reset_peak_rss()
    t0 = time.perf_counter()

    # 1. Pre-tokenize: distinct pre-tokens with their counts, each a word of byte ids.
    info: dict = {}
    pretoken_counts = count_pretokens_in_file(
        input_path, special_tokens, num_workers=num_workers, chunk_bytes=chunk_bytes, progress=progress, info=info
    )
    words = [p.decode("latin-1") for p in pretoken_counts]  # byte b -> character chr(b), id b
    counts = list(pretoken_counts.values())
    t1 = time.perf_counter()

    # 2. Count every adjacent pair once; from here on the counts are only updated.
    pair_counts: dict[str, int] = defaultdict(int)
    pair_words: dict[str, set[int]] = defaultdict(set)
    for i, (word, count) in enumerate(zip(words, counts)):
        for k in range(len(word) - 1):
            pair_counts[word[k : k + 2]] += count
            pair_words[word[k : k + 2]].add(i)
    vocab: dict[int, bytes] = {i: bytes([i]) for i in range(256)}
    keys = [_heap_key(vocab[i]) for i in range(256)]
    heap = [(-c, keys[ord(p[0])], keys[ord(p[1])], p) for p, c in pair_counts.items()]
    heapq.heapify(heap)

    # 3. Merge the most frequent pair until the vocabulary is full.
    merges: list[tuple[bytes, bytes]] = []
    id_of: dict[bytes, int] = {v: k for k, v in vocab.items()}
    target = vocab_size - sum(1 for t in special_tokens if t.encode("utf-8") not in id_of)
    bar = None
    if progress:

        bar = tqdm(total=max(0, target - len(vocab)), desc="merges")
    while len(vocab) < target:
        pair = _pop_best_pair(heap, pair_counts)
        if pair is None:
            break  # every pre-token is a single token already
        a, b = vocab[ord(pair[0])], vocab[ord(pair[1])]
        merges.append((a, b))
        # Two different pairs can spell the same bytes; the token then keeps its first id.
        new = id_of.get(a + b)
        if new is None:
            new = id_of[a + b] = len(vocab)
            vocab[new] = a + b
            keys.append(_heap_key(a + b))
            if bar is not None:
                bar.update(1)
        for p in _merge_pair(pair, chr(new), words, counts, pair_counts, pair_words):
            heapq.heappush(heap, (-pair_counts[p], keys[ord(p[0])], keys[ord(p[1])], p))
    if bar is not None:
        bar.close()
    for tok in special_tokens:
        raw = tok.encode("utf-8")
        if raw not in id_of:
            id_of[raw] = len(vocab)
            vocab[len(vocab)] = raw
    t2 = time.perf_counter()

    if stats is not None:
        main_peak = peak_rss_bytes()
        stats.update(
            input_bytes=os.path.getsize(input_path),
            vocab_size=len(vocab),
            num_merges=len(merges),
            distinct_pretokens=len(words),
            total_pretokens=sum(counts),
            num_workers=info["num_workers"],
            chunks=info["chunks"],
            pretokenize_seconds=t1 - t0,
            merge_seconds=t2 - t1,
            total_seconds=t2 - t0,
            peak_memory_main_bytes=main_peak,
            peak_memory_workers_bytes=info["worker_memory_bytes"],
            peak_memory_bytes=main_peak + info["worker_memory_bytes"],
            # The longest learned token (the first made, on ties); special tokens don't count.
            longest_token=max((vocab[id_of[a + b]] for a, b in merges), key=len, default=b""),
        )
    return vocab, merges


def train_bpe_to_dir(
    input_path: str | os.PathLike,
    vocab_size: int,
    special_tokens: list[str],
    out_dir: str | os.PathLike,
    *,
    num_workers: int | None = None,
    progress: bool = True,
) -> dict:
    """Train (see `train_bpe`) and write `vocab.json`, `merges.txt` (GPT-2 format) and `stats.json`.

    Returns the stats that were written; the longest token is stored as text (invalid UTF-8 as
    `\\x..` escapes) beside its length in bytes.
    """


    output_dir(out_dir, "tokenizer directory", create=False)  # a bad --out fails before the training
    stats: dict = {}
    vocab, merges = train_bpe(
        input_path, vocab_size, special_tokens, num_workers=num_workers, progress=progress, stats=stats
    )
    output_dir(out_dir, "tokenizer directory")
    save_vocab_merges(vocab, merges, os.path.join(out_dir, VOCAB_FILE), os.path.join(out_dir, MERGES_FILE))
    longest = stats.pop("longest_token")
    stats.update(
        input_path=os.fspath(input_path),
        special_tokens=list(special_tokens),
        longest_token=longest.decode("utf-8", errors="backslashreplace"),
        longest_token_bytes=len(longest),
    )
    with open(os.path.join(out_dir, STATS_FILE), "w", encoding="utf-8") as f:
        json.dump(stats, f, indent=2, ensure_ascii=False)
        f.write("\n")
    return stats
