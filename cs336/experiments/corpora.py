"""Measures of a corpus and of a model's loss on it, for comparing two corpora (notebook 09).

A language model's loss is in nats per token, and a token holds a different number of bytes under
each tokenizer: `bits_per_byte` puts losses from different tokenizers on one scale. The others
measure how hard a held-out text is before any model sees it: the loss of the best unigram model
(`unigram_cross_entropy`), how much of it the training text already holds (`word_coverage`,
`seen_ngram_share`), how varied its words are (`distinct_pretokens_per_kb`), and how well a general
compressor predicts it from the training text (`compressed_bits_per_byte`).

>>> round(bits_per_byte(math.log(2), tokens=1, nbytes=2), 3)   # 1 bit a token, 2 bytes a token
0.5
"""

from __future__ import annotations

import lzma
import math

import numpy as np

from cs336.tokenization import END_OF_TEXT
from cs336.tokenization.pretokenize import count_pretokens_fast


def bits_per_byte(loss: float, tokens: int, nbytes: int) -> float:
    """A loss in nats per token as bits per byte of text: `loss / ln 2 · tokens / bytes`, where the
    text of `nbytes` UTF-8 bytes is `tokens` tokens long under the model's tokenizer."""
    return loss / math.log(2) * tokens / nbytes


def unigram_cross_entropy(train_ids: np.ndarray, valid_ids: np.ndarray, vocab_size: int) -> float:
    """Nats per token of `valid_ids` under the unigram distribution of `train_ids` (add-one
    smoothed, so an id never seen in training costs a finite amount): the loss of a model that
    ignores the context, which a language model must beat."""
    counts = np.bincount(np.asarray(train_ids, dtype=np.int64), minlength=vocab_size).astype(np.float64)
    probs = (counts + 1) / (counts.sum() + vocab_size)
    return float(-np.log(probs[np.asarray(valid_ids, dtype=np.int64)]).mean())


def _ngram_keys(ids: np.ndarray, n: int) -> np.ndarray:
    """Each n-gram of `ids` (all < 2**16) as one integer."""
    if not 1 <= n <= 4:
        raise ValueError(f"n must be 1..4 (four 16-bit ids fill 64 bits), got {n}")
    ids = np.asarray(ids, dtype=np.uint64)
    if ids.size and int(ids.max()) >= 1 << 16:
        raise ValueError("ids must be below 65,536")
    windows = np.lib.stride_tricks.sliding_window_view(ids, n)
    return sum(windows[:, k] << np.uint64(16 * k) for k in range(n))


def seen_ngram_share(train_ids: np.ndarray, valid_ids: np.ndarray, n: int) -> float:
    """The share of the held-out text's n-grams of token ids (one per position) that occur
    somewhere in the training ids: what copying from the training text could predict."""
    held_out = _ngram_keys(valid_ids, n)
    return float(np.isin(held_out, np.unique(_ngram_keys(train_ids, n))).mean())


def word_coverage(train_text: str, valid_text: str) -> float:
    """The share of the held-out text's words (split at whitespace, each occurrence counted) that
    occur in the training text."""
    seen = set(train_text.split())
    words = valid_text.split()
    return sum(w in seen for w in words) / len(words)


def distinct_pretokens_per_kb(text: str, nbytes: int = 100_000, special_tokens: tuple[str, ...] = (END_OF_TEXT,)) -> float:
    """Distinct pre-tokens (GPT-2 regex) per 1,000 bytes in the first `nbytes` of `text` (a
    distinct count grows more slowly than the text, so texts are compared over equal lengths)."""
    head = text.encode("utf-8")[:nbytes].decode("utf-8", errors="ignore")
    return len(count_pretokens_fast(head, list(special_tokens))) / (len(head.encode("utf-8")) / 1000)


def compressed_bits_per_byte(text: bytes, given: bytes = b"") -> float:
    """Bits per byte that LZMA (preset 9, a 64 MiB window) needs for `text` after it has seen
    `given`: a model-free estimate of how predictable the text is from what precedes it."""
    before = len(lzma.compress(given, preset=9)) if given else 0
    return (len(lzma.compress(given + text, preset=9)) - before) * 8 / len(text)


def pieces(tokenizer, text: str) -> list[str]:
    """The tokens `tokenizer` splits `text` into, each decoded on its own."""
    return [tokenizer.decode([i]) for i in tokenizer.encode(text)]


def tokens_per_word(tokenizer, text: str) -> float:
    """Tokens of `text` per whitespace-separated word."""
    return len(tokenizer.encode(text)) / len(text.split())


def most_split_words(tokenizer, text: str, k: int = 10, min_count: int = 1) -> list[tuple[str, int, int]]:
    """The `k` distinct words of `text` occurring at least `min_count` times that `tokenizer` splits
    into the most tokens, as (word, tokens, occurrences), most tokens first, then most frequent, then
    alphabetical. A word is a pre-token of letters only (with the space before it, as the tokenizer
    sees it); `min_count=2` leaves out one-off strings such as identifiers."""
    counts = {w: n for w, n in count_pretokens_fast(text, [END_OF_TEXT]).items() if w.strip().isalpha() and n >= min_count}
    lengths = {w: len(tokenizer.encode(w)) for w in counts}
    ranked = sorted(lengths, key=lambda w: (-lengths[w], -counts[w], w))
    return [(w, lengths[w], counts[w]) for w in ranked[:k]]
