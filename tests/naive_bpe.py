"""A slow, obviously correct byte-level BPE trainer: the specification `train_bpe` is tested against.

It reads the whole file, and before every merge recounts every pair of every pre-token from
scratch. No chunking, no incremental updates, no heap; it shares no code with the package.
"""

from __future__ import annotations

from collections import Counter

import regex

PATTERN = regex.compile(r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+""")


def naive_pretoken_counts(text: str, special_tokens: list[str]) -> Counter[tuple[bytes, ...]]:
    """Each pre-token as a tuple of single bytes, with its count."""
    if special_tokens:
        longest_first = sorted(special_tokens, key=len, reverse=True)
        pieces = regex.split("|".join(regex.escape(t) for t in longest_first), text)
    else:
        pieces = [text]
    counts: Counter[tuple[bytes, ...]] = Counter()
    for piece in pieces:
        for pretoken in PATTERN.findall(piece):
            counts[tuple(bytes([b]) for b in pretoken.encode("utf-8"))] += 1
    return counts


def naive_train_bpe(input_path, vocab_size: int, special_tokens: list[str], log: list | None = None):
    """`(set of token bytes, merges)`; `log`, if given, receives `(pair, count, tied)` per merge."""
    with open(input_path, encoding="utf-8") as f:
        text = f.read()
    words = naive_pretoken_counts(text, special_tokens)
    tokens = {bytes([b]) for b in range(256)} | {t.encode("utf-8") for t in special_tokens}
    merges: list[tuple[bytes, bytes]] = []
    while len(tokens) < vocab_size:
        pairs: Counter[tuple[bytes, bytes]] = Counter()
        for word, count in words.items():
            for pair in zip(word, word[1:]):
                pairs[pair] += count
        if not pairs:
            break
        best = max(pairs, key=lambda p: (pairs[p], p))
        merges.append(best)
        if log is not None:
            log.append((best, pairs[best], sum(c == pairs[best] for c in pairs.values()) > 1))
        tokens.add(best[0] + best[1])
        merged_words: Counter[tuple[bytes, ...]] = Counter()
        for word, count in words.items():
            if best not in zip(word, word[1:]):
                merged_words[word] += count
                continue
            out, i = [], 0
            while i < len(word):
                if i + 1 < len(word) and (word[i], word[i + 1]) == best:
                    out.append(best[0] + best[1])
                    i += 2
                else:
                    out.append(word[i])
                    i += 1
            merged_words[tuple(out)] += count
        words = merged_words
    return tokens, merges
