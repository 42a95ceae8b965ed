"""Pre-tokenization: split text on special tokens, then into GPT-2 pre-tokens.

BPE never merges across the pieces produced here, so both training (`bpe.py`) and encoding
(`tokenizer.py`) start from these functions.
"""

from __future__ import annotations

from collections.abc import Iterator

import regex

# The GPT-2 pre-tokenizer pattern: contractions, letters, numbers, other symbols (each optionally
# led by one space), then whitespace runs that leave the last space to the next word.
GPT2_PATTERN = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
GPT2_REGEX = regex.compile(GPT2_PATTERN)


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
