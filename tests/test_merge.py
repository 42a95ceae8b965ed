"""Specification of `merge.py`: every fast merge gives the ids of a naive per-word BPE merge."""

import random

import numpy as np
import pytest

from cs336 import Tokenizer
from cs336.tokenization.merge import NO_RANK, PairRanks, merge_fast, merge_heap, merge_many, merge_plain
from cs336.tokenization.pretokenize import GPT2_REGEX

from conftest import FIXTURES
from test_tokenizer import fuzz_texts


def naive_merger(merges: list[tuple[bytes, bytes]]):
    """BPE of one pre-token, spelled out on bytes and sharing no code with the package: while some
    adjacent pair has a merge, take the earliest-made one and merge all its occurrences, left to
    right."""
    rank = {}
    for r, pair in enumerate(merges):
        rank.setdefault(pair, r)

    def merge(word: bytes) -> list[bytes]:
        parts = [bytes([b]) for b in word]
        while True:
            ranked = [rank[pair] for pair in zip(parts, parts[1:]) if pair in rank]
            if not ranked:
                return parts
            a, b = merges[min(ranked)]
            out, i = [], 0
            while i < len(parts):
                if parts[i : i + 2] == [a, b]:
                    out.append(a + b)
                    i += 2
                else:
                    out.append(parts[i])
                    i += 1
            parts = out

    return merge


def tokenizer_of(merges: list[tuple[bytes, bytes]]) -> Tokenizer:
    """A tokenizer whose vocab is the 256 bytes plus what `merges` make."""
    vocab = {i: bytes([i]) for i in range(256)}
    for a, b in merges:
        if a + b not in vocab.values():
            vocab[len(vocab)] = a + b
    return Tokenizer(vocab, merges)


# Merges that build on each other, so that a word takes many rounds: runs of "a" double in length
# (the pair (x, x) overlaps itself in "aaa"), and "b" + runs join them. Two merges rank out of
# left-to-right order, and one is repeated (only its first rank counts).
CASCADE = [(b"a", b"a"), (b"aa", b"aa"), (b"aaaa", b"aaaa"), (b"b", b"aa"), (b"baa", b"aa"),
           (b"aaaaaaaa", b"aaaaaaaa"), (b"c", b"b"), (b"a", b"b"), (b"cb", b"aaaa"), (b"a", b"a"),
           (b"\xc3", b"\xa9"), ("é".encode(), "é".encode()),  # é é
           (b"\xf0", b"\x9f"), (b"\x98", b"\x80"), (b"\xf0\x9f", b"\x98\x80")]  # 😀

CASCADE_WORDS = (
    [b"a" * n for n in range(1, 70)]
    + [b"b" + b"a" * n for n in range(0, 20)]
    + [b"ab" * n for n in range(1, 12)] + [b"cb" + b"a" * n for n in range(0, 12)]
    + ["é".encode() * n for n in range(1, 6)] + ["😀".encode() * n for n in range(1, 4)] + ["x😀é".encode()]
    + [b"aaa", b"aaa", b"baaaa", b"baaaa"]  # words repeated
    + [bytes([b]) for b in range(256)]
)


def ids_as_bytes(tok: Tokenizer, ids: list[int]) -> list[bytes]:
    return [tok.vocab[i] for i in ids]


def test_merge_many_equals_a_naive_merge_where_merges_cascade():
    tok, naive_merge = tokenizer_of(CASCADE), naive_merger(CASCADE)
    merged = merge_many(CASCADE_WORDS, tok._pair_ranks)
    assert len(merged) == len(CASCADE_WORDS)
    for word, ids in zip(CASCADE_WORDS, merged):
        assert ids_as_bytes(tok, ids) == naive_merge(word), word
        assert ids == merge_plain([tok._byte_ids[b] for b in word], tok._merges), word


def test_every_merge_equals_the_naive_merge_on_random_words_of_a_small_alphabet():
    """Words of a three-letter alphabet under the cascade hit overlapping pairs, merges next to
    each other in one round, and words that finish in different rounds."""
    tok, naive_merge = tokenizer_of(CASCADE), naive_merger(CASCADE)
    rng = random.Random(0)
    words = [bytes(rng.choice(b"abc") for _ in range(rng.randint(1, 80))) for _ in range(2000)]
    merged = merge_many(words, tok._pair_ranks)
    for word, ids in zip(words, merged):
        expected = naive_merge(word)
        assert ids_as_bytes(tok, ids) == expected, word
        for merge in (merge_plain, merge_fast, merge_heap):
            assert ids_as_bytes(tok, merge([tok._byte_ids[b] for b in word], tok._merges)) == expected, (merge, word)


@pytest.fixture(scope="module")
def gpt2() -> Tokenizer:
    return Tokenizer.from_files(FIXTURES / "gpt2_vocab.json", FIXTURES / "gpt2_merges.txt")


def test_merge_many_equals_the_naive_merge_on_gpt2_pretokens(gpt2):
    rng = random.Random(1)
    words = [w.encode("utf-8") for t in fuzz_texts(300, seed=14) for w in GPT2_REGEX.findall(t)]
    words += ["".join(rng.choice("aeiou tnsrl") for _ in range(rng.randint(50, 300))).encode() for _ in range(20)]
    words += [b"9" * 500, b" " * 200, "🤓".encode() * 30, b"!?" * 40]
    naive_merge = naive_merger(gpt2.merges)
    for word, ids in zip(words, merge_many(words, gpt2._pair_ranks)):
        assert ids_as_bytes(gpt2, ids) == naive_merge(word), word


def test_merge_many_of_no_words_and_of_one():
    tok = tokenizer_of(CASCADE)
    assert merge_many([], tok._pair_ranks) == []
    assert merge_many([b"aaaa"], tok._pair_ranks) == [[tok._id_of[b"aaaa"]]]


def test_pair_ranks_find_every_merge_and_no_other_pair(gpt2):
    table = gpt2._pair_ranks
    pairs = np.array(list(gpt2._merges), dtype=np.int64)
    ranks = np.array([rank for rank, _ in gpt2._merges.values()])
    assert np.array_equal(table.ranks(pairs[:, 0], pairs[:, 1]), ranks)
    rng = np.random.default_rng(2)
    left, right = rng.integers(0, len(gpt2.vocab), (2, 100_000))
    expected = [gpt2._merges.get((a, b), (NO_RANK,))[0] for a, b in zip(left.tolist(), right.tolist())]
    assert table.ranks(left, right).tolist() == expected
    for a, b in [(0, 0), (255, 255)]:  # pairs of bytes come from a table of their own
        assert table.byte_pair_ranks[a * 256 + b] == gpt2._merges.get((gpt2._byte_ids[a], gpt2._byte_ids[b]), (NO_RANK,))[0]


@pytest.mark.parametrize("merges", [[], [(b"a", b"b")]], ids=["no merges", "one merge"])
def test_pair_ranks_of_tiny_merge_lists(merges):
    tok = tokenizer_of(merges)
    words = [b"ab", b"ba", b"abab", b"x"]
    assert merge_many(words, tok._pair_ranks) == [merge_plain([tok._byte_ids[b] for b in w], tok._merges) for w in words]
