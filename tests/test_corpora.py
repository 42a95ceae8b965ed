"""The corpus measures notebook 09 compares OpenWebText and TinyStories with."""

from __future__ import annotations

import math

import numpy as np
import pytest

from cs336.experiments.corpora import (
    bits_per_byte, compressed_bits_per_byte, distinct_pretokens_per_kb, most_split_words, pieces,
    seen_ngram_share, tokens_per_word, unigram_cross_entropy, word_coverage,
)
from cs336.tokenization.tokenizer import Tokenizer


def test_bits_per_byte_converts_nats_per_token():
    assert bits_per_byte(math.log(2), tokens=10, nbytes=10) == pytest.approx(1.0)
    assert bits_per_byte(2 * math.log(2), tokens=100, nbytes=400) == pytest.approx(0.5)  # 4 bytes a token


def test_unigram_cross_entropy_is_the_smoothed_training_frequencies():
    train, valid = np.array([0, 0, 0, 1]), np.array([0, 1, 2])
    probs = np.array([4, 2, 1]) / 7  # add-one over a vocabulary of 3
    assert unigram_cross_entropy(train, valid, 3) == pytest.approx(-np.log(probs).mean())
    uniform = np.arange(8)
    assert unigram_cross_entropy(uniform, uniform, 8) == pytest.approx(math.log(8))


def test_seen_ngram_share_counts_each_held_out_position():
    train = np.array([1, 2, 3, 4], dtype=np.uint16)
    assert seen_ngram_share(train, np.array([1, 2, 3, 9]), 2) == pytest.approx(2 / 3)  # (1,2) (2,3) seen, (3,9) not
    assert seen_ngram_share(train, np.array([2, 1]), 2) == 0.0  # order matters
    assert seen_ngram_share(train, np.array([4, 4, 4]), 1) == 1.0
    with pytest.raises(ValueError):
        seen_ngram_share(train, train, 5)


def test_word_coverage_and_distinct_pretokens():
    assert word_coverage("the cat sat", "the dog sat the") == 0.75
    assert distinct_pretokens_per_kb("a a a a", nbytes=3) == pytest.approx(2 / 0.003)  # "a a": 'a', ' a'
    assert distinct_pretokens_per_kb("ab cd ab cd") == pytest.approx(3 / 0.011)  # 'ab', ' cd', ' ab'


def test_compressed_bits_per_byte_drops_when_the_text_was_seen_before():
    rng = np.random.default_rng(0)
    text = bytes(rng.integers(97, 123, 5000, dtype=np.uint8))
    assert compressed_bits_per_byte(text, given=text) < 0.2 * compressed_bits_per_byte(text)


def test_word_pieces_and_tokens_per_word():
    vocab = {i: bytes([i]) for i in range(256)}
    vocab[256] = b"ab"
    tok = Tokenizer(vocab, [(b"a", b"b")])
    assert pieces(tok, "abc") == ["ab", "c"]
    assert tokens_per_word(tok, "ab ab") == 1.5  # 'ab', then ' ab' as ' ', 'ab': 3 tokens, 2 words
    assert most_split_words(tok, "ab xyz, ab xyz xy", k=2) == [(" xyz", 4, 2), (" xy", 3, 1)]
    assert most_split_words(tok, "ab xyz, ab xyz xy", min_count=2) == [(" xyz", 4, 2)]  # "ab" and " ab" once each
