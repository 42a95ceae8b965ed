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

>>> vocab = {i: bytes([i]) for i in range(256)} | {256: b"hi", 257: b" hi"}
>>> tok = Tokenizer(vocab, [(b"h", b"i"), (b" ", b"hi")], special_tokens=["<|eot|>"])
>>> tok.encode("hi hi<|eot|>!")
[256, 257, 258, 33]
>>> tok.decode([256, 257, 258, 33])
'hi hi<|eot|>!'
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from itertools import chain, islice
from pathlib import Path

from cs336.errors import CS336Error
from cs336.tokenization.files import MERGES_FILE, STATS_FILE, VOCAB_FILE, load_vocab_merges, save_vocab_merges
from cs336.tokenization.merge import MergeTable, merge_fast, merge_heap, merge_plain
from cs336.tokenization.pretokenize import (
    _SAFE_CUT,
    GPT2_REGEX,
    is_safe_split,
    pretokenize_piece,
    space_pieces,
    split_on_special_tokens,
)

# Below this many bytes `merge_fast` (quadratic in the worst case) beats building a heap.
_HEAP_FROM = 64


class _Cache(dict):
    """text -> its ids; a miss calls `encode` once (`__missing__`), a hit is a C-level lookup.

    Texts longer than `_CACHE_KEY_MAX` characters (a line of text without spaces, a long run of
    digits) are encoded but not kept: they seldom repeat, and keeping them would make memory grow
    with their length.
    """

    def __init__(self, encode):
        super().__init__()
        self.encode = encode

    def __missing__(self, text: str) -> list[int]:
        ids = self.encode(text)
        if len(text) <= _CACHE_KEY_MAX:
            self[text] = ids
        return ids


_CACHE_KEY_MAX = 256


class Tokenizer:
    """A byte-level BPE tokenizer: `vocab` (id -> bytes), `merges` in rank order, special tokens.

    Special tokens missing from `vocab` are appended with new ids. `cache_size` bounds each of the
    two caches (piece -> ids, pre-token -> ids); a full cache is emptied, so memory stays flat on
    any input.
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

    def _new_caches(self) -> None:
        self._pretoken_cache = _Cache(self._encode_pretoken)
        self._piece_cache = _Cache(self._encode_piece)
        self._spaced_cache = _Cache(self._encode_spaced)  # part -> ids of " " + part

    def __getstate__(self):  # a pickled copy (for a worker process) gets the tables, not the caches
        state = self.__dict__.copy()
        del state["_pretoken_cache"], state["_piece_cache"], state["_spaced_cache"]
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._new_caches()

    # -- encoding ------------------------------------------------------------------------------
    def _encode_pretoken(self, pretoken: str) -> list[int]:
        ids = [self._byte_ids[b] for b in pretoken.encode("utf-8")]
        merge = merge_heap if len(ids) >= _HEAP_FROM else merge_fast
        return merge(ids, self._merges)

    def _encode_piece(self, piece: str) -> list[int]:
        word = piece[1:] if piece[:1] == " " else piece
        if word.isascii() and word.isalpha():  # " cat": one pre-token, no need to run the pattern
            return self._pretoken_cache[piece]
        return list(chain.from_iterable(map(self._pretoken_cache.__getitem__, pretokenize_piece(piece))))

    def _encode_spaced(self, part: str) -> list[int]:
        return self._encode_piece(" " + part)

    def _encode_ordinary(self, text: str) -> Iterator[int]:
        """Ids of text that holds no special tokens, as a lazy chain of the cached lists."""
        for cache in (self._spaced_cache, self._piece_cache, self._pretoken_cache):
            if len(cache) > self.cache_size:
                cache.clear()
        stretches = []
        for split, pieces in space_pieces(text):
            if split:
                stretches.append(self._piece_cache[pieces[0]])
                stretches.append(chain.from_iterable(map(self._spaced_cache.__getitem__, islice(pieces, 1, None))))
            else:
                stretches.append(self._piece_cache[pieces])
        return chain.from_iterable(stretches)

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

        >>> Tokenizer({i: bytes([i]) for i in range(256)}, []).encode("hé")
        [104, 195, 169]
        """
        if not self.special_tokens:
            return list(self._encode_ordinary(text))
        ids: list[int] = []
        for piece, is_special in split_on_special_tokens(text, self.special_tokens):
            if is_special:
                ids.append(self._special_ids[piece])
            else:
                ids.extend(self._encode_ordinary(piece))
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
