"""A training run's configuration: dataclasses loaded from TOML, validated, saved beside the run.

A config file has top-level run settings and three tables, `[model]` (a `ModelConfig`, from
`cs336.model.config`), `[optim]` and `[data]`:

    name = "tinystories"
    batch_size = 128          # sequences per optimizer step, summed over ranks and micro-batches
    max_tokens = 327_680_000

    [model]
    vocab_size = 10_000
    ...

Overrides are dotted `key=value` strings whose values are parsed as TOML literals (a bare word that
is not valid TOML is taken as a string), then checked against the field's type:

>>> cfg = load_config("configs/demo.toml", ["optim.lr=3e-3", "model.fused=true"])  # doctest: +SKIP

Unknown keys and values of the wrong type raise `CS336Error` naming the key and the valid choices.
"""

from __future__ import annotations

import dataclasses
import json
import math
import sys
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cs336.data import data_dir
from cs336.errors import CS336Error
from cs336.model.config import ModelConfig


if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


@dataclass
class OptimConfig:
    """The optimizer and its learning-rate schedule (linear warm-up, cosine decay to `min_lr`).

    `name = "adamw"`: AdamW on every parameter. `name = "muon"`: Muon on the Transformer blocks'
    matrices and AdamW on the rest (`cs336.training.muon.MuonAdamW`); Muon follows the same
    schedule scaled to its own peak `muon_lr`."""
    name: str = "adamw"  # "adamw" or "muon"
    lr: float = 1e-3  # the schedule's maximum
    min_lr: float = 1e-4
    warmup_iters: int = 100
    cosine_iters: int | None = None  # end of the cosine; None = the run's last step (or its time budget)
    betas: tuple[float, float] = (0.9, 0.95)
    eps: float = 1e-8
    weight_decay: float = 0.1
    decay_on: str = "all"  # AdamW's decay on "all" its parameters, or on "matrices" only (not embeddings, gains, scalars)
    grad_clip: float = 1.0  # max global L2 norm of the gradient; 0 = no clipping
    muon_lr: float = 0.02  # Muon's peak rate (name = "muon")
    muon_momentum: float = 0.95
    muon_weight_decay: float = 0.0  # per step W ← W·(1 − rate·λ) on Muon's matrices
    muon_adjust_lr_fn: str = "original"  # or "match_rms_adamw"
    ns_dtype: str = "bfloat16"  # Newton–Schulz's dtype: "bfloat16" (as torch) or "float32"


@dataclass
class DataConfig:
    """Token files (`.npy` of uint16/uint32 written by `cs336 encode`). `{data_dir}` in a path is
    replaced by `cs336.data.data_dir()`; other relative paths are relative to the working directory."""

    train: str = ""
    valid: str = ""  # "" = no validation loss
    dtype: str | None = None  # only for raw (non-.npy) token files: "uint16" | "uint32"


@dataclass
class TrainConfig:
    """One training run. Exactly one of `max_steps`, `max_tokens`, `max_minutes` sets its length."""
    name: str = "run"
    run_dir: str | None = None  # None = runs/<name>
    seed: int = 0
    batch_size: int = 32  # global: sequences per optimizer step over all ranks and micro-batches
    grad_accum_steps: int = 1  # micro-batches per optimizer step (per rank)
    max_steps: int | None = None
    max_tokens: int | None = None  # rounded up to whole steps of batch_size · context_length tokens
    max_minutes: float | None = None  # wall-clock budget; the LR schedule ends exactly at the budget
    eval_interval: int = 500  # steps between validation losses (0 = only at the end)
    eval_batches: int = 20  # validation batches of `batch_size` sequences, the same ones every time
    eval_all: bool = False  # evaluate on every non-overlapping window of the validation file instead
    log_interval: int = 10  # steps between training records in log.jsonl
    checkpoint_interval: int = 1000  # steps between checkpoints (0 = only at the end)
    keep_checkpoints: int = 2  # the newest N are kept
    device: str = "auto"  # "auto" = cuda > mps > cpu
    dtype: str = "float32"  # "float32" | "bfloat16" (autocast; parameters stay float32)
    compile: bool = False  # torch.compile the model
    # K > 1: an ensemble of K members trained side by side, one CPU process each on threads // K
    # threads, seeds seed·K + k; its loss is that of the mean of their next-token distributions
    # (`cs336.training.ensemble`)
    ensemble: int = 1
    threads: int | None = None  # CPU threads for PyTorch ops; None = PyTorch's default (all cores)
    tf32: bool = True  # TF32 matmuls on CUDA
    # One device's peak TFLOP/s at the run's dtype (e.g. 989 for an H100 SXM in bf16): with it, each
    # training record logs `mfu`, the model FLOPs utilisation; "measure" = the matrix-product rate
    # measured on the device at the start of the run (`cs336.provenance.matmul_peak_flops`, a few
    # seconds); None = no MFU in the log.
    peak_tflops: float | str | None = None
    nan_policy: str = "stop"  # non-finite loss or gradient: "stop" the run, or "skip" the update
    max_nan_skips: int = 10  # with "skip": stop after this many skipped updates
    wandb: bool = False  # also log to Weights & Biases (needs `pip install wandb`)
    wandb_project: str = "cs336"
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    data: DataConfig = field(default_factory=DataConfig)

    # --- derived quantities -------------------------------------------------------------------
    @property
    def tokens_per_step(self) -> int:
        return self.batch_size * self.model.context_length

    @property
    def total_steps(self) -> int | None:
        """Optimizer steps of the run; None in wall-clock mode (`max_minutes`)."""
        if self.max_steps is not None:
            return self.max_steps
        if self.max_tokens is not None:
            return math.ceil(self.max_tokens / self.tokens_per_step)
        return None

    def resolved_run_dir(self) -> Path:
        return Path(self.run_dir) if self.run_dir else Path("runs") / self.name

    # --- conversion ---------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict (tuples as lists), the inverse of `from_dict`."""
        return json.loads(json.dumps(dataclasses.asdict(self)))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        cfg = _build(cls, d, prefix="")
        cfg.validate()
        return cfg

    def to_toml(self) -> str:
        """The config as TOML, which `load_config` reads back equal (a run's `config.toml`, to rerun
        it from). TOML has no null: None values are omitted, which reads back as None because every
        optional field defaults to None."""
        d = self.to_dict()
        lines = [f"{k} = {_toml_value(v)}" for k, v in d.items() if not isinstance(v, dict) and v is not None]
        for table in ("model", "optim", "data"):
            lines += ["", f"[{table}]"]
            lines += [f"{k} = {_toml_value(v)}" for k, v in d[table].items() if v is not None]
        return "\n".join(lines) + "\n"

    def validate(self) -> None:
        """Check values a type check cannot: positivity, choices, divisibility, one run length."""
        self.model.validate()
        o = self.optim
        checks = [
            (o.lr >= 0 and o.min_lr >= 0, "optim.lr and optim.min_lr must be non-negative"),
            (o.name in ("adamw", "muon"), f"optim.name={o.name!r} must be 'adamw' or 'muon'"),
            (o.name != "muon" or o.lr > 0, "optim.lr must be positive with optim.name='muon' (Muon's rate is muon_lr / lr times the schedule's)"),
            (o.muon_lr >= 0 and o.muon_momentum >= 0 and o.muon_weight_decay >= 0, "optim.muon_lr, optim.muon_momentum and optim.muon_weight_decay must be non-negative"),
            (o.muon_adjust_lr_fn in ("original", "match_rms_adamw"), f"optim.muon_adjust_lr_fn={o.muon_adjust_lr_fn!r} must be 'original' or 'match_rms_adamw'"),
            (o.ns_dtype in ("bfloat16", "float32"), f"optim.ns_dtype={o.ns_dtype!r} must be 'bfloat16' or 'float32'"),
            (o.decay_on in ("all", "matrices"), f"optim.decay_on={o.decay_on!r} must be 'all' or 'matrices'"),
            (o.warmup_iters >= 0, "optim.warmup_iters must be non-negative"),
            (all(0 <= b < 1 for b in o.betas), f"optim.betas={list(o.betas)} must lie in [0, 1)"),
            (o.eps >= 0 and o.weight_decay >= 0 and o.grad_clip >= 0, "optim.eps, optim.weight_decay and optim.grad_clip must be non-negative"),
            (self.batch_size > 0 and self.grad_accum_steps > 0, "batch_size and grad_accum_steps must be positive"),
            (self.batch_size % self.grad_accum_steps == 0, f"batch_size={self.batch_size} must be divisible by grad_accum_steps={self.grad_accum_steps}"),
            (self.eval_interval >= 0 and self.eval_batches >= 0, "eval_interval and eval_batches must be non-negative"),
            (self.log_interval > 0, "log_interval must be positive"),
            (self.checkpoint_interval >= 0, "checkpoint_interval must be non-negative"),
            (self.keep_checkpoints >= 1, "keep_checkpoints must be at least 1"),
            (self.device == "auto" or self.device.split(":")[0] in ("cpu", "cuda", "mps"), f"device={self.device!r} must be 'auto', 'cpu', 'cuda[:N]' or 'mps'"),
            (self.dtype in ("float32", "bfloat16"), f"dtype={self.dtype!r} must be 'float32' or 'bfloat16'"),
            (self.nan_policy in ("stop", "skip"), f"nan_policy={self.nan_policy!r} must be 'stop' or 'skip'"),
            (self.max_nan_skips >= 0, "max_nan_skips must be non-negative"),
            (self.threads is None or self.threads > 0, "threads must be positive"),
            (self.ensemble >= 1, f"ensemble={self.ensemble} must be at least 1 (1 = one model)"),
            (self.peak_tflops in (None, "measure") or (not isinstance(self.peak_tflops, str) and 0 < self.peak_tflops < math.inf),
             f"peak_tflops={self.peak_tflops} must be a positive number of TFLOP/s (e.g. 989 for an H100 in bf16), "
             f"\"measure\", or left out"),
            (self.data.dtype in (None, "uint16", "uint32"), f"data.dtype={self.data.dtype!r} must be 'uint16' or 'uint32'"),
        ]
        for ok, msg in checks:
            if not ok:
                raise CS336Error(msg)
        lengths = [k for k in ("max_steps", "max_tokens", "max_minutes") if getattr(self, k) is not None]
        if len(lengths) != 1:
            raise CS336Error(f"set exactly one of max_steps, max_tokens, max_minutes (got {', '.join(lengths) or 'none'})")
        if (getattr(self, lengths[0])) <= 0:
            raise CS336Error(f"{lengths[0]} must be positive")


_TABLES = {"model": ModelConfig, "optim": OptimConfig, "data": DataConfig}
_RUN_LENGTH_KEYS = ("max_steps", "max_tokens", "max_minutes")


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)  # a TOML basic string (non-ASCII raw: TOML has no surrogate escapes)
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    raise TypeError(f"cannot write {v!r} as TOML")


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """`value` as an instance of the annotation `tp`, or a CS336Error naming `key`."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is typing.Literal:  # a choice (model.norm, ...): its values' type here, the value in validate()
        return _coerce(value, type(args[0]), key)
    if origin in (typing.Union, types.UnionType):
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null")):
            if type(None) in args:
                return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(value, a, key)
            except CS336Error as e:
                errors.append(e)
        raise CS336Error(f"config key {key}: expected {' or '.join(_type_name(a) for a in args if a is not type(None))} or none, got {value!r}")
    if origin is tuple:
        if not isinstance(value, (list, tuple)) or len(value) != len(args):
            raise CS336Error(f"config key {key}: expected a list of {len(args)} numbers, got {value!r}")
        return tuple(_coerce(v, a, f"{key}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif tp is str:
        if isinstance(value, str):
            return value
    raise CS336Error(f"config key {key}: expected {_type_name(tp)}, got {value!r}")


def _build(cls: type, d: Any, prefix: str) -> Any:
    """Instantiate dataclass `cls` from a dict, rejecting unknown keys and wrong types."""
    where = f"[{prefix.rstrip('.')}]" if prefix else "the top level"
    if not isinstance(d, dict):
        raise CS336Error(f"config section {where} must be a table, got {d!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = [k for k in d if k not in names]
    if unknown:
        raise CS336Error(f"unknown config key {prefix}{unknown[0]!s}; valid keys at {where}: {', '.join(names)}")
    kwargs = {}
    for name, value in d.items():
        if name in _TABLES and not prefix:
            kwargs[name] = _build(_TABLES[name], value, f"{name}.")
        else:
            kwargs[name] = _coerce(value, hints[name], prefix + name)
    return cls(**kwargs)


def _parse_literal(text: str) -> Any:
    """A TOML literal (`3e-3`, `true`, `[0.9, 0.95]`, `"x"`); anything else is a bare string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def apply_overrides(d: dict[str, Any], overrides: typing.Iterable[str]) -> dict[str, Any]:
    """Apply `key=value` overrides to a config dict (a copy is returned).

    Setting one of max_steps / max_tokens / max_minutes clears the other two, so
    `--set max_steps=100` shortens a run defined by `max_tokens` in its file.

    >>> apply_overrides({"optim": {"lr": 1e-3}}, ["optim.lr=3e-3"])
    {'optim': {'lr': 0.003}}
    """
    d = json.loads(json.dumps(d))
    for item in overrides:
        if "=" not in item:
            raise CS336Error(f"override {item!r} is not of the form key=value")
        key, text = (s.strip() for s in item.split("=", 1))
        parts = key.split(".")
        if len(parts) == 1:
            if parts[0] in _TABLES:
                raise CS336Error(f"override {item!r}: {parts[0]} is a table; set one of its keys, e.g. {parts[0]}.<key>=...")
            valid = [f.name for f in dataclasses.fields(TrainConfig)]
            target = d
        elif len(parts) == 2 and parts[0] in _TABLES:
            valid = [f.name for f in dataclasses.fields(_TABLES[parts[0]])]
            target = d.setdefault(parts[0], {})
        else:
            raise CS336Error(f"unknown config key {key}; tables are {', '.join(_TABLES)}")
        if parts[-1] not in valid:
            raise CS336Error(f"unknown config key {key}; valid keys: {', '.join(valid)}")
        value = _parse_literal(text)
        target[parts[-1]] = value
        if len(parts) == 1 and parts[0] in _RUN_LENGTH_KEYS and str(value).lower() not in ("none", "null"):
            for other in _RUN_LENGTH_KEYS:
                if other != parts[0]:
                    d.pop(other, None)
    return d


def load_config(path: str | Path | None, overrides: typing.Iterable[str] = ()) -> TrainConfig:
    """Read a TOML (or a run's config.json) config (None = all defaults), apply `key=value` overrides, validate."""
    d: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        if not path.exists():
            raise CS336Error(f"config file not found: {path}")
        text = path.read_text(encoding="utf-8")
        try:
            d = json.loads(text) if path.suffix == ".json" else tomllib.loads(text)
        except (tomllib.TOMLDecodeError, json.JSONDecodeError) as e:
            raise CS336Error(f"{path} is not valid {'JSON' if path.suffix == '.json' else 'TOML'}: {e}") from None
    return TrainConfig.from_dict(apply_overrides(d, overrides))


def resolve_path(p: str) -> Path:
    """A data path with `{data_dir}` expanded."""
    if "{data_dir}" in p:

        p = p.replace("{data_dir}", str(data_dir()))
    return Path(p).expanduser()
