"""Encoding and decoding with a trained byte-level BPE."""

from __future__ import annotations


class Tokenizer:
    def __init__(self, vocab, merges, special_tokens=None):
        raise NotImplementedError("Tokenizer: implemented in the tokenization work")
