"""Specification of byte-level BPE training (`train_bpe`) and its exact, chunked pre-tokenization.

The reference is tests/naive_bpe.py: it reads the whole text and recounts every pair before every
merge. `train_bpe` must produce the same merges and vocabulary on real corpora, whatever the
number of worker processes and however the file is chunked.
"""

from __future__ import annotations

import json
import random
import sys
from collections import defaultdict
from pathlib import Path

import pytest
import regex

from cs336.cli import main
from cs336.data import tiktoken_gpt2
from cs336.errors import CS336Error
from cs336.tokenization import END_OF_TEXT as EOT
from cs336.tokenization.bpe import _heap_key, _merge_pair, train_bpe
from cs336.tokenization.files import load_vocab_merges, save_vocab_merges
from cs336.tokenization.pretokenize import (
    _WHITESPACE,
    chunk_boundaries,
    count_pretokens,
    count_pretokens_fast,
    count_pretokens_in_file,
    is_safe_split,
    pretokenize,
    split_on_special_tokens,
)

sys.path.insert(0, str(Path(__file__).parent))
from conftest import FIXTURES, TINYSTORIES  # noqa: E402
from naive_bpe import naive_train_bpe  # noqa: E402


def _slice(path: Path, start: int, length: int, tmp_path: Path, name: str) -> Path:
    """Bytes [start, start+length) of a file, widened to whole UTF-8 characters, as a new file."""
    data = path.read_bytes()[start : start + length]
    out = tmp_path / name
    out.write_text(data.decode("utf-8", errors="ignore"), encoding="utf-8")
    return out


def _reference_counts(text: str, special_tokens) -> dict[bytes, int]:
    return {k.encode("utf-8"): v for k, v in count_pretokens(text, special_tokens).items()}


# ---------------------------------------------------------------------------------------------
# train_bpe equals the naive trainer
# ---------------------------------------------------------------------------------------------
CASES = [
    # (name, file or (file, start, length), vocab_size, special tokens, options)
    ("corpus.en, the course's known case", FIXTURES / "corpus.en", 500, [EOT], {}),
    ("tinystories_sample", FIXTURES / "tinystories_sample.txt", 400, [EOT], {"num_workers": 2, "chunk_bytes": 512}),
    ("german, no special tokens", FIXTURES / "german.txt", 300, [], {}),
    ("address, special token absent", FIXTURES / "address.txt", 330, [EOT], {"num_workers": 2, "chunk_bytes": 100}),
    (
        "TinyStories slice, overlapping special tokens",
        (TINYSTORIES / "TinyStories-train-2M.txt", 100_000, 40_000),
        420,
        [EOT, EOT + EOT],
        {"num_workers": 2, "chunk_bytes": 3000},
    ),
    (
        "TinyStories valid slice, one long document without special tokens",
        (TINYSTORIES / "TinyStories-valid-800K.txt", 0, 30_000),
        400,
        [],
        {"num_workers": 2, "chunk_bytes": 2000},
    ),
]


@pytest.mark.parametrize("name, source, vocab_size, special_tokens, options", CASES, ids=[c[0] for c in CASES])
def test_train_bpe_equals_naive_trainer_on_real_text(tmp_path, name, source, vocab_size, special_tokens, options):
    path = _slice(*source, tmp_path, "slice.txt") if isinstance(source, tuple) else source
    vocab, merges = train_bpe(path, vocab_size, special_tokens, **options)
    naive_tokens, naive_merges = naive_train_bpe(path, vocab_size, special_tokens)
    assert merges == naive_merges
    assert set(vocab.values()) == naive_tokens
    assert len(vocab) == vocab_size


def test_merges_agree_with_hf_tokenizers_up_to_tie_order(tmp_path):
    # HF's BpeTrainer uses the same GPT-2 pre-tokenization and the same greedy rule, but breaks
    # ties differently (by pair ids) and splits its training files into lines. On one line of
    # text the merges must agree up to the order of pairs tied on the same count: exactly until
    # the first tie, and as sets after every step where the count drops.
    tokenizers = pytest.importorskip("tokenizers")
    from tokenizers import models, pre_tokenizers, trainers

    from cs336.tokenization.files import string_to_token

    text = (FIXTURES / "corpus.en").read_text(encoding="utf-8").replace("\n", " ")
    path = tmp_path / "one_line.txt"
    path.write_text(text, encoding="utf-8")
    n = 50
    _, merges = train_bpe(path, 256 + n, [])
    log: list = []
    naive_train_bpe(path, 256 + n, [], log=log)
    counts = [count for _, count, _ in log]
    first_tie = next(i for i, (_, _, tied) in enumerate(log) if tied)
    assert first_tie >= 20  # the comparison is not vacuous

    hf = tokenizers.Tokenizer(models.BPE())
    hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    trainer = trainers.BpeTrainer(vocab_size=256 + n, initial_alphabet=alphabet, show_progress=False)
    hf.train_from_iterator([text], trainer)
    hf_merges = [m.split(" ") if isinstance(m, str) else m for m in json.loads(hf.to_str())["model"]["merges"]]
    hf_merges = [(string_to_token(a), string_to_token(b)) for a, b in hf_merges]
    assert len(hf_merges) == n
    assert merges[:first_tie] == hf_merges[:first_tie]
    for k in range(1, n):
        if counts[k - 1] > counts[k]:
            assert set(merges[:k]) == set(hf_merges[:k]), k


def test_overlapping_special_tokens_in_text_split_longest_first(tmp_path):
    # Runs of one, two and three end-of-text markers: the doubled token must win where it fits,
    # and no merge may see the markers' bytes.
    path = tmp_path / "eot.txt"
    path.write_text(f"low lower{EOT}{EOT}lowest{EOT}{EOT}{EOT} newer{EOT}new wider", encoding="utf-8")
    vocab, merges = train_bpe(path, 280, [EOT, EOT + EOT], num_workers=2, chunk_bytes=8)
    naive_tokens, naive_merges = naive_train_bpe(path, 280, [EOT, EOT + EOT])
    assert merges == naive_merges and set(vocab.values()) == naive_tokens
    assert not any(b"<" in a + b or b"|" in a + b for a, b in merges)


# ---------------------------------------------------------------------------------------------
# The BPE rules themselves, on hand-made text
# ---------------------------------------------------------------------------------------------
def test_ties_go_to_the_lexicographically_greater_pair(tmp_path):
    path = tmp_path / "tie.txt"
    path.write_text("ab cd", encoding="utf-8")  # (a,b), ( ,c), (c,d) all occur once
    _, merges = train_bpe(path, 257, [])
    assert merges == [(b"c", b"d")]


def test_heap_key_orders_tokens_in_reverse_byte_order():
    rng = random.Random(0)
    tokens = list({bytes(rng.choice(b"ab\x00\xff") for _ in range(rng.randint(1, 4))) for _ in range(300)})
    assert sorted(tokens, key=_heap_key) == sorted(tokens, reverse=True)


def test_merging_replaces_non_overlapping_pairs_left_to_right(tmp_path):
    # "aaa" has the pair (a, a) twice, overlapping: BPE merges the left one, giving "aa a";
    # " aaaa" gives " aa aa". Then three pairs are tied at 1 and the greatest wins each time.
    path = tmp_path / "a.txt"
    path.write_text("aaa aaaa", encoding="utf-8")
    _, merges = train_bpe(path, 259, [])
    assert merges == [(b"a", b"a"), (b"aa", b"aa"), (b"aa", b"a")]
    assert merges == naive_train_bpe(path, 259, [])[1]


def _recount(words, counts):
    pair_counts, pair_words = defaultdict(int), defaultdict(set)
    for i, (word, count) in enumerate(zip(words, counts)):
        for k in range(len(word) - 1):
            pair_counts[word[k : k + 2]] += count
            pair_words[word[k : k + 2]].add(i)
    return pair_counts, pair_words


def test_incremental_pair_updates_equal_a_full_recount_after_every_merge():
    rng = random.Random(0)
    words = ["".join(rng.choice("abc") for _ in range(rng.randint(1, 9))) for _ in range(300)]
    counts = [rng.randint(1, 5) for _ in words]
    pair_counts, pair_words = _recount(words, counts)
    for new in map(chr, range(ord("A"), ord("Z"))):
        live = sorted(p for p, c in pair_counts.items() if c > 0)
        pair = rng.choice(live)
        touched = _merge_pair(pair, new, words, counts, pair_counts, pair_words)
        expected_counts, expected_words = _recount(words, counts)
        assert {p: c for p, c in pair_counts.items() if c} == dict(expected_counts)
        assert all(pair_words[p] >= ws for p, ws in expected_words.items())  # may keep stale indices
        assert touched == {p for p in expected_counts if new in p}


def test_merges_never_cross_pretokens_or_special_tokens(tmp_path):
    path = tmp_path / "t.txt"
    path.write_text(f"x{EOT}y " * 50 + "xy", encoding="utf-8")
    vocab, merges = train_bpe(path, 300, [EOT])
    # "x" and "y" are adjacent only once (the final "xy"); "y" and " " never share a pre-token...
    assert (b"y", b" ") not in merges
    # ...and the special token is one entry, never merged with its neighbours.
    assert list(vocab.values()).count(EOT.encode()) == 1
    assert all(EOT.encode() not in a + b for a, b in merges)


def test_vocab_is_a_bijection_counting_bytes_merges_and_special_tokens(tmp_path):
    vocab, merges = train_bpe(FIXTURES / "tinystories_sample.txt", 300, [EOT, "<|pad|>"])
    assert len(vocab) == 300 == 256 + len(merges) + 2
    assert len(set(vocab.values())) == len(vocab)
    assert sorted(vocab) == list(range(300))
    assert {bytes([b]) for b in range(256)} | {EOT.encode(), b"<|pad|>"} <= set(vocab.values())
    assert all(vocab[256 + i] == a + b for i, (a, b) in enumerate(merges))


def test_training_stops_when_every_pretoken_is_one_token(tmp_path):
    path = tmp_path / "t.txt"
    path.write_text("abc abc", encoding="utf-8")  # pre-tokens "abc" and " abc"
    vocab, merges = train_bpe(path, 1000, [EOT])
    assert merges == [(b"b", b"c"), (b"a", b"bc"), (b" ", b"abc")]
    assert len(vocab) == 256 + 3 + 1


def test_stats_report_phases_memory_and_longest_token(tmp_path):
    stats: dict = {}
    vocab, merges = train_bpe(FIXTURES / "corpus.en", 400, [EOT], num_workers=2, chunk_bytes=30_000, stats=stats)
    assert stats["num_workers"] == 2 and stats["chunks"] >= 4
    assert stats["pretokenize_seconds"] > 0 and stats["merge_seconds"] > 0
    assert stats["peak_memory_bytes"] >= stats["peak_memory_main_bytes"] > 0
    learned = [vocab[256 + i] for i in range(len(merges))]
    assert stats["longest_token"] == max(learned, key=len)
    assert stats["num_merges"] == len(merges) == 400 - 257


# ---------------------------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------------------------
def test_missing_empty_and_too_small_inputs_are_one_line_errors(tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_bytes(b"")
    cases = [
        (tmp_path / "nope.txt", 300, [], "not found"),
        (empty, 300, [], "empty"),
        (FIXTURES / "german.txt", 256, [EOT], "too small"),
    ]
    for path, vocab_size, specials, words in cases:
        with pytest.raises(CS336Error, match=words) as e:
            train_bpe(path, vocab_size, specials)
        assert "\n" not in str(e.value)


@pytest.mark.parametrize("num_workers", [1, 2])
def test_invalid_utf8_names_the_file_and_byte_offset(tmp_path, num_workers):
    path = tmp_path / "bad.txt"
    path.write_bytes(b"hello world " * 100 + b"\xff\xfe" + b" more text" * 10)
    with pytest.raises(CS336Error, match=r"bad\.txt: invalid UTF-8 at byte offset 1200$"):
        train_bpe(path, 300, [], num_workers=num_workers, chunk_bytes=256)


# ---------------------------------------------------------------------------------------------
# Exact chunking of pre-tokenization
# ---------------------------------------------------------------------------------------------
ADVERSARIAL = [
    "a\n\nb",
    "a \n\n b  c   d\n",
    "  leading and trailing  ",
    "don't 're 's 'll 've 'd 'm it's ' s '\n's",
    "x\u3000y\u00a0z\u2009w \u3000 \u1680v\u0085u",
    "fs\x1cgs\x1dus\x1fend \x1c \x1d",
    "tabs\tand\r\nCRLF\r\n\r\nlines\t \t",
    "numbers 123 4,567.89 ½ ² ٣",
    "emoji 🙂🙂 and CJK 你好 世界 and café naïve",
    f"{EOT}{EOT}{EOT}a{EOT} {EOT}\n{EOT}{EOT}b ",
    f"<|endoftext|<|endoftext|>|>{EOT}{EOT[:-1]} {EOT[1:]}",
    "!!! ??? ...   ---",
    '{"key":"value","n":[1,2.5e3,null],"s":"it\'s","t":"we\'ll"}',
    "中文没有空格，但有标点。下一句！café\u0301e\u0301x\u0301.y's'll've'd",
]
ALPHABET = ["a", "b", " ", "  ", "\n", "\n\n", "\t", "'", "s", "l", "1", ".", "\u3000", "é", "\u0301", "中", "，",
            "🙂", "\x1c", EOT, "<|", "|>"]


def _random_texts(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return ["".join(rng.choice(ALPHABET) for _ in range(rng.randint(1, 60))) for _ in range(n)]


def _pretokenize_with_specials(text: str, special_tokens) -> list[str]:
    out = []
    for piece, is_special in split_on_special_tokens(text, special_tokens):
        out += [piece] if is_special else pretokenize(piece)
    return out


@pytest.mark.parametrize("special_tokens", [[], [EOT], [EOT, EOT + EOT]])
def test_every_safe_split_leaves_pretokens_unchanged(special_tokens):
    for text in ADVERSARIAL + _random_texts(400):
        whole = _pretokenize_with_specials(text, special_tokens)
        for pos in range(len(text) + 1):
            if is_safe_split(text, pos, special_tokens):
                halves = _pretokenize_with_specials(text[:pos], special_tokens) + _pretokenize_with_specials(
                    text[pos:], special_tokens
                )
                assert halves == whole, (text, pos)


def test_a_cut_at_any_whitespace_would_not_be_safe():
    # Why the rule is strict: this cut changes the pre-tokens, and is_safe_split refuses it.
    text = "a\n\nb"
    assert pretokenize(text[:3]) + pretokenize(text[3:]) != pretokenize(text)
    assert not is_safe_split(text, 3)


@pytest.mark.parametrize("special_tokens", [[], [EOT], [EOT, EOT + EOT]])
def test_chunked_parallel_counts_equal_whole_text_counts_on_adversarial_text(tmp_path, special_tokens):
    text = "".join(ADVERSARIAL) * 3 + "".join(_random_texts(200, seed=1))
    path = tmp_path / "adv.txt"
    path.write_text(text, encoding="utf-8")
    expected = _reference_counts(text, special_tokens)
    for chunk_bytes, workers in [(1, 1), (7, 2), (64, 1), (1000, 2)]:
        got = count_pretokens_in_file(path, special_tokens, num_workers=workers, chunk_bytes=chunk_bytes)
        assert got == expected, (chunk_bytes, workers)


REAL_FILES = [
    (FIXTURES / "corpus.en", [EOT]),
    (FIXTURES / "german.txt", []),
    (FIXTURES / "address.txt", [EOT]),
    (FIXTURES / "special_token_double_newlines_non_whitespace.txt", [EOT]),
    (FIXTURES / "special_token_trailing_newlines.txt", [EOT]),
    (TINYSTORIES / "TinyStories-train-2M.txt", [EOT, EOT + EOT]),
    (TINYSTORIES / "TinyStories-valid-800K.txt", [EOT]),
]


@pytest.mark.parametrize("path, special_tokens", REAL_FILES, ids=[p.name for p, _ in REAL_FILES])
def test_chunked_parallel_counts_equal_whole_text_counts_on_real_files(path, special_tokens):
    expected = _reference_counts(path.read_text(encoding="utf-8"), special_tokens)
    small = max(1, path.stat().st_size // 50)
    assert count_pretokens_in_file(path, special_tokens, num_workers=2, chunk_bytes=small) == expected


def test_text_without_whitespace_is_still_cut_into_chunks(tmp_path):
    path = tmp_path / "minified.txt"
    text = '{"story":"once","upon":["a","time"],"n":12}' * 2000  # 90 kB, no whitespace at all
    path.write_text(text, encoding="utf-8")
    bounds = chunk_boundaries(path, 1000, [])
    assert len(bounds) > 50
    assert count_pretokens_in_file(path, [], num_workers=2, chunk_bytes=1000) == _reference_counts(text, [])


def test_long_document_without_special_tokens_is_still_cut_into_chunks():
    path = TINYSTORIES / "TinyStories-valid-800K.txt"  # contains no special token at all
    bounds = chunk_boundaries(path, 50_000, [EOT])
    assert len(bounds) > 10
    assert all(b - a < 60_000 for a, b in zip(bounds, bounds[1:]))


@pytest.mark.parametrize("path", [FIXTURES / "corpus.en", TINYSTORIES / "TinyStories-train-2M.txt"])
def test_fast_counting_equals_plain_counting(path):
    text = path.read_text(encoding="utf-8")
    for special_tokens in [[], [EOT]]:
        assert count_pretokens_fast(text, special_tokens) == count_pretokens(text, special_tokens)


def test_fast_counting_survives_hash_collisions(monkeypatch):
    """Equal pre-tokens are found by hash, then compared: with many hashes the same, the counts
    are still exact, in the same order (the order the pre-tokens first occur)."""
    import cs336.tokenization.hashing as hashing
    from test_tokenizer import fuzz_texts

    text = (FIXTURES / "corpus.en").read_text(encoding="utf-8")[:30_000] + "".join(fuzz_texts(100, seed=3))
    expected = count_pretokens_fast(text, [EOT])
    assert expected == count_pretokens(text, [EOT])
    monkeypatch.setattr(hashing, "substring_hashes", lambda data, starts, ends: (ends - starts) % 2)
    got = count_pretokens_fast(text, [EOT])
    assert got == expected and list(got) == list(expected)


def test_whitespace_class_is_exactly_what_regex_calls_whitespace():
    everything = "".join(chr(c) for c in range(sys.maxunicode + 1) if not 0xD800 <= c < 0xE000)
    assert regex.findall(f"[{_WHITESPACE}]", everything) == regex.findall(r"\s", everything)


# ---------------------------------------------------------------------------------------------
# Saving a trained BPE in GPT-2's file format, and the command line
# ---------------------------------------------------------------------------------------------
def test_trained_vocab_and_merges_round_trip_through_gpt2_files(tmp_path):
    vocab, merges = train_bpe(FIXTURES / "tinystories_sample.txt", 350, [EOT])
    save_vocab_merges(vocab, merges, tmp_path / "vocab.json", tmp_path / "merges.txt")
    assert load_vocab_merges(tmp_path / "vocab.json", tmp_path / "merges.txt") == (vocab, merges)
    assert (tmp_path / "merges.txt").read_text(encoding="utf-8").startswith("#version: 0.2\n")


def test_gpt2_files_load_and_match_tiktoken():
    pytest.importorskip("tiktoken")
    vocab, merges = load_vocab_merges(FIXTURES / "gpt2_vocab.json", FIXTURES / "gpt2_merges.txt")
    ranks = tiktoken_gpt2()._mergeable_ranks
    assert len(vocab) == 50257 and len(merges) == 50000
    assert all(vocab[i] == token for token, i in ranks.items())
    assert merges[0] == (b" ", b"t")


@pytest.mark.parametrize(
    "vocab_text, merges_text, words",
    [
        ("{not json", "#version: 0.2\n", "not a valid vocab JSON"),
        ('{"a": "x"}', "#version: 0.2\n", "not an integer"),
        ('{"a": 0}', "#version: 0.2\na b c\n", "expected two tokens"),
        ('{"a": 0, "\\u0001": 1}', "", "outside GPT-2's byte alphabet"),
    ],
)
def test_corrupt_vocab_or_merges_files_are_one_line_errors(tmp_path, vocab_text, merges_text, words):
    (tmp_path / "v.json").write_text(vocab_text, encoding="utf-8")
    (tmp_path / "m.txt").write_text(merges_text, encoding="utf-8")
    with pytest.raises(CS336Error, match=words):
        load_vocab_merges(tmp_path / "v.json", tmp_path / "m.txt")
    with pytest.raises(CS336Error, match="not found"):
        load_vocab_merges(tmp_path / "missing.json", tmp_path / "m.txt")


def test_cli_train_bpe_writes_vocab_merges_and_stats(tmp_path):
    out = tmp_path / "bpe"
    argv = ["train-bpe", "--input", str(FIXTURES / "tinystories_sample.txt"), "--vocab-size", "300"]
    argv += ["--special-token", EOT, "--special-token", "<|pad|>", "--out", str(out), "--workers", "1", "--no-progress"]
    assert main(argv) == 0
    vocab, merges = load_vocab_merges(out / "vocab.json", out / "merges.txt")
    expected = train_bpe(FIXTURES / "tinystories_sample.txt", 300, [EOT, "<|pad|>"])
    assert (vocab, merges) == expected
    stats = json.loads((out / "stats.json").read_text())
    assert stats["vocab_size"] == 300 and stats["num_merges"] == len(merges)


def test_cli_train_bpe_reports_bad_input_as_one_line(tmp_path, capsys):
    argv = ["train-bpe", "--input", str(tmp_path / "missing.txt"), "--vocab-size", "300", "--out", str(tmp_path)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1
