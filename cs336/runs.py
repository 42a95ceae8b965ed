"""A run directory: what `cs336 train` writes, and reading it back (its model, tokenizer, status).

    runs/<name>/
      config.json      the run's resolved config (`TrainConfig.to_dict`), which tools read
      config.toml      the same as TOML: `cs336 train --config runs/<name>/config.toml` reruns it
      log.jsonl        training and validation records (`cs336.training.runlog`)
      summary.json     how the run ended: status, final step, losses, wall time
      checkpoints/step_0001000.pt   model + optimizer + what resuming needs (the newest N kept)
      vocab.json, merges.txt        optional: the tokenizer that encoded its data

This module is the one place that knows these names: the trainer writes through it and the
generate/export commands, the demo, the sweeps and the notebooks read through it. A run's
tokenizer is the one saved in the run directory, else the one beside its training tokens, or one
named with `tokenizer=`. A bare checkpoint works too: its config comes from `config=` (a TOML
config or a run's config.json), else from the checkpoint itself, else from the run it sits in.

>>> model, tokenizer = load_run("runs/demo/run")  # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import torch
from torch import nn

from cs336.errors import CS336Error
from cs336.model.transformer import TransformerBlock, TransformerLM
from cs336.outputs import write_atomic
from cs336.tokenization import END_OF_TEXT
from cs336.tokenization.files import MERGES_FILE, VOCAB_FILE
from cs336.tokenization.tokenizer import Tokenizer, load_tokenizer
from cs336.training.checkpoint import read_checkpoint
from cs336.training.config import ModelConfig, TrainConfig, load_config, resolve_path
from cs336.training.muon import MuonAdamW
from cs336.training.optim import AdamW

DEFAULT_SPECIAL_TOKENS = (END_OF_TEXT,)
CONFIG, CONFIG_TOML, LOG, SUMMARY, CHECKPOINTS = "config.json", "config.toml", "log.jsonl", "summary.json", "checkpoints"
_CHECKPOINT_RE = re.compile(r"^step_(\d{7,})\.pt$")
# A run is over when its summary says so; anything else (no summary, "running", "interrupted") is
# resumable. A diverged run is over too: with its seed fixed, rerunning it diverges again.
DONE_STATUSES = ("finished", "diverged")


# ---------------------------------------------------------------------------------------------
# the layout
# ---------------------------------------------------------------------------------------------
def checkpoint_path(run_dir: str | os.PathLike, step: int) -> Path:
    """Where the checkpoint of `step` goes: `checkpoints/step_0001000.pt`."""
    return Path(run_dir) / CHECKPOINTS / f"step_{step:07d}.pt"


def checkpoint_paths(run_dir: str | os.PathLike) -> list[Path]:
    """The run's checkpoints, oldest first."""
    d = Path(run_dir) / CHECKPOINTS
    if not d.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in d.iterdir() if (m := _CHECKPOINT_RE.match(p.name))]
    return [p for _, p in sorted(found)]


def find_runs(root: str | os.PathLike, *, members: bool = False) -> list[Path]:
    """Every run directory (one holding `log.jsonl` or `config.json`) at or below `root`, sorted;
    an ensemble's members (`member_k` inside a run directory) only with `members=True`."""
    root = Path(root)
    if not root.is_dir():
        raise CS336Error(f"no such run folder: {root}")
    found = {p.parent for name in (LOG, CONFIG) for p in root.rglob(name)}
    return sorted(p for p in found if members or not is_member(p))


def is_member(run_dir: str | os.PathLike) -> bool:
    """Whether `run_dir` is a member of an ensemble run (`cs336.training.ensemble`)."""
    run_dir = Path(run_dir)
    return bool(re.fullmatch(r"member_\d+", run_dir.name)) and (run_dir.parent / CONFIG).is_file()


# ---------------------------------------------------------------------------------------------
# its small files
# ---------------------------------------------------------------------------------------------
def read_json(path: str | os.PathLike) -> dict[str, Any]:
    try:
        return json.loads(Path(path).read_text())
    except json.JSONDecodeError as e:
        raise CS336Error(f"{path} is not valid JSON ({e.msg} at line {e.lineno})") from None


def write_config(run_dir: Path, cfg: TrainConfig) -> None:
    """`config.json` for tools and `config.toml` to rerun from, both the complete config."""
    write_atomic(run_dir / CONFIG, json.dumps(cfg.to_dict(), indent=2) + "\n")
    write_atomic(run_dir / CONFIG_TOML, cfg.to_toml())


def write_summary(run_dir: Path, summary: dict[str, Any]) -> None:
    """Replace `summary.json` in one step, so a reader never sees half of it."""
    write_atomic(run_dir / SUMMARY, json.dumps(summary, indent=2) + "\n")


def run_status(run_dir: str | os.PathLike) -> str:
    """`summary.json`'s status, or "running" for a run without one (in progress or interrupted)."""
    summary = Path(run_dir) / SUMMARY
    return str(read_json(summary).get("status", "unknown")) if summary.exists() else "running"


# ---------------------------------------------------------------------------------------------
# its model and tokenizer
# ---------------------------------------------------------------------------------------------
def resolve_device(name: str) -> torch.device:
    """"auto" → cuda, else mps, else cpu; an unavailable device is a CS336Error."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise CS336Error(f"unknown device {name!r}; use \"auto\", \"cpu\", \"cuda\", \"cuda:N\" or \"mps\"") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise CS336Error(f"device={name!r} but CUDA is not available (use device=\"auto\" or \"cpu\")")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise CS336Error(f"device={name!r} but MPS is not available (use device=\"auto\" or \"cpu\")")
    return device


def build_model(cfg: ModelConfig, device: torch.device | str = "cpu") -> TransformerLM:
    """The `TransformerLM` a `ModelConfig` describes."""
    return TransformerLM(
        cfg.vocab_size, cfg.context_length, cfg.d_model, cfg.num_layers, cfg.num_heads, cfg.d_ff, cfg.rope_theta,
        device=device, norm=cfg.norm, position=cfg.position, ffn=cfg.ffn, silu_d_ff=cfg.silu_d_ff,
        qk_norm=cfg.qk_norm, logit_softcap=cfg.logit_softcap, zero_init_output=cfg.zero_init_output,
        tie_embeddings=cfg.tie_embeddings, value_residual=cfg.value_residual, residual_scalars=cfg.residual_scalars,
        dropout=cfg.dropout, fused=cfg.fused,
    )


def split_hidden_matrices(model: nn.Module) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
    """Split `model`'s parameters into (Muon's, AdamW's): the 2-D weights inside its Transformer
    blocks (attention q/k/v/output, FFN w1/w2/w3) and everything else (token embeddings, LM head,
    norm gains, the scalars of `value_residual` and `residual_scalars`), each parameter once."""
    hidden = {id(p) for block in model.modules() if isinstance(block, TransformerBlock)
              for p in block.parameters() if p.ndim == 2}
    params = list(model.parameters())  # a tied matrix once
    return [p for p in params if id(p) in hidden], [p for p in params if id(p) not in hidden]


def decay_groups(model: nn.Module, params: list[nn.Parameter], decay_on: str) -> list[dict]:
    """AdamW's parameter groups for `params` (some or all of `model`'s): with `decay_on="all"` one
    group, decayed at the optimizer's rate; with "matrices" the 2-D weights other than the token
    embedding (a tied LM head is that embedding) at that rate, and the rest (embeddings, norm gains,
    scalars) in a group of their own with weight decay 0."""
    if decay_on == "all":
        return [{"params": params}]
    embedding = model.token_embeddings.weight
    decayed = [p for p in params if p.ndim == 2 and p is not embedding]
    kept = [p for p in params if not (p.ndim == 2 and p is not embedding)]
    return [g for g in ({"params": decayed}, {"params": kept, "weight_decay": 0.0}) if g["params"]]


def build_optimizer(model: nn.Module, optim_cfg, *, fused: bool = False) -> AdamW | MuonAdamW:
    """The optimizer `optim_cfg.name` names, over all of `model`'s parameters.

    - "adamw": AdamW(lr, betas, eps, weight_decay) on everything (decayed as `decay_on` says:
      `decay_groups`);
    - "muon": `MuonAdamW`: Muon(muon_lr, muon_momentum, muon_weight_decay, muon_adjust_lr_fn,
      ns_dtype) on the blocks' weight matrices (`split_hidden_matrices`), AdamW as above on the rest.

    `optim_cfg` is a `cs336.training.config.OptimConfig` (any object with those attributes);
    `ns_dtype` is a dtype's name, "bfloat16" or "float32". `fused` goes to AdamW (torch's fused
    kernel computing the handout's update).
    """
    o = optim_cfg
    if o.name == "adamw":
        groups = decay_groups(model, list(model.parameters()), o.decay_on)
        return AdamW(groups, lr=o.lr, betas=o.betas, eps=o.eps, weight_decay=o.weight_decay, fused=fused)
    if o.name != "muon":
        raise CS336Error(f"optim.name={o.name!r} is not one of 'adamw', 'muon'")
    if o.ns_dtype not in ("bfloat16", "float32"):
        raise CS336Error(f"optim.ns_dtype={o.ns_dtype!r} is not one of 'bfloat16', 'float32'")
    hidden, rest = split_hidden_matrices(model)
    if not hidden:
        raise CS336Error("optim.name='muon' trains the Transformer blocks' matrices, and this model has none; use 'adamw'")
    return MuonAdamW(
        hidden, decay_groups(model, rest, o.decay_on), lr=o.lr, muon_lr=o.muon_lr, betas=o.betas, eps=o.eps, weight_decay=o.weight_decay,
        muon_momentum=o.muon_momentum, muon_weight_decay=o.muon_weight_decay, adjust_lr_fn=o.muon_adjust_lr_fn,
        ns_dtype=getattr(torch, o.ns_dtype), fused=fused,
    )


def load_run_model(run_dir: str | os.PathLike, checkpoint: str | os.PathLike | None = None, device: str | torch.device = "cpu") -> tuple[TransformerLM, TrainConfig]:
    """The model of a run directory at its newest (or the given) checkpoint, and the run's config.

    >>> model, cfg = load_run_model("runs/demo/run")  # doctest: +SKIP
    """
    run_dir = Path(run_dir)
    if checkpoint is None:
        paths = checkpoint_paths(run_dir)
        if not paths:
            raise CS336Error(f"no checkpoints in {run_dir / CHECKPOINTS}")
        checkpoint = paths[-1]
    payload = read_checkpoint(checkpoint)
    saved = payload["extra"].get("config")
    if saved is not None:
        cfg = TrainConfig.from_dict(saved)
    elif (run_dir / CONFIG).exists():
        cfg = load_config(run_dir / CONFIG)
    else:
        raise CS336Error(f"{checkpoint} carries no config and {run_dir / CONFIG} is missing")
    model = build_model(cfg.model, device)
    model.load_state_dict(payload["model"])
    return model.eval(), cfg


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
    if (run / CONFIG).is_file():
        try:
            candidates.append(resolve_path(load_config(run / CONFIG).data.train).parent)
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
