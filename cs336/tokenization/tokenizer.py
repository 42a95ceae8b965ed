"""Encoding and decoding with a trained byte-level BPE.

Encoding runs in three stages, each independent of the next:

1. split the text on the special tokens (longest first); each special token becomes one id;
2. cut every other piece into GPT-2 pre-tokens (`pretokenize.py`);
3. turn each pre-token's UTF-8 bytes into ids and apply the merges in rank order, lowest first,
   never across pre-token boundaries.

`_encode_plain` does exactly that. `encode` gives the same ids faster, with caches: running
text repeats the same few thousand words, so the text is first cut into pieces at pre-token
boundaries (pieces like `" cat."` or `" end.\\n\\nThe"`, see `pretokenize.space_pieces`) and each distinct
piece is pre-tokenized and merged once; after warm-up almost every piece costs one dict lookup.
The pieces a text brings that the caches lack are collected first and encoded together in a few
numpy calls (`_Texts`): pre-tokenized by `pretokenize.pretoken_starts`, the whole tokens among
their pre-tokens looked up by `merge.WholeTokens`, and the rest merged in one `merge.merge_many`
call instead of one by one.

>>> vocab = {i: bytes([i]) for i in range(256)} | {256: b"hi", 257: b" hi"}
>>> tok = Tokenizer(vocab, [(b"h", b"i"), (b" ", b"hi")], special_tokens=["<|eot|>"])
>>> tok.encode("hi hi<|eot|>!")
[256, 257, 258, 33]
>>> tok.decode([256, 257, 258, 33])
'hi hi<|eot|>!'
"""

from __future__ import annotations

import gc
import json
import os
from collections.abc import Iterable, Iterator
from functools import reduce
from itertools import chain, islice
from operator import iadd
from pathlib import Path

import numpy as np

from cs336.errors import CS336Error
from cs336.tokenization.files import MERGES_FILE, STATS_FILE, VOCAB_FILE, load_vocab_merges, save_vocab_merges
from cs336.tokenization.hashing import distinct_substrings, substring_hashes
from cs336.tokenization.merge import MergeTable, PairRanks, WholeTokens, merge_fast, merge_heap, merge_many, merge_plain
from cs336.tokenization.pretokenize import (
    _SAFE_CUT,
    GPT2_REGEX,
    is_safe_split,
    join_pieces,
    pretoken_starts,
    space_pieces,
    split_on_special_tokens,
)

# Below this many bytes `merge_fast` (quadratic in the worst case) beats building a heap.
_HEAP_FROM = 64
# From this many new pre-tokens on, `merge_many` (a few numpy calls a round) beats `merge_fast`.
_MANY_FROM = 100

# Texts longer than this many characters (a line without spaces, a long run of digits) are
# encoded but not kept in the caches: they seldom repeat, and keeping them would make memory grow
# with their length.
_CACHE_KEY_MAX = 256


class Tokenizer:
    """A byte-level BPE tokenizer: `vocab` (id -> bytes), `merges` in rank order, special tokens.

    Special tokens missing from `vocab` are appended with new ids. `cache_size` bounds each of the
    three caches (piece -> ids, spaced piece -> ids, pre-token -> ids), beyond the tokens they
    start with (see `_whole_tokens`); when one is full all three start again, so memory stays flat
    on any input.
    """

    def __init__(
        self,
        vocab: dict[int, bytes],
        merges: list[tuple[bytes, bytes]],
        special_tokens: list[str] | None = None,
        *,
        cache_size: int = 200_000,
    ):
        self.vocab: dict[int, bytes] = dict(vocab)
        self.merges: list[tuple[bytes, bytes]] = list(merges)
        self.special_tokens: list[str] = list(dict.fromkeys(special_tokens or []))
        self._id_of: dict[bytes, int] = {}
        for i, token in self.vocab.items():
            if token in self._id_of:
                raise CS336Error(f"vocab is not a bijection: ids {self._id_of[token]} and {i} are both {token!r}")
            self._id_of[token] = i
        for s in self.special_tokens:
            if not s:
                raise CS336Error("special tokens must be non-empty strings")
            b = s.encode("utf-8")
            if b not in self._id_of:
                new_id = max(self.vocab, default=-1) + 1
                self.vocab[new_id], self._id_of[b] = b, new_id
        missing = [b for b in range(256) if bytes([b]) not in self._id_of]
        if missing:
            raise CS336Error(f"vocab lacks {len(missing)} of the 256 single bytes (e.g. {bytes([missing[0]])!r})")
        self._byte_ids = [self._id_of[bytes([b])] for b in range(256)]
        self._merges: MergeTable = {}
        for rank, (a, b) in enumerate(self.merges):
            if a not in self._id_of or b not in self._id_of or a + b not in self._id_of:
                bad = next(t for t in (a, b, a + b) if t not in self._id_of)
                raise CS336Error(f"merge {rank} ({a!r}, {b!r}) uses {bad!r}, which is not in the vocab")
            # setdefault: a repeated merge can never fire a second time
            self._merges.setdefault((self._id_of[a], self._id_of[b]), (rank, self._id_of[a + b]))
        self._pair_ranks = PairRanks(self._merges, self._byte_ids, max(self.vocab) + 1)
        self._whole = self._whole_tokens()
        self._whole_ids = WholeTokens({t.encode("utf-8"): ids[0] for t, ids in self._whole.items()})
        self._special_ids = {s: self._id_of[s.encode("utf-8")] for s in self.special_tokens}
        self._max_special = max((len(s) for s in self.special_tokens), default=0)
        self.cache_size = cache_size
        self._new_caches()

    # -- files ---------------------------------------------------------------------------------
    @classmethod
    def from_files(
        cls,
        vocab_filepath: str | os.PathLike,
        merges_filepath: str | os.PathLike,
        special_tokens: list[str] | None = None,
        **options,
    ) -> Tokenizer:
        """Load GPT-2-format `vocab.json` + `merges.txt` (as written by `save` or by GPT-2)."""
        vocab, merges = load_vocab_merges(vocab_filepath, merges_filepath)
        try:
            return cls(vocab, merges, special_tokens, **options)
        except CS336Error as e:  # the files disagree: say which files
            raise CS336Error(f"{merges_filepath} does not fit {vocab_filepath}: {e}") from None

    def save(self, vocab_filepath: str | os.PathLike, merges_filepath: str | os.PathLike) -> None:
        """Write GPT-2-format files; `from_files` reads them back to an equal tokenizer."""
        save_vocab_merges(self.vocab, self.merges, vocab_filepath, merges_filepath)

    def _whole_tokens(self) -> dict[str, tuple[int]]:
        """`{text: (id,)}` for each token that is one pre-token and whose bytes merge into it.

        That is nearly every token (GPT-2: 49,912 of 50,257), and such tokens are most of the
        pieces and new pre-tokens of a text (" the", " cat"), so the piece caches start with them,
        and `_whole_ids` finds them among new pre-tokens: they cost a fresh tokenizer no merging
        (tiktoken, too, looks a pre-token up in the vocab before merging it). The tokens whose bytes
        merge into something else are left to the merges.
        """
        tokens = [t for t in self._id_of if t]
        whole = {}
        for token, ids in zip(tokens, merge_many(tokens, self._pair_ranks)):
            try:
                text = token.decode("utf-8")
            except UnicodeDecodeError:  # part of a character: never a whole pre-token
                continue
            if ids == [self._id_of[token]] and GPT2_REGEX.findall(text) == [text]:
                whole[text] = (ids[0],)
        return whole

    def _new_caches(self) -> None:
        # text -> its ids, as tuples: they are only ever copied out, and the garbage collector
        # stops tracking a tuple of ints, so a large cache costs it nothing. A token that is one
        # pre-token is also a piece that pre-tokenizes to itself; led by a space, it is a spaced
        # piece. The pre-token cache keeps the merged pre-tokens that are not whole tokens (those
        # `_whole_ids` finds), by their UTF-8 bytes.
        self._pretoken_cache: dict[bytes, tuple[int, ...]] = {}
        self._piece_cache: dict[str, tuple[int, ...]] = {t: ids for t, ids in self._whole.items() if t[0] != " "}
        self._spaced_cache: dict[str, tuple[int, ...]] = {  # part -> ids of " " + part
            t[1:]: ids for t, ids in self._whole.items() if t[0] == " "
        }
        self._prefilled = (len(self._spaced_cache), len(self._piece_cache), len(self._pretoken_cache))

    def __getstate__(self):  # a pickled copy (for a worker process) gets the tables, not the caches
        state = self.__dict__.copy()
        del state["_pretoken_cache"], state["_piece_cache"], state["_spaced_cache"]
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._new_caches()

    # -- encoding ------------------------------------------------------------------------------
    def _merge_words(self, words: list[bytes]) -> list[list[int]]:
        """The ids of each word (a pre-token's UTF-8 bytes) after the merges, as `merge_plain`
        gives them: `merge_many` takes the short words when they are enough to pay for its numpy
        calls; the others go one at a time (`_merge_word`)."""
        short = [w for w in words if len(w) < _HEAP_FROM]
        if len(short) < _MANY_FROM:
            return list(map(self._merge_word, words))
        merged = iter(merge_many(short, self._pair_ranks))
        return [next(merged) if len(w) < _HEAP_FROM else self._merge_word(w) for w in words]

    def _merge_word(self, word: bytes) -> list[int]:
        merge = merge_heap if len(word) >= _HEAP_FROM else merge_fast
        return merge([self._byte_ids[b] for b in word], self._merges)

    def _encode_missed(self, pieces: list[str], parts: list[str]) -> list[tuple[dict, str | bytes]]:
        """Put the ids of `pieces` and of the spaced `parts` (" " + part) into the piece caches,
        all of them together in a few numpy calls (`_Texts`), merging their new pre-tokens in one
        `_merge_words` call. Returns the `(cache, key)` entries too long to keep, for `encode` to
        drop once it has used them."""
        texts, chars, text_starts = join_pieces(pieces, parts)
        batch = _Texts(texts, chars, text_starts, self._whole_ids)
        new = [word for word in batch.words if word not in self._pretoken_cache]
        self._pretoken_cache.update(zip(new, map(tuple, self._merge_words(new))))
        ids = batch.ids(list(map(self._pretoken_cache.__getitem__, batch.words)))
        self._piece_cache.update(zip(pieces, ids))
        self._spaced_cache.update(zip(parts, ids[len(pieces) :]))
        too_long = []
        lengths = np.diff(text_starts, append=len(chars))  # each piece's, each part's with its space
        for cache, keys, longest in (
            (self._piece_cache, pieces, lengths[: len(pieces)].max(initial=0)),
            (self._spaced_cache, parts, lengths[len(pieces) :].max(initial=1) - 1),
            (self._pretoken_cache, new, max(map(len, new), default=0)),
        ):
            if longest > _CACHE_KEY_MAX:
                too_long += [(cache, key) for key in keys if len(key) > _CACHE_KEY_MAX]
        return too_long

    def _assemble(self, stretches: Iterable[tuple[bool, str | list[str]]], ids: list[int]) -> None:
        """Append the ids of text cut by `space_pieces` to `ids`, from the piece caches
        (`KeyError` on a miss)."""
        for split, pieces in stretches:
            if split:
                ids += self._piece_cache[pieces[0]]
                # `ids += ...` for each part's ids, in C: the cost of a lookup and a copy
                reduce(iadd, map(self._spaced_cache.__getitem__, islice(pieces, 1, None)), ids)
            else:
                ids += self._piece_cache[pieces]

    def _encode_plain(self, text: str) -> list[int]:
        """The reference `encode`: stages 1-3 of the module docstring, no caches, `merge_plain`."""
        ids: list[int] = []
        for piece, is_special in split_on_special_tokens(text, self.special_tokens):
            if is_special:
                ids.append(self._special_ids[piece])
                continue
            for pretoken in GPT2_REGEX.findall(piece):
                ids += merge_plain([self._byte_ids[b] for b in pretoken.encode("utf-8")], self._merges)
        return ids

    def encode(self, text: str) -> list[int]:
        """Text -> token ids; equal to tiktoken's `gpt2` on the GPT-2 vocab.

        The text between special tokens is cut into pieces (`space_pieces`), segment by segment,
        and assembled from the caches. A segment with a piece the caches lack waits: the new
        pieces of all waiting segments are encoded together at the end, so that their new
        pre-tokens are merged in one `merge_many` call, and then the waiting segments are assembled.

        >>> Tokenizer({i: bytes([i]) for i in range(256)}, []).encode("hé")
        [104, 195, 169]
        """
        # encode makes no reference cycles, only many containers that stay alive (the waiting
        # segments, the new cache entries); the garbage collector's passes over them, which they
        # set off, took a tenth of a fresh encode. So it pauses until the ids are made.
        enabled = gc.isenabled()
        gc.disable()
        try:
            return self._encode(text)
        finally:
            if enabled:
                gc.enable()

    def _encode(self, text: str) -> list[int]:
        sizes = len(self._spaced_cache), len(self._piece_cache), len(self._pretoken_cache)
        if max(size - start for size, start in zip(sizes, self._prefilled)) > self.cache_size:
            self._new_caches()
        ids: list[int] = []  # the ids, up to the first segment that waits
        later: list = []  # then, in order: each segment's ids (a list) or, if it waits, its pieces (a tuple)
        pieces: set[str] = set()  # the pieces of the waiting segments
        parts: set[str] = set()  # their spaced pieces, as parts without the space
        for piece, is_special in split_on_special_tokens(text, self.special_tokens):
            out = [] if later else ids
            if is_special:
                out.append(self._special_ids[piece])
            else:
                stretches = tuple(space_pieces(piece))
                start = len(out)
                try:
                    self._assemble(stretches, out)
                except KeyError:  # a new piece: the segment waits for `_encode_missed`
                    del out[start:]
                    for split, got in stretches:
                        if split:
                            pieces.add(got[0])
                            parts.update(islice(got, 1, None))
                        else:
                            pieces.add(got)
                    out = stretches
            if out is not ids:
                later.append(out)
        if later:
            too_long = self._encode_missed(
                list(pieces.difference(self._piece_cache)), list(parts.difference(self._spaced_cache))
            )
            for item in later:
                if isinstance(item, tuple):
                    self._assemble(item, ids)
                else:
                    ids += item
            for cache, key in too_long:
                del cache[key]
        return ids

    def encode_iterable(self, iterable: Iterable[str], *, buffer_chars: int = 1 << 16) -> Iterator[int]:
        """Lazily encode a stream of strings (e.g. a file's lines) in constant memory.

        The ids equal `encode("".join(iterable))` whatever the chunking: text is buffered and
        only a prefix that ends at a boundary no later text can move (see `_safe_cut`) is
        encoded; the rest waits for more input.
        """
        buffer = ""
        for chunk in iterable:
            buffer += chunk
            if len(buffer) >= buffer_chars:
                cut = self._safe_cut(buffer)
                if cut > 0:
                    yield from self.encode(buffer[:cut])
                    buffer = buffer[cut:]
        if buffer:
            yield from self.encode(buffer)

    def _safe_cut(self, text: str) -> int:
        """The last position `k > 0` where `pretokenize.is_safe_split` allows a cut and every
        special token occurrence that could overlap `k` lies inside `text`; 0 if there is none.

        Then, for any continuation `rest`, `encode(text + rest)` equals
        `encode(text[:k]) + encode(text[k:] + rest)`. (Text without whitespace stays buffered.)
        """
        end = len(text) - self._max_special
        window = 1 << 10
        while end > 0:
            lo = max(0, end - window)
            cuts = [m.start() for m in _SAFE_CUT.finditer(text, lo, end)]
            for k in reversed(cuts):
                if k > 0 and is_safe_split(text, k, self.special_tokens):
                    return k
            if lo == 0:
                break
            end, window = lo + 1, window * 4
        return 0

    # -- decoding ------------------------------------------------------------------------------
    def decode(self, ids: Iterable[int]) -> str:
        """Ids -> text: the tokens' bytes, joined, decoded as UTF-8 with `errors="replace"`.

        >>> Tokenizer({i: bytes([i]) for i in range(256)}, []).decode([104, 195])
        'h\\ufffd'
        """
        ids = ids.tolist() if hasattr(ids, "tolist") else list(ids)  # numpy arrays: plain ints
        try:
            data = b"".join(map(self.vocab.__getitem__, ids))
        except (KeyError, TypeError):
            bad = next(i for i in ids if not _is_hashable(i) or i not in self.vocab)
            raise CS336Error(f"cannot decode id {bad!r}: not in the vocab ({len(self.vocab)} ids)") from None
        return data.decode("utf-8", errors="replace")

    def __len__(self) -> int:
        return len(self.vocab)

    def __repr__(self) -> str:
        return f"Tokenizer(vocab_size={len(self.vocab)}, merges={len(self.merges)}, special_tokens={self.special_tokens})"


class _Texts:
    """Many texts, encoded together in a few numpy calls: each is pre-tokenized alone
    (`pretoken_starts`), the whole tokens among the pre-tokens are looked up (`WholeTokens`), and
    `words` are the UTF-8 bytes of the others, each distinct one once, for the caller to merge;
    `ids` then gives each text's ids. `texts` holds them end to end, text i from character
    `text_starts[i]`, and `chars` are its code points (uint32).
    """

    def __init__(self, texts: str, chars: np.ndarray, text_starts: np.ndarray, whole_tokens: WholeTokens):
        data = np.frombuffer(texts.encode("utf-8"), np.uint8)
        starts = pretoken_starts(chars, text_starts)
        if len(data) > len(chars):  # not all ASCII: character offsets to byte offsets
            offsets = np.zeros(len(chars) + 1, np.int64)
            np.cumsum(1 + (chars >= 0x80) + (chars >= 0x800) + (chars >= 0x10000), out=offsets[1:])
            starts, text_starts = offsets[starts], offsets[text_starts]
        self.starts, self.text_starts = starts, text_starts
        ends = np.append(starts[1:], len(data))
        hashes = substring_hashes(data, starts, ends)
        self.whole = whole_tokens.ids(data, starts, ends, hashes)
        self.new = np.flatnonzero(self.whole < 0)
        first, self.group = distinct_substrings(data, starts[self.new], ends[self.new], hashes[self.new])
        distinct = self.new[first]
        raw = data.tobytes()
        self.words = [raw[a:b] for a, b in zip(starts[distinct].tolist(), ends[distinct].tolist())]

    def ids(self, merged: list[tuple[int, ...]]) -> list[tuple[int, ...]]:
        """Each text's ids, given the merged ids of each of `words`."""
        # Every pre-token's ids end to end: a whole token's id, or its distinct pre-token's merged
        # ids, gathered from `values` (all the merged ids, then the whole tokens').
        merged_lengths = np.fromiter(map(len, merged), np.int64, len(merged))
        is_whole = self.whole >= 0
        merged_ids = np.fromiter(chain.from_iterable(merged), np.int64, merged_lengths.sum())
        values = np.concatenate([merged_ids, self.whole[is_whole]])
        counts = np.ones(len(self.starts), np.int64)
        counts[self.new] = merged_lengths[self.group]
        source = np.empty(len(self.starts), np.int64)  # where each pre-token's ids start in `values`
        source[self.new] = (np.cumsum(merged_lengths) - merged_lengths)[self.group]
        source[is_whole] = np.arange(len(values) - is_whole.sum(), len(values))
        offsets = np.cumsum(counts) - counts
        flat = values[np.repeat(source - offsets, counts) + np.arange(counts.sum())].tolist()
        first_pretokens = np.searchsorted(self.starts, self.text_starts)
        bounds = np.append(offsets, len(flat))[first_pretokens].tolist() + [len(flat)]
        return list(map(tuple, map(flat.__getitem__, map(slice, bounds, bounds[1:]))))


def load_tokenizer(
    directory: str | os.PathLike | None = None,
    *,
    vocab: str | os.PathLike | None = None,
    merges: str | os.PathLike | None = None,
    special_tokens: list[str] | None = None,
) -> Tokenizer:
    """The tokenizer of a tokenizer directory (`vocab.json` + `merges.txt`, see `files.py`), or of
    explicit `vocab` and `merges` files, which also stand in for the directory's own.

    Without `special_tokens`, a directory written by `cs336 train-bpe` supplies the ones it was
    trained with (from its `stats.json`), so `<|endoftext|>` is not silently encoded as text; a
    directory without `stats.json` has none.

    >>> load_tokenizer("runs/tok-10k").special_tokens  # doctest: +SKIP
    ['<|endoftext|>']
    """
    if directory is not None:
        d = Path(directory)
        if not d.is_dir():
            raise CS336Error(f"tokenizer directory not found: {d}")
        vocab, merges = vocab or d / VOCAB_FILE, merges or d / MERGES_FILE
        missing = [os.fspath(p) for p in (vocab, merges) if not Path(p).is_file()]
        if missing:
            raise CS336Error(f"no tokenizer in {d}: {' and '.join(missing)} not found")
        if special_tokens is None and (d / STATS_FILE).is_file():
            try:
                special_tokens = json.loads((d / STATS_FILE).read_text(encoding="utf-8")).get("special_tokens")
            except (json.JSONDecodeError, UnicodeDecodeError, AttributeError) as e:
                raise CS336Error(f"{d / STATS_FILE}: not a valid stats file ({e})") from None
    if vocab is None or merges is None:
        raise CS336Error("give a tokenizer directory, or both a vocab file and a merges file")
    return Tokenizer.from_files(vocab, merges, special_tokens)


def _is_hashable(x) -> bool:
    try:
        hash(x)
    except TypeError:
        return False
    return True
