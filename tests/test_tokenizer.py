"""Specification of `Tokenizer`: tiktoken's `gpt2` ids on the GPT-2 vocab, for every input."""

import json
import pickle
import random
import tracemalloc
import unicodedata
from itertools import islice

import numpy as np
import pytest
import tiktoken

from cs336 import Tokenizer
from cs336.tokenization.merge import WholeTokens
from cs336 import data
from cs336.errors import CS336Error
from cs336.tokenization import END_OF_TEXT as EOT
from cs336.tokenization.pretokenize import GPT2_REGEX, space_pieces, split_on_special_tokens
from cs336.tokenization.merge import merge_fast, merge_heap, merge_plain

from conftest import FIXTURES, TINYSTORIES

CORPORA = [
    FIXTURES / "tinystories_sample.txt",
    FIXTURES / "corpus.en",
    FIXTURES / "german.txt",
    FIXTURES / "address.txt",
    FIXTURES / "special_token_double_newlines_non_whitespace.txt",
    FIXTURES / "special_token_trailing_newlines.txt",
    TINYSTORIES / "TinyStories-train-2M.txt",
    TINYSTORIES / "TinyStories-valid-800K.txt",
]


@pytest.fixture(scope="module")
def gpt2() -> Tokenizer:
    return Tokenizer.from_files(FIXTURES / "gpt2_vocab.json", FIXTURES / "gpt2_merges.txt", [EOT])


@pytest.fixture(scope="module")
def tiktoken_gpt2():
    return data.tiktoken_gpt2()


# ---------------------------------------------------------------------------------------------
# A seeded fuzzer of awkward strings (no lone surrogates: they are not valid text)
# ---------------------------------------------------------------------------------------------
PIECES = [
    *"abcXYZ019.,!?-_'\"()[]{}<>|@#$%^&*~`/\\;:",
    " ", "  ", "   ", "\t", "\n", "\n\n", "\r\n", "\r", " \n", "  \n\n", "\x0b", "\x0c", "\x1c", "\x85",
    "\u00a0", "\u2009", "\u3000", "\u2028", "\u200b", "\ufeff",
    "'s", "'S", "'t", "'re", "'ve", "'m", "'ll", "'LL", "'d", "'D", "'", "''", "'x", " 's",
    "e\u0301", "\u0308", "\u0915\u094d\u0937", "नमस्ते",  # combining marks, Devanagari conjuncts
    "👩\u200d👩\u200d👧", "🏳️\u200d🌈", "👍🏽", "🤓", "\U0001f600\U0001f600",  # emoji, ZWJ, modifiers
    "你好世界", "日本語のテキスト", "한국어", "Ωμέγα", "Привет", "ǅ",  # CJK, Greek, Cyrillic, titlecase
    "שלום", "مرحبا", "\u200f", "\u202e",  # right-to-left text and direction marks
    "²", "Ⅻ", "٣", "１２", "½", "3.14", "1,000,000", "0x1F",  # number forms
    "hello", " world", "HELLO", " The", "don't", "I'LL", "can't", "café", "naïve", "straße",
    "<|", "|>", "endoftext", "<|endoftext", "|endoftext|>",
]


def random_code_point(rng: random.Random) -> str:
    """Any assigned code point but a surrogate. Code points that Python's Unicode tables call
    unassigned are skipped: `regex` and tiktoken ship different Unicode versions, and a letter
    added since can be a letter to one and unassigned to the other."""
    while True:
        c = chr(rng.randrange(0x110000))
        if unicodedata.category(c) not in ("Cs", "Cn"):
            return c


def random_text(rng: random.Random, max_pieces: int = 40) -> str:
    parts = []
    for _ in range(rng.randint(0, max_pieces)):
        r = rng.random()
        if r < 0.8:
            parts.append(rng.choice(PIECES))
        elif r < 0.9:
            parts.append(random_code_point(rng))
        else:
            parts.append(chr(rng.randrange(0x80)))
    return "".join(parts)


def fuzz_texts(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return [random_text(rng) for _ in range(n)]


def segments(text: str, special_tokens=(EOT,)) -> list[str]:
    """The reference segmentation: special tokens, then GPT-2 pre-tokens of the pieces between."""
    out = []
    for piece, special in split_on_special_tokens(text, list(special_tokens)):
        out += [piece] if special else GPT2_REGEX.findall(piece)
    return out


# ---------------------------------------------------------------------------------------------
# Equal to tiktoken
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("path", CORPORA, ids=lambda p: p.name)
def test_encode_equals_tiktoken_on_shared_corpora(path, gpt2, tiktoken_gpt2):
    text = path.read_text(encoding="utf-8")
    assert gpt2.encode(text) == tiktoken_gpt2.encode(text, allowed_special={EOT})


def test_encode_equals_tiktoken_on_fuzzed_unicode(gpt2, tiktoken_gpt2):
    for text in fuzz_texts(1500):
        assert gpt2.encode(text) == tiktoken_gpt2.encode(text, allowed_special={EOT}), repr(text)


def test_encode_equals_tiktoken_with_special_tokens_between_fuzz(gpt2, tiktoken_gpt2):
    rng = random.Random(1)
    for _ in range(300):
        text = EOT.join(random_text(rng, 8) for _ in range(rng.randint(1, 5)))
        assert gpt2.encode(text) == tiktoken_gpt2.encode(text, allowed_special={EOT}), repr(text)


def test_without_special_tokens_the_marker_is_ordinary_text(tiktoken_gpt2):
    plain = Tokenizer.from_files(FIXTURES / "gpt2_vocab.json", FIXTURES / "gpt2_merges.txt")
    text = f"a{EOT}b {EOT}\n"
    assert plain.encode(text) == tiktoken_gpt2.encode_ordinary(text)
    assert 50256 not in plain.encode(text)


def test_long_pretokens_equal_tiktoken(gpt2, tiktoken_gpt2):
    rng = random.Random(2)
    texts = [
        "".join(rng.choice("abcdefghij") for _ in range(3000)),
        "".join(rng.choice("0123456789") for _ in range(2000)),
        " " * 1000 + "x",
        "!?" * 700,
        "\n" * 500 + " " * 500,
    ]
    for text in texts:
        assert gpt2.encode(text) == tiktoken_gpt2.encode(text)


# ---------------------------------------------------------------------------------------------
# Special tokens
# ---------------------------------------------------------------------------------------------
def test_overlapping_special_tokens_match_longest_first(tiktoken_gpt2):
    double = EOT + EOT
    tok = Tokenizer.from_files(FIXTURES / "gpt2_vocab.json", FIXTURES / "gpt2_merges.txt", [EOT, double])
    assert tok.vocab[50257] == double.encode()  # appended: it was missing from the vocab
    reference = tiktoken.Encoding(
        "gpt2-double",
        pat_str=tiktoken_gpt2._pat_str,
        mergeable_ranks=tiktoken_gpt2._mergeable_ranks,
        special_tokens={EOT: 50256, double: 50257},
    )
    for text in [f"Hi{double}there", f"{EOT}{EOT}{EOT}", f"x{EOT} {double}{EOT}\n", "<|endoftext|<|endoftext|>>"]:
        ids = tok.encode(text)
        assert ids == reference.encode(text, allowed_special="all")
        assert tok.decode(ids) == text
    assert tok.encode(double) == [50257]


def test_special_tokens_missing_from_vocab_are_appended_with_fresh_ids():
    vocab = {i: bytes([i]) for i in range(256)}
    tok = Tokenizer(vocab, [], special_tokens=["<s>", "</s>", "<s>"])
    assert tok.vocab[256] == b"<s>" and tok.vocab[257] == b"</s>" and len(tok.vocab) == 258
    assert tok.encode("<s>a</s>") == [256, 97, 257]
    assert vocab == {i: bytes([i]) for i in range(256)}  # the caller's dict is not modified


def test_special_token_already_in_vocab_keeps_its_id(gpt2):
    assert gpt2.encode(EOT) == [50256] and len(gpt2.vocab) == 50257


# ---------------------------------------------------------------------------------------------
# Decoding
# ---------------------------------------------------------------------------------------------
def test_decode_inverts_encode(gpt2):
    for text in fuzz_texts(300, seed=3) + [p.read_text(encoding="utf-8") for p in CORPORA[:6]]:
        assert gpt2.decode(gpt2.encode(text)) == text


def test_decode_replaces_invalid_utf8(gpt2):
    emoji = gpt2.encode("🤓")
    assert len(emoji) > 1
    assert gpt2.decode(emoji[:1]) == b"".join(gpt2.vocab[i] for i in emoji[:1]).decode("utf-8", errors="replace")
    assert "\ufffd" in gpt2.decode(emoji[:1])
    assert gpt2.decode([]) == ""


@pytest.mark.parametrize("bad", [50257, -1, 10**9])
def test_decode_rejects_unknown_ids_in_one_line(gpt2, bad):
    with pytest.raises(CS336Error) as e:
        gpt2.decode([15496, bad])
    assert str(bad) in str(e.value) and "\n" not in str(e.value)


def test_decode_accepts_numpy_ids(gpt2):
    np = pytest.importorskip("numpy")
    ids = gpt2.encode("Hello world")
    assert gpt2.decode(np.array(ids, dtype=np.uint16)) == "Hello world"


# ---------------------------------------------------------------------------------------------
# Files
# ---------------------------------------------------------------------------------------------
def test_from_files_reads_gpt2_vocab_and_merges(gpt2, tiktoken_gpt2):
    assert len(gpt2.vocab) == 50257 and len(gpt2.merges) == 50000
    ranks = tiktoken_gpt2._mergeable_ranks
    assert all(ranks[tok] == i for i, tok in gpt2.vocab.items() if i < 50256)


def test_save_then_from_files_round_trips_exactly(gpt2, tmp_path):
    gpt2.save(tmp_path / "vocab.json", tmp_path / "merges.txt")
    again = Tokenizer.from_files(tmp_path / "vocab.json", tmp_path / "merges.txt", [EOT])
    assert again.vocab == gpt2.vocab and again.merges == gpt2.merges
    # The saved files carry the same content as GPT-2's own, so GPT-2 tools can read them.
    original = json.loads((FIXTURES / "gpt2_vocab.json").read_text(encoding="utf-8"))
    assert json.loads((tmp_path / "vocab.json").read_text(encoding="utf-8")) == original
    merge_lines = lambda p: [l for l in p.read_text(encoding="utf-8").splitlines() if l and not l.startswith("#")]
    assert merge_lines(tmp_path / "merges.txt") == merge_lines(FIXTURES / "gpt2_merges.txt")


def test_a_failed_save_leaves_the_previous_pair_intact(tmp_path):
    """vocab.json and merges.txt must never disagree: a save that fails while writing the
    merges replaces neither file and leaves no temporary file behind."""
    from cs336.tokenization.files import save_vocab_merges

    vocab = {i: bytes([i]) for i in range(256)}
    paths = tmp_path / "vocab.json", tmp_path / "merges.txt"
    save_vocab_merges({**vocab, 256: b"ab"}, [(b"a", b"b")], *paths)
    before = [p.read_bytes() for p in paths]

    def merges_then_disk_full():
        yield (b"c", b"d")
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space"):
        save_vocab_merges({**vocab, 256: b"cd"}, merges_then_disk_full(), *paths)
    assert [p.read_bytes() for p in paths] == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["merges.txt", "vocab.json"]


def test_bad_vocab_or_merges_are_one_line_errors():
    vocab = {i: bytes([i]) for i in range(256)}
    with pytest.raises(CS336Error, match="not in the vocab"):
        Tokenizer(vocab, [(b"a", b"b")])  # b"ab" was never added
    with pytest.raises(CS336Error, match="single bytes"):
        Tokenizer({i: bytes([i]) for i in range(255)}, [])
    with pytest.raises(CS336Error, match="bijection"):
        Tokenizer({**vocab, 256: b"a"}, [])


def test_pickled_tokenizer_encodes_the_same(gpt2):
    text = "Pickled tokenizers go to worker processes.\n"
    gpt2.encode(text)
    clone = pickle.loads(pickle.dumps(gpt2))
    sizes = len(clone._spaced_cache), len(clone._piece_cache), len(clone._pretoken_cache)
    assert sizes == clone._prefilled  # the caches stay behind: only the tokens they start with
    assert clone.encode(text) == gpt2.encode(text)


# ---------------------------------------------------------------------------------------------
# Streaming
# ---------------------------------------------------------------------------------------------
def chunkings(text: str, rng: random.Random):
    yield [text]
    yield list(text)  # one character at a time: every special token is split
    yield text.splitlines(keepends=True)
    for _ in range(3):
        cuts = sorted(rng.sample(range(len(text) + 1), min(len(text), rng.randint(1, 30))))
        yield [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)])]


def test_encode_iterable_equals_encode_under_adversarial_chunkings(gpt2):
    rng = random.Random(4)
    texts = [p.read_text(encoding="utf-8") for p in CORPORA[:6]]
    texts += [EOT.join(random_text(rng, 10) for _ in range(4)) for _ in range(60)]
    texts += [f"a{EOT}{EOT}\n\n{EOT} b \n{EOT}", "word  \n\n\n" * 50, "x'" + "l" * 10 + "'ll", "abc " * 400]
    for text in texts:
        expected = gpt2.encode(text)
        for chunks in chunkings(text, rng):
            for buffer_chars in (1, 7, 1 << 16):  # 1: try a cut after every chunk
                assert list(gpt2.encode_iterable(chunks, buffer_chars=buffer_chars)) == expected, repr(text[:80])


def test_encode_iterable_reads_a_file_handle(gpt2):
    path = FIXTURES / "tinystories_sample.txt"
    with open(path, encoding="utf-8") as f:
        assert list(gpt2.encode_iterable(f)) == gpt2.encode(path.read_text(encoding="utf-8"))


def test_safe_cut_never_changes_the_segmentation(gpt2):
    """The invariant behind `encode_iterable`: cutting where `_safe_cut` says, then continuing the
    text in any way, keeps every special token and pre-token of the whole text."""
    rng = random.Random(5)
    for _ in range(400):
        text = "".join(rng.choice(PIECES + [EOT, "\n", "x\n", " \n"]) for _ in range(rng.randint(1, 30)))
        whole = segments(text)
        for n in range(1, len(text) + 1):
            k = gpt2._safe_cut(text[:n])
            assert 0 <= k <= n
            if k:
                assert segments(text[:k]) + segments(text[k:]) == whole, (text, n, k)


def test_encode_iterable_is_lazy_and_memory_is_flat(gpt2):
    line = "Once upon a time, there was a little dog named Spot. He liked to run.\n"
    consumed = 0

    def lines(n):
        nonlocal consumed
        for _ in range(n):
            consumed += 1
            yield line

    first = list(islice(gpt2.encode_iterable(lines(10**9)), 100))
    assert first == gpt2.encode(line * 10)[:100] and consumed < 10_000  # it did not read ahead

    n = 20_000  # 1.4 MB of text
    tracemalloc.start()
    total = sum(1 for _ in gpt2.encode_iterable(lines(n)))
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert total == n * len(gpt2.encode(line))
    assert peak < 2_000_000  # the ids alone would take > 2.5 MB as a list


def test_pretoken_cache_stays_bounded():
    tok = Tokenizer({i: bytes([i]) for i in range(256)}, [], cache_size=50)
    for i in range(1000):
        tok.encode(f" w{i}")
        sizes = len(tok._spaced_cache), len(tok._piece_cache), len(tok._pretoken_cache)
        assert all(size - start <= 52 for size, start in zip(sizes, tok._prefilled))


def test_long_pieces_are_encoded_but_not_cached(gpt2, tiktoken_gpt2):
    """A line without spaces is one piece: kept, it would cost memory in proportion to its length."""
    tok = pickle.loads(pickle.dumps(gpt2))
    text = "数据" * 5000 + "\n" + "x" * 3000 + " " + "9" * 1000
    assert tok.encode(text) == tiktoken_gpt2.encode(text)
    assert max(map(len, [*tok._piece_cache, *tok._spaced_cache, *tok._pretoken_cache])) <= 256


# ---------------------------------------------------------------------------------------------
# Fast paths equal the reference paths
# ---------------------------------------------------------------------------------------------
def test_encode_equals_the_plain_reference(gpt2):
    texts = fuzz_texts(500, seed=6) + [p.read_text(encoding="utf-8") for p in CORPORA[:6]]
    texts += ["".join(chr(c) for c in range(0x80)), "\x1c\x1d \x1e\x1f", "a\n\n\nb", "a \n\tb\n", f"x {EOT}\n"]
    for text in texts:
        assert gpt2.encode(text) == gpt2._encode_plain(text), repr(text[:80])


def test_pretoken_starts_equal_the_gpt2_regex():
    """Many pieces pre-tokenized together in numpy, dense in whitespace runs, spaces before and
    after them, apostrophes before contraction endings (and near misses), runs of each class,
    non-ASCII letters, numbers and spaces, and empty pieces: each piece's pre-tokens are the
    pattern's on that piece alone."""
    from cs336.tokenization.pretokenize import pretoken_starts

    rng = random.Random(23)
    alphabet = [*PIECES, "'", "'", "s", "t", "ll", "ve", "re", "d", "m", "S", "LL", "l", "v", "\u2019", "\x00",
                "²", "٣", "é", "日", "\u3000"]
    pieces = [chr(c) for c in range(0x100)] + ["", "'s", " 's", "\n's", "x''s", "'s's", "'sun", "'lly", " \n\nThe"]
    pieces += ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 12))) for _ in range(4000)]
    pieces += fuzz_texts(300, seed=25)
    for batch in (pieces, rng.sample(pieces, 50), pieces[100:101], ["", "a", ""], ["'", "s"], [""]):
        chars = np.frombuffer("".join(batch).encode("utf-32-le"), np.uint32)
        lengths = np.array(list(map(len, batch)))
        starts = np.cumsum(lengths) - lengths
        cuts = pretoken_starts(chars, starts).tolist() + [len(chars)]
        got = [chars[a:b].tobytes().decode("utf-32-le") for a, b in zip(cuts, cuts[1:])]
        assert got == [t for piece in batch for t in GPT2_REGEX.findall(piece)]
        assert set(starts[lengths > 0].tolist()) <= set(cuts)  # no pre-token spans two pieces


def test_hash_collisions_never_give_wrong_ids(gpt2, monkeypatch):
    """`_encode_ascii` finds whole tokens and repeated pre-tokens by hash, then compares bytes:
    with every hash the same, a fresh tokenizer still encodes every text exactly."""
    import cs336.tokenization.hashing as hashing
    import cs336.tokenization.tokenizer as tokenizer

    texts = fuzz_texts(200, seed=24) + [CORPORA[0].read_text(encoding="utf-8")[:20_000]]
    expected = [gpt2._encode_plain(text) for text in texts]
    for collide in (lambda data, starts, ends: np.zeros(len(starts), np.int64),
                    lambda data, starts, ends: (ends - starts) % 3):  # same length, same hash
        monkeypatch.setattr(tokenizer, "substring_hashes", collide)
        monkeypatch.setattr(hashing, "substring_hashes", collide)
        tok = pickle.loads(pickle.dumps(gpt2))
        assert [tok.encode(text) for text in texts] == expected


def test_encode_equals_the_plain_reference_on_words_with_symbols(gpt2):
    """Fresh tokenizers, so every part is new: words, words with symbol tails (some of them
    contractions' apostrophes), and parts that only look like them."""
    rng = random.Random(22)
    parts = ["cat", "Cat", "s", "dont", "don't", "it's", "cat's.", "end.)", "end.\n", "x!'s", "é.", "ab1.",
             "'s", "''", "...", "(a)", "a—", "a.b", "a-b", "a1", "1a"]
    parts += ["".join(rng.choice("abcXY.,!?'\"-)(") for _ in range(rng.randint(1, 7))) for _ in range(400)]
    for _ in range(200):
        text = " ".join(rng.choice(parts) for _ in range(rng.randint(1, 12)))
        assert pickle.loads(pickle.dumps(gpt2)).encode(text) == gpt2._encode_plain(text), repr(text)


def space_piece_texts(n: int, seed: int) -> list[str]:
    """Short strings dense in whitespace runs, spaces between whitespace, and text ends."""
    rng = random.Random(seed)
    alphabet = ["a", "bc", " ", " ", " ", "\n", "\t", "\r", "\xa0", "\u3000", "\u2009", "\x85", "\x1c",
                ".", "'s", "'", "7", "é", "日"]
    return ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 10))) for _ in range(n)]


def testspace_pieces_cut_only_at_pretoken_boundaries():
    """Pre-tokenizing each piece alone gives the pre-tokens of the whole text, and the pieces
    put back together are the text."""
    texts = space_piece_texts(20_000, seed=11) + fuzz_texts(300, seed=12)
    texts += ["", " ", "  ", "   ", "a  ", "a   b", "a\n \nb", " \n ", "a \n\tb\n", "x  \n\n  y  "]
    for text in texts:
        pieces = []
        for split, got in space_pieces(text):
            pieces += [got[0], *(" " + part for part in got[1:])] if split else [got]
        assert "".join(pieces) == text, repr(text)
        assert [t for piece in pieces for t in GPT2_REGEX.findall(piece)] == GPT2_REGEX.findall(text), repr(text)


def test_a_space_between_whitespace_is_not_a_boundary():
    """The case `space_pieces` must not cut: were "a\\n \\nb" cut before its space, the
    pre-tokens would change. The test above would catch a version that cut there."""
    assert GPT2_REGEX.findall("a\n \nb") == ["a", "\n ", "\n", "b"]
    assert GPT2_REGEX.findall("a\n") + GPT2_REGEX.findall(" \nb") != GPT2_REGEX.findall("a\n \nb")
    assert [split for split, _ in space_pieces("a\n \nb")] == [True, False]


def test_encode_equals_the_plain_reference_on_whitespace_runs(gpt2):
    for text in space_piece_texts(3000, seed=13):
        assert gpt2.encode(text) == gpt2._encode_plain(text), repr(text)


def test_merge_fast_and_heap_equal_the_plain_merge(gpt2):
    rng = random.Random(7)
    words = [w for t in fuzz_texts(200, seed=8) for w in GPT2_REGEX.findall(t)]
    words += ["".join(rng.choice("aeiou tnsrl") for _ in range(rng.randint(50, 300))) for _ in range(20)]
    for w in words:
        ids = [gpt2._byte_ids[b] for b in w.encode("utf-8")]
        expected = merge_plain(list(ids), gpt2._merges)
        assert merge_fast(list(ids), gpt2._merges) == expected
        assert merge_heap(list(ids), gpt2._merges) == expected


def test_merges_apply_in_rank_order_not_left_to_right():
    vocab = {i: bytes([i]) for i in range(256)} | {256: b"bc", 257: b"ab", 258: b"abc"}
    # (b, c) ranks before (a, b): "abc" becomes a + bc, and (a, bc) is no merge
    tok = Tokenizer(vocab, [(b"b", b"c"), (b"a", b"b"), (b"ab", b"c")])
    assert tok.encode("abc") == [97, 256]
    assert tok.encode("ab") == [257]


def test_the_whitespace_set_is_unicode_white_space():
    """`space_pieces` walks back over whitespace with this set; it must be exactly what the GPT-2
    pattern's `\\s` matches (`regex`: Unicode White_Space), over every code point."""
    import regex

    from cs336.tokenization.pretokenize import _WHITESPACE_SET

    everything = "".join(chr(c) for c in range(0x110000) if not 0xD800 <= c < 0xE000)
    assert _WHITESPACE_SET == set(regex.findall(r"\s", everything))


# ---------------------------------------------------------------------------------------------
# Pieces the caches miss are encoded together (`merge_many`)
# ---------------------------------------------------------------------------------------------
EDGE_CASES = [
    "", " ", "   ", "\n", " \n\t \u3000 ", "\n\n\n",  # nothing, or only whitespace
    EOT, EOT * 3, f"{EOT} {EOT}\n{EOT}", f"x{EOT}{EOT}y", "<|endoftext|<|endoftext|>>", f"<|{EOT}|>",
    "🤓", "👩\u200d👩\u200d👧 🏳️\u200d🌈 👍🏽", "日本語のテキスト。", "naïve café straße Ωμέγα",  # non-ASCII, emoji
    "a" * 5000, "x" * 300 + " " + "9" * 3000, "supercalifragilisticexpialidocious" * 20,  # very long words
    "the the the the the", "word " * 1000, " cat." * 500 + EOT + " cat." * 500,  # words repeated
    "a\n \nb", "a  \n\n  b ", "  leading and trailing  ",
]


@pytest.fixture
def fresh(gpt2) -> Tokenizer:
    """A copy of the GPT-2 tokenizer with empty caches."""
    return pickle.loads(pickle.dumps(gpt2))


def test_hand_picked_edge_cases_equal_the_reference_and_tiktoken(gpt2, tiktoken_gpt2):
    """Each case on a fresh tokenizer (few new pre-tokens: merged one at a time), then all of them
    at once on another (hundreds: merged together), then again (warm caches)."""
    whole = "".join(EDGE_CASES) + "".join(fuzz_texts(200, seed=15))
    copy = lambda: pickle.loads(pickle.dumps(gpt2))  # noqa: E731
    together = copy()
    for text, tok in [*((case, copy()) for case in EDGE_CASES), (whole, together), (whole, together)]:
        expected = tiktoken_gpt2.encode(text, allowed_special={EOT})
        assert tok.encode(text) == expected, repr(text[:80])
        assert tok._encode_plain(text) == expected, repr(text[:80])


def test_new_pretokens_are_merged_together_and_equal_tiktoken(fresh, tiktoken_gpt2, monkeypatch):
    from cs336.tokenization import tokenizer

    calls = []
    merge_many = tokenizer.merge_many
    monkeypatch.setattr(tokenizer, "merge_many", lambda words, table: calls.append(len(words)) or merge_many(words, table))
    text = EOT.join(fuzz_texts(400, seed=16)) + (TINYSTORIES / "TinyStories-valid-800K.txt").read_text(encoding="utf-8")[:100_000]
    assert fresh.encode(text) == tiktoken_gpt2.encode(text, allowed_special={EOT})
    assert len(calls) == 1 and calls[0] > 1000  # one call merged every new pre-token
    calls.clear()
    assert fresh.encode(text) == tiktoken_gpt2.encode(text, allowed_special={EOT})
    assert calls == []  # warm: nothing to merge


def test_overlapping_special_tokens_with_many_new_pretokens(tiktoken_gpt2):
    double = EOT + EOT
    tok = Tokenizer.from_files(FIXTURES / "gpt2_vocab.json", FIXTURES / "gpt2_merges.txt", [EOT, double])
    reference = tiktoken.Encoding("gpt2-double", pat_str=tiktoken_gpt2._pat_str,
                                  mergeable_ranks=tiktoken_gpt2._mergeable_ranks,
                                  special_tokens={EOT: 50256, double: 50257})
    rng = random.Random(17)
    text = "".join(random_text(rng, 10) + rng.choice([EOT, double, EOT * 3, "<|endoftext|", ""]) for _ in range(300))
    assert tok.encode(text) == reference.encode(text, allowed_special="all") == tok._encode_plain(text)


def test_a_cascading_vocab_encodes_as_the_reference():
    from test_merge import CASCADE, naive_merger, tokenizer_of

    tok, naive_merge = tokenizer_of(CASCADE), naive_merger(CASCADE)
    rng = random.Random(18)
    words = ["".join(rng.choice("aabc") for _ in range(rng.randint(1, 60))) for _ in range(400)]
    text = " ".join(words) + " é😀" * 3
    expected = [tok._id_of[t] for w in GPT2_REGEX.findall(text) for t in naive_merge(w.encode("utf-8"))]
    assert tok.encode(text) == tok._encode_plain(text) == expected


def test_an_interrupted_encode_leaves_the_caches_usable(fresh, monkeypatch):
    """Until the new pieces are encoded the caches are only read, so an interruption there
    (Ctrl-C) changes nothing."""
    text = " ".join(f"w{i}x" for i in range(500))
    expected = fresh._encode_plain(text)

    def interrupt(*args):
        raise KeyboardInterrupt

    with monkeypatch.context() as m:
        m.setattr(fresh, "_encode_missed", interrupt)
        with pytest.raises(KeyboardInterrupt):
            fresh.encode(text)
    assert fresh.encode(text) == expected


def test_a_token_that_does_not_merge_into_itself_is_merged_not_looked_up():
    """The pre-token cache starts with the tokens whose bytes merge into themselves; "abc" here
    merges into a + bc, so it must not be among them, alone or among many new pre-tokens."""
    vocab = {i: bytes([i]) for i in range(256)} | {256: b"bc", 257: b"ab", 258: b"abc"}
    tok = Tokenizer(vocab, [(b"b", b"c"), (b"a", b"b"), (b"ab", b"c")])
    assert "abc" not in tok._whole and tok._whole["ab"] == (257,)
    text = " ".join(["abc", "ab", "bc"] + [f"abc{i}x abc" for i in range(300)])
    assert tok.encode(text) == tok._encode_plain(text)
    assert tok.encode("abc") == [97, 256]


def test_a_token_spanning_pretokens_is_not_a_cached_piece():
    """"a.b" merges into itself but is three pre-tokens, so the piece "a.b" must not start in the
    caches: merges never cross pre-token boundaries."""
    vocab = {i: bytes([i]) for i in range(256)} | {256: b"a.", 257: b"a.b"}
    tok = Tokenizer(vocab, [(b"a", b"."), (b"a.", b"b")])
    assert "a.b" not in tok._whole and "a.b" not in tok._piece_cache
    for text in ["a.b", " a.b a.b", "a.b " * 200]:
        assert tok.encode(text) == tok._encode_plain(text)
    assert tok.encode("a.b") == [97, 46, 98]


def test_edge_cases_encode_the_same_with_and_without_the_prefilled_tokens(gpt2, tiktoken_gpt2):
    """Each edge case, alone and all together, on a tokenizer whose caches start with the whole
    tokens and on one whose caches start empty (every pre-token merged), fresh and then warm."""
    def copy(prefilled: bool) -> Tokenizer:
        tok = pickle.loads(pickle.dumps(gpt2))
        if not prefilled:
            tok._whole, tok._whole_ids = {}, WholeTokens({})
            tok._new_caches()
        return tok

    whole = "".join(EDGE_CASES) + "".join(fuzz_texts(200, seed=19))
    for prefilled in (True, False):
        together = copy(prefilled)
        for text, tok in [*((case, copy(prefilled)) for case in EDGE_CASES), (whole, together), (whole, together)]:
            assert tok.encode(text) == tiktoken_gpt2.encode(text, allowed_special={EOT}), (prefilled, repr(text[:80]))
