"""Small real tokenizers and run directories for the generation and export tests."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from cs336 import AdamW, TransformerLM, save_checkpoint
from cs336.tokenization import END_OF_TEXT
from cs336.tokenization.files import load_vocab_merges, save_vocab_merges


def gpt2_bpe(data_dir: Path, num_merges: int | None = None):
    """GPT-2's vocab and merges, optionally cut to the first `num_merges` merges: still a valid
    byte-level BPE (GPT-2's ids are the 256 bytes, then one id per merge in order), with
    `<|endoftext|>` as the last id."""
    fixtures = data_dir / "cs336-fixtures"
    vocab, merges = load_vocab_merges(fixtures / "gpt2_vocab.json", fixtures / "gpt2_merges.txt")
    if num_merges is None:
        return vocab, merges
    n = 256 + num_merges
    small = {i: vocab[i] for i in range(n)}
    small[n] = END_OF_TEXT.encode()
    return small, merges[:num_merges]


def make_run(root: Path, data_dir: Path, *, num_merges: int = 200, steps=(10, 200), seed: int = 0, **model_kwargs) -> Path:
    """A run directory as training leaves it: config.json, checkpoints/step_*.pt, vocab/merges.
    The checkpoint of the highest step holds the model; earlier ones hold a different model."""
    vocab, merges = gpt2_bpe(data_dir, num_merges)
    config = dict(vocab_size=len(vocab), context_length=32, d_model=32, num_layers=2, num_heads=4, d_ff=64, rope_theta=10000.0)
    config.update(model_kwargs)
    root.mkdir(parents=True, exist_ok=True)
    (root / "checkpoints").mkdir()
    (root / "config.json").write_text(json.dumps({"name": root.name, "max_steps": max(steps), "model": config}))
    save_vocab_merges(vocab, merges, root / "vocab.json", root / "merges.txt")
    torch.manual_seed(seed)
    for step in steps:
        model = TransformerLM(**config)
        save_checkpoint(model, AdamW(model.parameters()), step, root / "checkpoints" / f"step_{step:07d}.pt")
    return root
