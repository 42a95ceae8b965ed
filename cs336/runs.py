"""Load what a training run leaves behind: the model (config + checkpoint) and its tokenizer.

A run directory looks like this (the training engine writes it):

    run_dir/config.json                  resolved config; its "model" section is TransformerLM's kwargs
    run_dir/checkpoints/step_0001000.pt  `save_checkpoint` payloads; the highest step is the latest
    run_dir/vocab.json, merges.txt       the tokenizer the run used (GPT-2 file format)

A bare checkpoint works too, given the model config (a JSON/TOML file with a "model" section, or
the model section itself) and a tokenizer directory.

>>> model, tokenizer = load_run("runs/tinystories")  # doctest: +SKIP
"""

from __future__ import annotations

import inspect
import json
import os
import re
import sys
from pathlib import Path
from typing import Any

from cs336.errors import CS336Error
from cs336.model.transformer import TransformerLM
from cs336.training.checkpoint import read_checkpoint

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

DEFAULT_SPECIAL_TOKENS = ("<|endoftext|>",)
VOCAB_FILE, MERGES_FILE = "vocab.json", "merges.txt"
_STEP = re.compile(r"step_(\d+)\.pt$")

# TransformerLM's keyword arguments that describe the architecture (device/dtype are not config).
MODEL_KEYS = tuple(p for p in inspect.signature(TransformerLM).parameters if p not in ("self", "device", "dtype"))
_REQUIRED = ("vocab_size", "context_length", "d_model", "num_layers", "num_heads", "d_ff", "rope_theta")


def read_config(path: str | os.PathLike) -> dict[str, Any]:
    """A config file (`.json` or `.toml`) as a dict."""
    path = Path(path)
    if not path.is_file():
        raise CS336Error(f"config not found: {path}")
    try:
        if path.suffix == ".toml":
            return tomllib.loads(path.read_text(encoding="utf-8"))
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as e:
        raise CS336Error(f"cannot parse config {path}: {e}") from e


def model_section(config: dict[str, Any]) -> dict[str, Any]:
    """The TransformerLM kwargs of a config: its "model" section, or the dict itself."""
    section = config.get("model", config)
    if not isinstance(section, dict):
        raise CS336Error('the config\'s "model" section is not a table')
    unknown = sorted(set(section) - set(MODEL_KEYS))
    if unknown:
        raise CS336Error(f"unknown model config keys {unknown}; valid keys: {', '.join(MODEL_KEYS)}")
    missing = [k for k in _REQUIRED if k not in section]
    if missing:
        raise CS336Error(f"model config lacks {', '.join(missing)}")
    return dict(section)


def build_model(config: dict[str, Any], device=None) -> TransformerLM:
    """A freshly initialised TransformerLM from a config (or its model section)."""
    return TransformerLM(**model_section(config), device=device)


def latest_checkpoint(run_dir: str | os.PathLike) -> Path:
    """The checkpoint with the highest step in `run_dir/checkpoints`."""
    ckpt_dir = Path(run_dir) / "checkpoints"
    found = [(int(m.group(1)), p) for p in ckpt_dir.glob("step_*.pt") if (m := _STEP.search(p.name))]
    if not found:
        raise CS336Error(f"no checkpoint (checkpoints/step_*.pt) in run directory {run_dir}")
    return max(found)[1]


def _find_model_config(checkpoint: Path, payload: dict[str, Any], config) -> dict[str, Any]:
    """The model config: the one given, else the one saved in the checkpoint, else the run's."""
    if isinstance(config, dict):
        return model_section(config)
    if config is not None:
        return model_section(read_config(config))
    saved = payload.get("extra", {}).get("config")
    if isinstance(saved, dict) and "model" in saved:
        return model_section(saved)
    beside = checkpoint.resolve().parent.parent / "config.json"  # run_dir/checkpoints/step_*.pt
    if beside.is_file():
        return model_section(read_config(beside))
    raise CS336Error(f"cannot tell the model's shape for {checkpoint}: pass its config (--config)")


def load_model(
    run_or_checkpoint: str | os.PathLike, *, config: str | os.PathLike | dict | None = None, device="cpu"
) -> TransformerLM:
    """The trained model of a run directory (its latest checkpoint) or of one checkpoint file,
    in eval mode on `device`."""
    path = Path(run_or_checkpoint)
    if not path.exists():
        raise CS336Error(f"run directory or checkpoint not found: {path}")
    checkpoint = latest_checkpoint(path) if path.is_dir() else path
    if path.is_dir() and config is None and (path / "config.json").is_file():
        config = path / "config.json"
    payload = read_checkpoint(checkpoint)
    model = build_model(_find_model_config(checkpoint, payload, config), device=device)
    try:
        model.load_state_dict(payload["model"])
    except RuntimeError as e:
        raise CS336Error(f"checkpoint {checkpoint} does not match the model config: {str(e).splitlines()[0]}") from e
    return model.eval()


def tokenizer_dir(run_dir: str | os.PathLike) -> Path:
    """Where a run keeps its tokenizer files: the run directory itself, or the directory its
    config names under "tokenizer" ("dir", "path" or a plain string)."""
    run_dir = Path(run_dir)
    if (run_dir / VOCAB_FILE).is_file():
        return run_dir
    cfg_path = run_dir / "config.json"
    if cfg_path.is_file():
        tok = read_config(cfg_path).get("tokenizer")
        named = tok if isinstance(tok, str) else (tok or {}).get("dir") or (tok or {}).get("path")
        if named:
            p = Path(named) if Path(named).is_absolute() else (run_dir / named)
            return p if p.is_dir() else p.parent
    raise CS336Error(f"no tokenizer ({VOCAB_FILE}, {MERGES_FILE}) in run directory {run_dir}")


def load_tokenizer(directory: str | os.PathLike, special_tokens=DEFAULT_SPECIAL_TOKENS):
    """The Tokenizer saved as `vocab.json` + `merges.txt` in `directory`."""
    from cs336.tokenization import Tokenizer

    directory = Path(directory)
    vocab, merges = directory / VOCAB_FILE, directory / MERGES_FILE
    for f in (vocab, merges):
        if not f.is_file():
            raise CS336Error(f"tokenizer file not found: {f}")
    return Tokenizer.from_files(str(vocab), str(merges), special_tokens=list(special_tokens))


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
    config: str | os.PathLike | dict | None = None,
    device="cpu",
):
    """(model, tokenizer) of a run directory, or of a checkpoint plus a tokenizer directory."""
    if (run is None) == (checkpoint is None):
        raise CS336Error("give either a run directory or a checkpoint")
    if run is not None and not Path(run).is_dir():
        raise CS336Error(f"run directory not found: {run}")
    model = load_model(run if run is not None else checkpoint, config=config, device=device)
    if tokenizer is None:
        if run is None:
            raise CS336Error("a bare checkpoint needs its tokenizer directory (--tokenizer)")
        tokenizer = tokenizer_dir(run)
    tok = load_tokenizer(tokenizer)
    check_vocab_match(model, tok)
    return model, tok
