"""The model's shape and architecture choices: one dataclass for everything that describes a model.

`ModelConfig` is the `[model]` table of a training config, what `cs336.training.trainer.build_model`
builds, and what `cs336.accounting` counts (parameters, FLOPs, memory) without building anything.
Its defaults are the handout's TinyStories model; the ablation choices are listed once, here, as
`Literal` types whose values the model, the config validation and the accounting all check against.

>>> ModelConfig(d_model=512, num_heads=16).ffn_width        # SwiGLU: d_ff
1344
>>> ModelConfig(ffn="silu").ffn_width                       # SiLU: silu_d_ff, by default 4·d_model
2048
>>> ModelConfig(norm="layer").validate()
Traceback (most recent call last):
    ...
cs336.errors.CS336Error: model.norm='layer' is not one of 'pre', 'post', 'none'
"""

from __future__ import annotations

import typing
from dataclasses import dataclass
from typing import Literal

from cs336.errors import CS336Error

Norm = Literal["pre", "post", "none"]  # pre-norm x + f(norm(x)), post-norm norm(x + f(x)), or no norm at all
Position = Literal["rope", "nope"]  # RoPE on queries and keys, or no position information
FFN = Literal["swiglu", "silu", "relu2"]  # w2(silu(w1 x) * w3 x), w2(silu(w1 x)), or w2(relu(w1 x)²)
NORMS: tuple[str, ...] = typing.get_args(Norm)
POSITIONS: tuple[str, ...] = typing.get_args(Position)
FFNS: tuple[str, ...] = typing.get_args(FFN)


def check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    """Raise `CS336Error` naming `name` and the valid choices unless `value` is one of `choices`."""
    if value not in choices:
        raise CS336Error(f"{name}={value!r} is not one of {', '.join(map(repr, choices))}")


@dataclass
class ModelConfig:
    """Arguments of `cs336.TransformerLM` (the handout's TinyStories model by default)."""

    vocab_size: int = 10_000
    context_length: int = 256
    d_model: int = 512
    num_layers: int = 4
    num_heads: int = 16
    d_ff: int = 1344  # ≈ 8/3 · d_model, rounded to a multiple of 64
    rope_theta: float = 10_000.0
    norm: Norm = "pre"  # "none" drops every RMSNorm, the final one included
    position: Position = "rope"  # RoPE has no parameters: "nope" changes no count
    ffn: FFN = "swiglu"  # "silu" and "relu2" have two matrices (w1, w2) of width silu_d_ff
    silu_d_ff: int | None = None  # width of the "silu" and "relu2" FFNs; None = 4 · d_model
    qk_norm: bool = False  # RMSNorm on each head's queries and keys (gains of size head_dim), before RoPE
    logit_softcap: float | None = None  # c: logits ← c·tanh(logits / c), bounded in (-c, c); None = off
    zero_init_output: bool = False  # attention's output_proj and the FFN's w2 start at zero: blocks start as identity
    tie_embeddings: bool = False  # the LM head is the token embedding matrix: counted once
    value_residual: bool = False  # layers after the first mix in the first layer's values (a scalar each)
    residual_scalars: bool = False  # per block: the stream mixed with the embeddings, a gain per branch (4 scalars)
    dropout: float = 0.0  # training only: entries of the embeddings and of each branch's output zeroed with this probability
    fused: bool = False  # PyTorch's fused kernels (same numbers, faster)

    @property
    def ffn_width(self) -> int:
        """The FFN's hidden width: d_ff for SwiGLU, silu_d_ff (default 4·d_model) for SiLU and ReLU²."""
        return self.d_ff if self.ffn == "swiglu" else self.silu_d_ff or 4 * self.d_model

    def validate(self) -> None:
        """Check what a type cannot: positive sizes, heads that divide d_model, the choices."""
        checks = [
            (self.vocab_size > 0, f"model.vocab_size={self.vocab_size} must be positive"),
            (self.context_length > 0, f"model.context_length={self.context_length} must be positive"),
            (self.d_model > 0, f"model.d_model={self.d_model} must be positive"),
            (self.num_layers >= 0, f"model.num_layers={self.num_layers} must be non-negative"),
            (self.d_ff > 0, f"model.d_ff={self.d_ff} must be positive"),
            (self.num_heads > 0, f"model.num_heads={self.num_heads} must be positive"),
            # (`or` short-circuits: the modulo runs only once num_heads is known to be positive)
            (self.num_heads <= 0 or self.d_model % self.num_heads == 0,
             f"model.d_model={self.d_model} must be divisible by model.num_heads={self.num_heads}"),
            (self.position != "rope" or self.num_heads <= 0 or (self.d_model // self.num_heads) % 2 == 0,
             f"RoPE rotates pairs of dimensions: the head size model.d_model / model.num_heads = "
             f"{self.d_model}/{self.num_heads} must be even"),
            (self.position != "rope" or self.rope_theta > 0, f"model.rope_theta={self.rope_theta} must be positive"),
            (self.logit_softcap is None or self.logit_softcap > 0,
             f"model.logit_softcap={self.logit_softcap} must be positive (or none)"),
            (0 <= self.dropout < 1, f"model.dropout={self.dropout} must be in [0, 1)"),
        ]
        for ok, msg in checks:
            if not ok:
                raise CS336Error(msg)
        check_choice("model.norm", self.norm, NORMS)
        check_choice("model.position", self.position, POSITIONS)
        check_choice("model.ffn", self.ffn, FFNS)
