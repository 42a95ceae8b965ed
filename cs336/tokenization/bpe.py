"""Byte-level BPE training."""

from __future__ import annotations


def train_bpe(input_path, vocab_size, special_tokens, **options):
    raise NotImplementedError("train_bpe: implemented in the tokenization work")
