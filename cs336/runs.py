"""Load a trained model and its tokenizer, for decoding and export.

A run directory (written by `cs336 train`, see `cs336.training.trainer`) holds `config.json` and
`checkpoints/step_XXXXXXX.pt`; the tokenizer that encoded its data is kept beside it as
`vocab.json` + `merges.txt` (GPT-2 format), or named with `tokenizer=`. A bare checkpoint works
too: its config comes from `config=` (a TOML config or a run's config.json), else from the
checkpoint itself, else from the run directory it sits in.

>>> model, tokenizer = load_run("runs/demo")  # doctest: +SKIP
"""

from __future__ import annotations

import os
from pathlib import Path

from cs336.errors import CS336Error
from cs336.model.transformer import TransformerLM
from cs336.tokenization import END_OF_TEXT
from cs336.training.checkpoint import read_checkpoint
from cs336.training.config import load_config, resolve_path
from cs336.training.trainer import build_model, load_run_model, resolve_device

DEFAULT_SPECIAL_TOKENS = (END_OF_TEXT,)
VOCAB_FILE, MERGES_FILE = "vocab.json", "merges.txt"


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


def load_tokenizer(directory: str | os.PathLike, special_tokens=DEFAULT_SPECIAL_TOKENS):
    """The Tokenizer saved as `vocab.json` + `merges.txt` in `directory` (a run directory or a
    tokenizer directory), with `<|endoftext|>` as its special token."""
    from cs336.tokenization.encode_file import load_tokenizer as load_tokenizer_dir

    directory = Path(directory)
    if directory.is_dir() and not ((directory / VOCAB_FILE).is_file() and (directory / MERGES_FILE).is_file()):
        raise CS336Error(f"no tokenizer ({VOCAB_FILE}, {MERGES_FILE}) in {directory}: pass --tokenizer DIR")
    return load_tokenizer_dir(directory, special_tokens=list(special_tokens))


def run_tokenizer_dir(run: str | os.PathLike) -> Path:
    """Where a run's tokenizer is: saved in the run directory (as the demo does), else beside the
    run's training tokens, where `cs336 train-bpe --out DIR` and `cs336 encode --out DIR/x.npy`
    leave it. Falls back to the run directory, whose absence `load_tokenizer` then reports."""
    run = Path(run)
    if (run / VOCAB_FILE).is_file() or not (run / "config.json").is_file():
        return run
    try:
        beside_data = resolve_path(load_config(run / "config.json").data.train).parent
    except CS336Error:
        return run
    if (beside_data / VOCAB_FILE).is_file() and (beside_data / MERGES_FILE).is_file():
        return beside_data
    return run


def check_vocab_match(model: TransformerLM, tokenizer) -> None:
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
):
    """(model, tokenizer) of a run directory, or of a checkpoint and a tokenizer directory."""
    if (run is None) == (checkpoint is None):
        raise CS336Error("give either a run directory or a checkpoint")
    if run is not None and not Path(run).is_dir():
        raise CS336Error(f"run directory not found: {run}")
    if checkpoint is not None and tokenizer is None:
        raise CS336Error("a bare checkpoint needs its tokenizer directory (--tokenizer DIR)")
    model = load_model(run if run is not None else checkpoint, config=config, device=device)
    tok = load_tokenizer(tokenizer if tokenizer is not None else run_tokenizer_dir(run))
    check_vocab_match(model, tok)
    return model, tok
