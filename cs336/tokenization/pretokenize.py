"""Pre-tokenization: split text on special tokens, then into GPT-2 pre-tokens.

BPE never merges across the pieces produced here, so both training (`bpe.py`) and encoding
(`tokenizer.py`) start from these functions. For training, the second half of this file counts
the pre-tokens of a whole file: cut into chunks only where a cut provably changes nothing, and
counted in parallel worker processes (`count_pretokens_in_file`).
"""

from __future__ import annotations

import heapq
import multiprocessing
import os
import re
from collections import Counter
from collections.abc import Iterator
from itertools import chain, islice

import numpy as np
import regex
from tqdm import tqdm

from cs336.errors import CS336Error
from cs336.tokenization.hashing import distinct_substrings


# The GPT-2 pre-tokenizer pattern: contractions, letters, numbers, other symbols (each optionally
# led by one space), then whitespace runs that leave the last space to the next word.
GPT2_PATTERN = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
GPT2_REGEX = regex.compile(GPT2_PATTERN)

# The special token that separates documents in TinyStories and OpenWebText (GPT-2's only one).
END_OF_TEXT = "<|endoftext|>"


def special_token_regex(special_tokens: list[str] | tuple[str, ...] | None) -> regex.Pattern | None:
    """A pattern matching any special token, longest first (so `<|a|><|a|>` wins over `<|a|>`)."""
    if not special_tokens:
        return None
    ordered = sorted(set(special_tokens), key=lambda t: (-len(t), t))
    return regex.compile("|".join(regex.escape(t) for t in ordered))


def split_on_special_tokens(text: str, special_tokens: list[str] | tuple[str, ...] | None) -> Iterator[tuple[str, bool]]:
    """Yield `(piece, is_special)` in order; empty ordinary pieces are skipped.

    >>> list(split_on_special_tokens("a<|x|>b", ["<|x|>"]))
    [('a', False), ('<|x|>', True), ('b', False)]
    """
    pattern = special_token_regex(special_tokens)
    if pattern is None:
        if text:
            yield text, False
        return
    pos = 0
    for m in pattern.finditer(text):
        if m.start() > pos:
            yield text[pos : m.start()], False
        yield m.group(), True
        pos = m.end()
    if pos < len(text):
        yield text[pos:], False


def pretokenize(text: str) -> list[str]:
    """GPT-2 pre-tokens of a text that contains no special tokens.

    >>> pretokenize("Hello, world!  ok")
    ['Hello', ',', ' world', '!', ' ', ' ok']
    """
    return GPT2_REGEX.findall(text)


# The GPT-2 pattern on many pieces at once, in numpy. Its matches are the runs of one class of
# character -- letters (`\p{L}`), numbers (`\p{N}`), whitespace (`\s`), anything else -- amended
# three times:
#   - a whitespace run followed by something else leaves its last character to a match of its own
#     (`\s+(?!\S)` stops one short, `\s+` takes the last one);
#   - a space (U+0020) followed by something else than whitespace joins that character's match
#     (` ?\p{L}+`, ` ?\p{N}+`, ` ?[^\s\p{L}\p{N}]+`);
#   - an apostrophe followed by s, d, m, t, ll, ve or re is a match of its own (a contraction) where
#     a match starts: unless a run of "anything else" reaches it (which the apostrophe would join),
#     or a space joins it.
# A test checks this against the pattern.
_LETTER, _NUMBER, _SPACE, _OTHER, _UNKNOWN = range(5)
_CLASS = np.full(0x110000, _UNKNOWN, np.uint8)  # each code point's class, filled in as met
_CLASS_PATTERNS = [(_LETTER, regex.compile(r"\p{L}")), (_NUMBER, regex.compile(r"\p{N}")), (_SPACE, regex.compile(r"\s"))]
_CONTRACTIONS = ["s", "d", "m", "t", "ll", "ve", "re"]  # after an apostrophe


def _classes(chars: np.ndarray) -> np.ndarray:
    kind = _CLASS[chars]
    unknown = kind == _UNKNOWN
    if unknown.any():
        for c in np.unique(chars[unknown]).tolist():
            _CLASS[c] = next((k for k, pattern in _CLASS_PATTERNS if pattern.match(chr(c))), _OTHER)
        kind = _CLASS[chars]
    return kind


def pretoken_starts(chars: np.ndarray, piece_starts: np.ndarray) -> np.ndarray:
    """Where the pre-tokens of many pieces start, each piece pre-tokenized alone: `chars` holds the
    pieces' code points end to end (uint32, as `str.encode("utf-32-le")` gives them), piece i from
    `piece_starts[i]` (ascending, the first 0). Every piece start that is not the end of `chars` is
    among the positions returned, which ascend.

    >>> chars = np.frombuffer(" cat's.\\n\\nThé 42x".encode("utf-32-le"), np.uint32)
    >>> [t.tobytes().decode("utf-32-le") for t in np.split(chars, pretoken_starts(chars, np.array([0, 12]))[1:])]
    [' cat', "'s", '.', '\\n', '\\n', 'Thé', ' 42', 'x']
    """
    n = len(chars)
    kind = _classes(chars)
    start = np.ones(n + 1, bool)  # start[i]: a pre-token starts at i
    np.not_equal(kind[1:], kind[:-1], out=start[1:n])
    start[piece_starts] = True
    boundary = np.zeros(n + 1, bool)  # where a piece starts or `chars` ends
    boundary[piece_starts] = boundary[n] = True
    runs = np.flatnonzero(start[:n])
    ends = np.append(runs[1:], n)
    followed = (kind[runs] == _SPACE) & (ends - runs > 1) & ~boundary[ends]
    start[ends[followed] - 1] = True
    joined = np.flatnonzero(chars[: n - 1] == ord(" ")) + 1
    joined = joined[(kind[joined] != _SPACE) & ~boundary[joined]]
    start[joined] = False
    apostrophes = np.flatnonzero(chars == ord("'"))
    apostrophes = apostrophes[start[apostrophes]]  # where a match starts
    for ending in _CONTRACTIONS:
        at = apostrophes[apostrophes + len(ending) < n]
        for k, c in enumerate(ending, 1):  # the ending follows, in the same piece
            at = at[(chars[at + k] == ord(c)) & ~boundary[at + k]]
        start[at + 1] = False
        start[at + len(ending) + 1] = True
    return np.flatnonzero(start[:n])


def join_pieces(pieces: list[str], parts: list[str]) -> tuple[str, np.ndarray, np.ndarray]:
    """`pieces`, then each of `parts` led by a space, end to end, for `pretoken_starts`: the text,
    its code points (uint32) and where each piece starts. A part holds no space (as `space_pieces`
    cuts them), so the spaces after the pieces are where the parts start.

    >>> text, chars, starts = join_pieces(["a.", "\\n"], ["cat", ""])
    >>> text, starts.tolist()
    ('a.\\n cat ', [0, 2, 3, 7])
    """
    text = "".join(pieces) + " " + " ".join(parts) if parts else "".join(pieces)
    chars = np.frombuffer(text.encode("utf-32-le"), np.uint32)
    lengths = np.fromiter(map(len, pieces), np.int64, len(pieces))
    after_pieces = int(lengths.sum())
    part_starts = np.flatnonzero(chars[after_pieces:] == ord(" ")) + after_pieces
    return text, chars, np.concatenate([np.cumsum(lengths) - lengths, part_starts])


# ---------------------------------------------------------------------------------------------
# Counting pre-tokens of a file: chunks that split exactly, processed in parallel
# ---------------------------------------------------------------------------------------------
#
# Training only needs how often each pre-token occurs. A big file is cut into chunks that are
# counted independently (in worker processes) and the counts are added up. A cut is only allowed
# where it provably changes nothing, i.e. where pre-tokenizing the two halves gives exactly the
# pre-tokens of the whole. Two kinds of position are safe (see `is_safe_split`):
#
# 1. The start of a special-token occurrence that no other occurrence overlaps: the text is split
#    there anyway.
# 2. Between a non-whitespace and a whitespace character, `...x| y...`, when no special token
#    overlaps the cut. The GPT-2 pattern never lets a match run from non-whitespace into
#    whitespace (letters, numbers and symbols runs stop at whitespace; whitespace runs contain
#    only whitespace), the pattern has no look-behind, and every alternative that reaches the cut
#    stops there both in the whole text (it sees whitespace) and in the left half (it sees the
#    end). So a match boundary sits at the cut in both cases and every match is the same.
#    A cut at *any* whitespace would not be safe: "a\n\nb" gives ['a', '\n', '\n', 'b'] but
#    "a\n\n" + "b" gives ['a', '\n\n', 'b'] (the lone `\s+(?!\S)` sees the end of the text).
# 3. Between a letter and a character that is neither a letter nor whitespace, `...x|.` or
#    `...x|1`, when no special token overlaps the cut. Only a letter run or a contraction can
#    hold the letter; a letter run stops at the non-letter, and a contraction ending past the
#    cut would need a letter there ("'ll"). This rule lets text without whitespace (CJK with
#    punctuation, minified data) be cut too. (A symbol before a letter is not safe: "'|s".)
#
# Chunks are therefore found near evenly spaced offsets with only a small window read around
# each, and every worker reads just its own byte range, so memory is bounded by the chunk size
# and the number of distinct pre-tokens, never by the file size.

# Rules 2 and 3 as one pattern matching the empty string at each such position.
_SAFE_CUT = regex.compile(r"(?<=\S)(?=\s)|(?<=\p{L})(?=[^\s\p{L}])")


def is_safe_split(text: str, pos: int, special_tokens: list[str] | tuple[str, ...] | None = None) -> bool:
    """Whether cutting `text` at `pos` leaves its pre-tokens unchanged (see the comment above).

    >>> is_safe_split("a b", 1), is_safe_split("a\\n\\nb", 3), is_safe_split("x<|e|>y", 1, ["<|e|>"])
    (True, False, True)
    >>> is_safe_split("a.b", 1), is_safe_split("a.b", 2), is_safe_split("it's", 2), is_safe_split("it's", 3)
    (True, False, True, False)
    """
    if pos <= 0 or pos >= len(text):
        return True
    for tok in special_tokens or ():
        # No occurrence may straddle the cut.
        start = text.find(tok, max(0, pos - len(tok) + 1))
        while start != -1 and start < pos:
            if start + len(tok) > pos:
                return False
            start = text.find(tok, start + 1)
    if any(text.startswith(tok, pos) for tok in special_tokens or ()):
        return True
    return _SAFE_CUT.match(text, pos) is not None


def _safe_split_candidates(text: str, special_tokens: list[str] | tuple[str, ...] | None) -> Iterator[int]:
    """Positions in `text` worth testing with `is_safe_split`, in increasing order (lazily)."""
    def occurrences(tok: str) -> Iterator[int]:
        start = text.find(tok)
        while start != -1:
            yield start
            start = text.find(tok, start + 1)

    streams = [(m.start() for m in _SAFE_CUT.finditer(text))]
    streams += [occurrences(tok) for tok in special_tokens or ()]
    return heapq.merge(*streams)


def find_safe_split(path: str | os.PathLike, offset: int, special_tokens: list[str] | tuple[str, ...] | None,
                    window: int = 1 << 12) -> int:
    """The first byte offset >= `offset` in the UTF-8 file `path` where a cut is safe (or the size).

    Reads only a window around `offset` (doubling it while nothing is found).
    """
    size = os.path.getsize(path)
    if offset <= 0 or offset >= size:
        return min(max(offset, 0), size)
    longest = max((len(t.encode("utf-8")) for t in special_tokens or ()), default=1)
    with open(path, "rb") as f:
        while True:
            lo = max(0, offset - longest - 4)
            f.seek(lo)
            data = f.read(offset + window - lo)
            # Start on a character boundary: skip UTF-8 continuation bytes.
            skip = 0
            while skip < min(3, len(data)) and 0x80 <= data[skip] < 0xC0:
                skip += 1
            lo += skip
            # surrogateescape keeps one character per undecodable byte, so offsets stay exact.
            text = data[skip:].decode("utf-8", errors="surrogateescape")
            at_eof = lo + len(data) - skip >= size
            # Near the window's end an occurrence of a special token may be cut off; don't decide there.
            limit = len(text) if at_eof else len(text) - longest
            byte_pos = lo
            char_pos = 0
            for cand in _safe_split_candidates(text, special_tokens):
                if cand >= limit:
                    break
                byte_pos += len(text[char_pos:cand].encode("utf-8", errors="surrogateescape"))
                char_pos = cand
                if byte_pos >= offset and is_safe_split(text, cand, special_tokens):
                    return byte_pos
            if at_eof:
                return size
            window *= 2


def chunk_boundaries(path: str | os.PathLike, chunk_bytes: int,
                     special_tokens: list[str] | tuple[str, ...] | None) -> list[int]:
    """Safe cut offsets `[0, ..., size]` splitting the file into chunks of about `chunk_bytes`."""
    size = os.path.getsize(path)
    bounds = [0]
    target = chunk_bytes
    while target < size:
        cut = find_safe_split(path, max(target, bounds[-1] + 1), special_tokens)
        if cut >= size:
            break
        bounds.append(cut)
        target = cut + chunk_bytes
    bounds.append(size)
    return bounds


def count_pretokens(text: str, special_tokens: list[str] | tuple[str, ...] | None) -> Counter[str]:
    """How often each pre-token occurs in `text`; special tokens only separate, and are not counted.

    The plain reference: split, pre-tokenize everything, count. `count_pretokens_fast` gives the
    same counts faster.

    >>> count_pretokens("a cat<|e|>a cat", ["<|e|>"])
    Counter({'a': 2, ' cat': 2})
    """
    pattern = special_token_regex(special_tokens)
    pieces = pattern.split(text) if pattern is not None else [text]
    return Counter(chain.from_iterable(map(GPT2_REGEX.findall, pieces)))


# The characters the `regex` package's `\s` matches (Unicode White_Space); a test checks this
# list against `regex` over every code point. The standard `re` module's `\s` differs (it also
# matches U+001C..U+001F), so the class is spelled out for it.
_WHITESPACE = "\t\n\x0b\x0c\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"

# Cutting text into pieces that pre-tokenize alone as they do in place (for counting and encoding
# each distinct piece once). `str.split(" ")` is the cheapest way to cut text (four times faster than a regex scan), and a
# cut before a space is a pre-token boundary in all but one case. A space at position p starts a
# pre-token when
#   - the next character is not whitespace: a whitespace run before it ends one character early
#     (`\s+(?!\S)`), and the space joins the word (` ?\p{L}+`, ` ?\p{N}+`, ...); or
#   - the previous character is not whitespace: no GPT-2 pattern matches non-whitespace followed
#     by whitespace.
# The exception is a space with whitespace on both sides ("a \n\nb" is fine, "a\n \nb" is not),
# or a space ending the text after whitespace: that space sits inside a run of whitespace that
# `\s+(?!\S)` keeps whole. The GPT-2 pattern looks at most one character past a match, and a
# space looks the same to it as the end of the text, so between boundaries each piece
# pre-tokenizes alone exactly as in place.
_INNER_SPACE = re.compile(f" (?<=[{_WHITESPACE}] )(?=[{_WHITESPACE}]|\\Z)")
_WORD_AFTER = re.compile(f"[{_WHITESPACE}]*[^{_WHITESPACE}]*")
# `_WHITESPACE` as a set of characters (it spells U+2000-U+200A as a range).
_WHITESPACE_SET = frozenset(re.findall(f"[{_WHITESPACE}]", "".join(map(chr, range(0x3001)))))


def space_pieces(text: str) -> Iterator[tuple[bool, str | list[str]]]:
    """Cut `text` at pre-token boundaries: `(True, parts)` for a stretch cut at its spaces, where
    `parts[0]` is a piece and each later part is a piece without its leading space, and
    `(False, piece)` for a stretch around an inner space (see above), whole.

    >>> list(space_pieces("a cat.\\n \\nThe end"))
    [(True, ['a', 'cat.']), (False, '\\n \\nThe'), (True, ['', 'end'])]
    """
    start = 0
    for m in _INNER_SPACE.finditer(text):
        if m.start() < start:
            continue  # inside the stretch already taken
        run = m.start()  # back to the start of the whitespace run: a boundary (non-whitespace before it)
        while run > start and text[run - 1] in _WHITESPACE_SET:
            run -= 1
        end = _WORD_AFTER.match(text, m.start()).end()  # through the word after it: a boundary
        if run > start:
            yield True, text[start:run].split(" ")
        yield False, text[run:end]
        start = end
    if start < len(text) or not text:
        yield True, text[start:].split(" ")


def count_pretokens_fast(text: str, special_tokens: list[str] | tuple[str, ...] | None) -> Counter[str]:
    """The same counts as `count_pretokens`, pre-tokenizing each distinct piece only once.

    Natural text repeats the same few thousand words; cutting it at pre-token boundaries
    (`space_pieces`: mostly at its spaces) gives pieces like " cat." that are counted first; the
    distinct pieces are then pre-tokenized together (`pretoken_starts`) and equal pre-tokens
    found by hash (`hashing.distinct_substrings`).

    >>> count_pretokens_fast("a cat. a cat.", None) == count_pretokens("a cat. a cat.", None)
    True
    """
    pattern = special_token_regex(special_tokens)
    documents = pattern.split(text) if pattern is not None else [text]
    pieces: Counter[str] = Counter()  # piece -> count
    spaced: Counter[str] = Counter()  # part -> count of the piece " " + part
    for document in documents:
        for split, got in space_pieces(document):
            if split:
                pieces[got[0]] += 1
                spaced.update(islice(got, 1, None))
            else:
                pieces[got] += 1
    text, chars, piece_starts = join_pieces(list(pieces), list(spaced))
    starts = pretoken_starts(chars, piece_starts)
    ends = np.append(starts[1:], len(chars))
    first, group = distinct_substrings(chars, starts, ends)
    # each pre-token counts as often as its piece
    weights = np.fromiter(chain(pieces.values(), spaced.values()), np.int64, len(pieces) + len(spaced))
    totals = np.bincount(group, weights[np.searchsorted(piece_starts, starts, side="right") - 1], len(first))
    counts: Counter[str] = Counter()
    for a, b, n in zip(starts[first].tolist(), ends[first].tolist(), totals.astype(np.int64).tolist()):
        counts[text[a:b]] += n
    return counts


def _decode(data: bytes, path: str, offset: int) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise CS336Error(f"{path}: invalid UTF-8 at byte offset {offset + e.start}") from None


def _rss_kib(field: str) -> int:
    """`VmRSS` or `VmHWM` (peak) of this process in KiB, from /proc (0 where unavailable)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def reset_peak_rss() -> None:
    """Restart this process's peak-RSS counter (Linux); elsewhere the lifetime peak is reported."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def rss_bytes() -> int:
    """Resident memory of this process now (0 where /proc is unavailable)."""
    return _rss_kib("VmRSS") * 1024


def peak_rss_bytes() -> int:
    """Peak resident memory of this process since `reset_peak_rss` (or since start)."""
    kib = _rss_kib("VmHWM")
    if kib == 0:
        import resource  # here: Unix only, and only where /proc is missing

        kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kib * 1024


_WORKER_START_RSS = 0


def _worker_init() -> None:
    global _WORKER_START_RSS
    reset_peak_rss()
    _WORKER_START_RSS = rss_bytes()


def _count_chunks(
    task: tuple[str, list[tuple[int, int]], tuple[str, ...]],
) -> tuple[Counter[str], int, int, int]:
    """Worker: count the pre-tokens of the byte ranges `[start, end)` of the file, one at a time.

    Returns the counts, the number of bytes read, this process's id and its memory growth so far
    (peak RSS minus the RSS at start, which is shared with the main process).
    """
    path, ranges, special_tokens = task
    counts: Counter[str] = Counter()
    with open(path, "rb") as f:
        for start, end in ranges:
            f.seek(start)
            counts.update(count_pretokens_fast(_decode(f.read(end - start), path, start), special_tokens))
    nbytes = sum(end - start for start, end in ranges)
    return counts, nbytes, os.getpid(), max(0, peak_rss_bytes() - _WORKER_START_RSS)


def count_pretokens_in_file(
    path: str | os.PathLike,
    special_tokens: list[str] | tuple[str, ...] | None,
    num_workers: int | None = None,
    chunk_bytes: int = 1 << 20,
    progress: bool = False,
    info: dict | None = None,
) -> dict[bytes, int]:
    """`{pre-token bytes: count}` over a whole UTF-8 file, counted chunk by chunk in parallel.

    `num_workers=1` counts in this process; `None` uses every CPU. The result equals
    `count_pretokens(whole text)` exactly (tested), whatever the chunking. `info`, if given, is
    filled with `chunks`, `num_workers` and `worker_memory_bytes` (the sum of the workers' memory
    growth above what they share with the main process).
    """
    path = os.fspath(path)
    special_tokens = tuple(special_tokens or ())
    bounds = chunk_boundaries(path, chunk_bytes, special_tokens)
    chunks = list(zip(bounds, bounds[1:]))
    if num_workers is None:
        num_workers = os.cpu_count() or 1
    num_workers = max(1, min(num_workers, len(chunks)))
    # A task is a run of consecutive chunks, read one by one and counted together: fewer, larger
    # results to send back and add up, while still about 4 tasks per worker to balance the load.
    per_task = max(1, min(16, len(chunks) // (4 * num_workers)))
    tasks = [(path, chunks[i : i + per_task], special_tokens) for i in range(0, len(chunks), per_task)]
    bar = None
    if progress:

        bar = tqdm(total=bounds[-1], unit="B", unit_scale=True, desc="pre-tokenize")
    total: Counter[str] = Counter()
    worker_memory: dict[int, int] = {}
    if num_workers == 1:
        results = map(_count_chunks, tasks)
        pool = None
    else:
        # fork (where available) gives the workers the already imported package for free.
        methods = multiprocessing.get_all_start_methods()
        ctx = multiprocessing.get_context("fork" if "fork" in methods else None)
        pool = ctx.Pool(num_workers, initializer=_worker_init)
        results = pool.imap_unordered(_count_chunks, tasks)
    try:
        for counts, nbytes, pid, grown in results:
            total.update(counts)
            if pool is not None:
                worker_memory[pid] = max(worker_memory.get(pid, 0), grown)
            if bar is not None:
                bar.update(nbytes)
        if pool is not None:
            pool.close()
    finally:
        if pool is not None:
            pool.terminate()
            pool.join()
    if bar is not None:
        bar.close()
    if info is not None:
        info.update(chunks=len(chunks), num_workers=num_workers, worker_memory_bytes=sum(worker_memory.values()))
    return {s.encode("utf-8"): c for s, c in total.items()}
