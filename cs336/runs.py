"""Load a trained model and its tokenizer, for decoding and export.

A run directory (written by `cs336 train`, see `cs336.training.trainer`) holds `config.json` and
`checkpoints/step_XXXXXXX.pt`; the tokenizer that encoded its data is kept in it or beside its
training tokens as `vocab.json` + `merges.txt` (GPT-2 format), or named with `tokenizer=`. A bare
checkpoint works too: its config comes from `config=` (a TOML config or a run's config.json), else
from the checkpoint itself, else from the run directory it sits in.

>>> model, tokenizer = load_run("runs/demo")  # doctest: +SKIP
"""

from __future__ import annotations

import os
from pathlib import Path

from cs336.errors import CS336Error
from cs336.model.transformer import TransformerLM
from cs336.tokenization.files import MERGES_FILE, VOCAB_FILE
from cs336.tokenization.tokenizer import Tokenizer, load_tokenizer
from cs336.training.checkpoint import read_checkpoint
from cs336.training.config import load_config, resolve_path
from cs336.training.trainer import build_model, load_run_model, resolve_device

DEFAULT_SPECIAL_TOKENS = ("<|endoftext|>",)


def load_model(
    run_or_checkpoint: str | os.PathLike, *, config: str | os.PathLike | None = None, device="cpu"
) -> TransformerLM:
    """The model of a run directory (its newest checkpoint) or of one checkpoint file, in eval mode."""
    device = resolve_device(str(device))
    path = Path(run_or_checkpoint)
    if not path.exists():
        raise CS336Error(f"run directory or checkpoint not found: {path}")
    if config is None:
        run_dir = path if path.is_dir() else path.resolve().parent.parent  # run_dir/checkpoints/step_*.pt
        return load_run_model(run_dir, None if path.is_dir() else path, device)[0]
    if path.is_dir():
        raise CS336Error(f"--config goes with --checkpoint; the run directory {path} has its own config")
    payload = read_checkpoint(path)
    model = build_model(load_config(config).model, device)
    try:
        model.load_state_dict(payload["model"])
    except RuntimeError as e:
        raise CS336Error(f"checkpoint {path} does not match the model of {config}: {str(e).splitlines()[0]}") from e
    return model.eval()


def run_tokenizer_dir(run: str | os.PathLike) -> Path:
    """Where a run's tokenizer is: saved in the run directory (as the demo does), else beside the
    run's training tokens, where `cs336 train-bpe --out DIR` and `cs336 encode --out DIR/x.npy`
    leave it."""
    run = Path(run)
    candidates = [run]
    if (run / "config.json").is_file():
        try:
            candidates.append(resolve_path(load_config(run / "config.json").data.train).parent)
        except CS336Error:
            pass
    for d in candidates:
        if (d / VOCAB_FILE).is_file() and (d / MERGES_FILE).is_file():
            return d
    raise CS336Error(f"no tokenizer ({VOCAB_FILE}, {MERGES_FILE}) in {run} or beside its training data: pass --tokenizer DIR")


def check_vocab_match(model: TransformerLM, tokenizer: Tokenizer) -> None:
    """A tokenizer and a model belong together only if they agree on the vocabulary size."""
    n = len(tokenizer.vocab)
    if n != model.vocab_size:
        raise CS336Error(f"tokenizer has {n} tokens but the model's vocab_size is {model.vocab_size}: wrong tokenizer?")


def load_run(
    run: str | os.PathLike | None = None,
    *,
    checkpoint: str | os.PathLike | None = None,
    tokenizer: str | os.PathLike | None = None,
    config: str | os.PathLike | None = None,
    device="cpu",
) -> tuple[TransformerLM, Tokenizer]:
    """(model, tokenizer) of a run directory, or of a checkpoint and a tokenizer directory. The
    tokenizer treats `<|endoftext|>` as its special token."""
    if (run is None) == (checkpoint is None):
        raise CS336Error("give either a run directory or a checkpoint")
    if run is not None and not Path(run).is_dir():
        raise CS336Error(f"run directory not found: {run}")
    if checkpoint is not None and tokenizer is None:
        raise CS336Error("a bare checkpoint needs its tokenizer directory (--tokenizer DIR)")
    model = load_model(run if run is not None else checkpoint, config=config, device=device)
    tok_dir = tokenizer if tokenizer is not None else run_tokenizer_dir(run)
    tok = load_tokenizer(tok_dir, special_tokens=list(DEFAULT_SPECIAL_TOKENS))
    check_vocab_match(model, tok)
    return model, tok
