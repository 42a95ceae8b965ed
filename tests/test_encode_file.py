"""Specification of dataset encoding (`encode_file`, `cs336 encode`): the ids of `Tokenizer.encode`
on the whole file, written as the narrowest unsigned `.npy`, in parallel and in bounded memory."""

import random

import numpy as np
import pytest

from cs336 import Tokenizer
from cs336.cli import main
from cs336.errors import CS336Error
from cs336.tokenization import END_OF_TEXT as EOT
from cs336.tokenization.encode_file import _write_npy_header, encode_file, smallest_dtype
from cs336.tokenization.pretokenize import chunk_boundaries

from conftest import FIXTURES, TINYSTORIES
from test_tokenizer import PIECES

GPT2_FILES = ["--vocab", str(FIXTURES / "gpt2_vocab.json"), "--merges", str(FIXTURES / "gpt2_merges.txt")]


@pytest.fixture(scope="module")
def gpt2() -> Tokenizer:
    return Tokenizer.from_files(FIXTURES / "gpt2_vocab.json", FIXTURES / "gpt2_merges.txt", [EOT])


@pytest.mark.parametrize(
    "path, workers",
    [(TINYSTORIES / "TinyStories-train-2M.txt", 2), (TINYSTORIES / "TinyStories-valid-800K.txt", 2), (FIXTURES / "address.txt", 1)],
    ids=lambda x: getattr(x, "name", str(x)),
)
def test_encoded_file_equals_encode_of_the_whole_text(gpt2, path, workers, tmp_path):
    out = tmp_path / "ids.npy"
    stats = encode_file(gpt2, path, out, workers=workers, progress=False, chunk_bytes=100_000)
    ids = np.load(out)
    expected = gpt2.encode(path.read_text(encoding="utf-8"))
    assert ids.dtype == np.uint16 and ids.tolist() == expected
    assert stats.tokens == len(expected) and stats.input_bytes == path.stat().st_size
    assert stats.chunks == len(chunk_boundaries(path, 100_000, [EOT])) - 1
    if path.stat().st_size > 300_000:
        assert stats.chunks > 3  # the parallel path really ran on several chunks


def test_tiny_chunks_with_adversarial_text_still_equal_encode(gpt2, tmp_path):
    rng = random.Random(0)
    text = "".join(rng.choice(PIECES + [EOT, EOT + EOT, "\n", " x", "x\n"]) for _ in range(3000))
    path = tmp_path / "fuzz.txt"
    path.write_text(text, encoding="utf-8")
    tok = Tokenizer.from_files(FIXTURES / "gpt2_vocab.json", FIXTURES / "gpt2_merges.txt", [EOT, EOT + EOT])
    encode_file(tok, path, tmp_path / "fuzz.npy", workers=2, progress=False, chunk_bytes=64)
    assert np.load(tmp_path / "fuzz.npy").tolist() == tok.encode(text)


def test_dtype_is_the_smallest_that_fits(tmp_path):
    assert smallest_dtype(256) == np.uint16 and smallest_dtype(65_536) == np.uint16
    assert smallest_dtype(65_537) == np.uint32
    vocab = {i: bytes([i]) for i in range(256)} | {70_000: b"ab"}
    tok = Tokenizer(vocab, [(b"a", b"b")])
    path = tmp_path / "ab.txt"
    path.write_text("abc ab", encoding="utf-8")
    encode_file(tok, path, tmp_path / "ab.npy", workers=1, progress=False)
    ids = np.load(tmp_path / "ab.npy")
    assert ids.dtype == np.uint32 and ids.tolist() == [70_000, 99, 32, 70_000]


@pytest.mark.parametrize("dtype", [np.uint16, np.uint32])
def test_the_npy_header_has_one_size_for_any_length_so_it_is_rewritten_in_place(tmp_path, dtype):
    path = tmp_path / "h.npy"
    with open(path, "wb") as f:
        sizes = {_write_npy_header(f, np.dtype(dtype), n) for n in (0, 7, 10**12)}
        f.seek(0)
        _write_npy_header(f, np.dtype(dtype), 7)
    assert sizes == {128}
    path.write_bytes(path.read_bytes()[:128] + np.arange(7, dtype=dtype).tobytes())
    assert np.load(path, mmap_mode="r").tolist() == list(range(7))


def test_the_encoded_file_is_byte_for_byte_what_numpy_saves(gpt2, tmp_path):
    encode_file(gpt2, TINYSTORIES / "TinyStories-valid-800K.txt", tmp_path / "ids.npy", workers=2, progress=False)
    ids = np.load(tmp_path / "ids.npy")
    np.save(tmp_path / "saved.npy", ids)
    assert (tmp_path / "ids.npy").read_bytes() == (tmp_path / "saved.npy").read_bytes()


# ---------------------------------------------------------------------------------------------
# The command line
# ---------------------------------------------------------------------------------------------
def test_cli_encodes_with_a_tokenizer_directory(gpt2, tmp_path, capsys):
    tok_dir = tmp_path / "tok"
    tok_dir.mkdir()
    gpt2.save(tok_dir / "vocab.json", tok_dir / "merges.txt")
    src = FIXTURES / "tinystories_sample.txt"
    out = tmp_path / "out" / "ids.npy"
    argv = ["encode", "--tokenizer", str(tok_dir), "--input", str(src), "--out", str(out)]
    assert main([*argv, "--special-token", EOT, "--workers", "2", "--no-progress"]) == 0
    report = capsys.readouterr().out
    assert "MB/s" in report and "tokens/s" in report and f"{len(np.load(out)):,} tokens" in report
    assert np.load(out).tolist() == gpt2.encode(src.read_text(encoding="utf-8"))


def test_a_train_bpe_directory_supplies_its_special_tokens(tmp_path):
    from cs336.tokenization.bpe import train_bpe_to_dir
    from cs336.tokenization.tokenizer import load_tokenizer

    train_bpe_to_dir(FIXTURES / "tinystories_sample.txt", 300, [EOT], tmp_path, num_workers=1, progress=False)
    tok = load_tokenizer(tmp_path)
    assert tok.special_tokens == [EOT]
    ids = tok.encode(f"a{EOT}")
    assert len(ids) == 2 and tok.vocab[ids[1]] == EOT.encode()
    assert load_tokenizer(tmp_path, special_tokens=[]).special_tokens == []


def test_cli_accepts_explicit_vocab_and_merges(gpt2, tmp_path):
    src = FIXTURES / "german.txt"
    out = tmp_path / "g.npy"
    assert main(["encode", *GPT2_FILES, "--input", str(src), "--out", str(out), "--no-progress"]) == 0
    assert np.load(out).tolist() == gpt2.encode(src.read_text(encoding="utf-8"))


def write(path, content: bytes):
    path.write_bytes(content)
    return str(path)


@pytest.mark.parametrize(
    "case, message",
    [
        ("missing input", "input file not found"),
        ("empty input", "input file is empty"),
        ("bad utf-8", "invalid UTF-8 at byte offset 6"),
        ("missing tokenizer dir", "tokenizer directory not found"),
        ("corrupt vocab", "not a valid vocab JSON"),
        ("corrupt merges", "not in the vocab"),
        ("bad workers", "argument --workers: must be at least 1, got 0"),
    ],
)
def test_cli_errors_are_one_line_and_leave_no_output(case, message, tmp_path, capsys):
    good = write(tmp_path / "in.txt", b"hello world\n")
    vocab, merges = str(FIXTURES / "gpt2_vocab.json"), str(FIXTURES / "gpt2_merges.txt")
    extra = []
    if case == "missing input":
        good = str(tmp_path / "nope.txt")
    elif case == "empty input":
        good = write(tmp_path / "empty.txt", b"")
    elif case == "bad utf-8":
        good = write(tmp_path / "bad.txt", b"hello \xff\xfe world\n")
    elif case == "corrupt vocab":
        vocab = write(tmp_path / "vocab.json", b'{"a": 0, ')
    elif case == "corrupt merges":
        merges = write(tmp_path / "merges.txt", b"#version: 0.2\nzz\xc4\xa0 q\n")
    elif case == "bad workers":
        extra = ["--workers", "0"]
    out = tmp_path / "out.npy"
    source = ["--tokenizer", str(tmp_path / "no_such_dir")] if case == "missing tokenizer dir" else ["--vocab", vocab, "--merges", merges]
    try:
        status = main(["encode", *source, "--input", good, "--out", str(out), "--no-progress", *extra])
    except SystemExit as e:  # a usage mistake, caught while parsing the arguments
        status = e.code
    assert status == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1
    assert not out.exists() and not (tmp_path / "out.npy.partial").exists()


def test_bad_utf8_in_a_later_chunk_reports_the_file_offset(gpt2, tmp_path):
    path = tmp_path / "late.txt"
    path.write_bytes(b"fine text here\n" * 2000 + b"oops \xc3(\n" + b"more\n" * 100)
    with pytest.raises(CS336Error, match=f"byte offset {15 * 2000 + 5}"):
        encode_file(gpt2, path, tmp_path / "late.npy", workers=2, progress=False, chunk_bytes=4096)
    assert not (tmp_path / "late.npy").exists()


def test_memory_stays_bounded_by_the_chunk_not_the_file(gpt2, tmp_path):
    import tracemalloc

    path = tmp_path / "long.txt"
    path.write_text((FIXTURES / "tinystories_sample.txt").read_text(encoding="utf-8") * 400, encoding="utf-8")
    gpt2.encode(path.read_text(encoding="utf-8")[:20_000])  # fill the caches before measuring
    tracemalloc.start()
    stats = encode_file(gpt2, path, tmp_path / "ids.npy", workers=1, progress=False, chunk_bytes=50_000)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    whole_list = 8 * stats.tokens  # the pointers alone of one Python list holding every id
    assert stats.tokens > 300_000 and peak < whole_list / 4, (peak, whole_list)
