"""Counting a Transformer LM's cost on paper: parameters, FLOPs and AdamW training memory.

Everything here is arithmetic on the model's shape (a `ModelConfig`, the `[model]` table of a
training config; a dict of its keys or an instantiated `TransformerLM` do too), so it works for
GPT-2 XL without allocating it. The tests check each count against the real thing: parameters
against `sum(p.numel())`, FLOPs against `torch.utils.flop_counter.FlopCounterMode`, memory against
what autograd keeps for a training step.

>>> xl = GPT2_SHAPES["xl"]
>>> num_parameters(xl)
2127057600
>>> round(sum(forward_flops(xl).values()) / 1e12, 3)  # one 1,024-token sequence
4.513

Conventions (the handout's):

- A matrix multiply of (m×n)·(n×p) costs 2mnp FLOPs. Only matrix multiplies are counted (they are
  >99% of the work); norms (the qk_norm ones too), softmax, RoPE, SiLU, ReLU², the logit soft-cap,
  residual adds and the products with the scalars of `value_residual` and `residual_scalars` are
  not. `zero_init_output` only initialises: it changes no count.
- Attention scores and the weighted sum are counted over the full seq×seq square, as a dense kernel
  computes them (the causal mask does not remove work).
- Training ≈ 3× forward: the backward pass of each matmul computes two matmuls of the same size
  (the gradient of each input), so it is exactly 2× the forward matmul FLOPs.
- Activation memory counts one tensor per operation: every one of the model, or only those the
  handout lists for its AdamW question (`activation_counts(..., components="handout")`).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from cs336.errors import CS336Error
from cs336.model.config import ModelConfig

# The handout's AdamW update, element-wise operations per parameter:
# m (3: β₁m, (1−β₁)g, add), v (4: g², (1−β₂)g², β₂v, add), θ −= α_t m/(√v+ε) (5), θ −= lr·λ·θ (2).
ADAMW_FLOPS_PER_PARAMETER = 14


def model_config(model: Any) -> ModelConfig:
    """The validated `ModelConfig` of a `ModelConfig`, a dict of its keys (missing ones take its
    defaults; `device` and `dtype`, arguments of `TransformerLM`, are ignored) or a `TransformerLM`
    instance (meta-device ones included)."""
    fields = [f.name for f in dataclasses.fields(ModelConfig)]
    if isinstance(model, ModelConfig):
        config = model
    elif isinstance(model, dict):
        unknown = set(model) - set(fields) - {"device", "dtype"}
        if unknown:
            raise CS336Error(f"unknown model keys {sorted(unknown)}; valid: {', '.join(sorted(fields))}")
        config = ModelConfig(**{k: v for k, v in model.items() if k in fields})
    else:
        config = ModelConfig(**{f: getattr(model, f) for f in fields if hasattr(model, f)})
    config.validate()
    return config


def _ffn_matrices(s: ModelConfig) -> int:
    return 3 if s.ffn == "swiglu" else 2  # SwiGLU: w1, w2, w3; SiLU and ReLU²: w1, w2


def _value_mixing_layers(s: ModelConfig) -> int:
    return max(s.num_layers - 1, 0) if s.value_residual else 0  # every layer after the first


# GPT-2's shapes with the handout's architecture (SwiGLU with d_ff = 4·d_model, untied head).
GPT2_SHAPES: dict[str, ModelConfig] = {
    name: ModelConfig(vocab_size=50257, context_length=1024, d_model=d, num_layers=n, num_heads=h, d_ff=4 * d)
    for name, n, d, h in (("small", 12, 768, 12), ("medium", 24, 1024, 16), ("large", 36, 1280, 20), ("xl", 48, 1600, 25))
}


# ------------------------------------------------------------------------------------ parameters
def parameter_counts(model: Any) -> dict[str, int]:
    """Parameters by component, summed over layers; a tied LM head counts zero (it is the embedding).
    `value_residual`'s λ (one per layer after the first) counts as attention; `residual_scalars`
    adds its own entry (4 per block: λ_x, λ_0, g_attn, g_ffn).

    >>> parameter_counts(ModelConfig(100, 16, 8, 1, 2, 24))
    {'token_embeddings': 800, 'attention': 256, 'ffn': 576, 'norms': 24, 'lm_head': 800}
    """
    s = model_config(model)
    d, n = s.d_model, s.num_layers
    norms_per_layer = 0 if s.norm == "none" else 2
    qk_norms = n * 2 * (d // s.num_heads) if s.qk_norm else 0  # q and k gains of size head_dim
    counts = {
        "token_embeddings": s.vocab_size * d,
        "attention": n * 4 * d * d + _value_mixing_layers(s),  # q, k, v, output; value_residual's λ
        "ffn": n * _ffn_matrices(s) * d * s.ffn_width,
        "norms": (n * norms_per_layer + (0 if s.norm == "none" else 1)) * d + qk_norms,
        "lm_head": 0 if s.tie_embeddings else s.vocab_size * d,
    }
    if s.residual_scalars:
        counts["residual_scalars"] = n * 4
    return counts


def num_parameters(model: Any) -> int:
    """Distinct trainable parameters (what `sum(p.numel() for p in model.parameters())` gives)."""
    return sum(parameter_counts(model).values())


# ----------------------------------------------------------------------------------------- FLOPs
def forward_flops(model: Any, seq_len: int | None = None, batch_size: int = 1) -> dict[str, int]:
    """Matrix-multiply FLOPs of one forward pass by component, summed over layers.

    `seq_len` defaults to the context length. Each entry is 2mnp summed over its matmuls:
    tokens T = batch·seq; QKV 3·2·T·d², scores (QKᵀ) 2·batch·seq²·d (all heads together),
    weighted sum 2·batch·seq²·d, output projection 2·T·d², FFN (2 or 3)·2·T·d·d_ff, LM head 2·T·d·V.
    """
    s = model_config(model)
    seq = s.context_length if seq_len is None else seq_len
    t, d, n = batch_size * seq, s.d_model, s.num_layers
    return {
        "qkv_projections": n * 3 * 2 * t * d * d,
        "attention_scores": n * 2 * batch_size * seq * seq * d,
        "attention_weighted_sum": n * 2 * batch_size * seq * seq * d,
        "output_projection": n * 2 * t * d * d,
        "ffn": n * _ffn_matrices(s) * 2 * t * d * s.ffn_width,
        "lm_head": 2 * t * d * s.vocab_size,
    }


def backward_flops(model: Any, seq_len: int | None = None, batch_size: int = 1) -> int:
    """Matmul FLOPs of the backward pass: each forward matmul C = AB needs ∂A = ∂C·Bᵀ and
    ∂B = Aᵀ·∂C, two matmuls of its size (every input of every matmul needs a gradient here:
    weights, and activations that descend from the trained embedding)."""
    return 2 * sum(forward_flops(model, seq_len, batch_size).values())


def training_step_flops(model: Any, seq_len: int | None = None, batch_size: int = 1, *, include_optimizer: bool = True) -> int:
    """Forward + backward (3× forward) plus, optionally, the AdamW update (a few FLOPs per parameter)."""
    fwd = sum(forward_flops(model, seq_len, batch_size).values())
    opt = ADAMW_FLOPS_PER_PARAMETER * num_parameters(model) if include_optimizer else 0
    return 3 * fwd + opt


def training_days(flops_per_step: float, steps: int, peak_flops: float, mfu: float) -> float:
    """Wall-clock days for `steps` steps at `mfu` × `peak_flops` FLOP/s.

    >>> training_days(1e15, 86400, 1e15, 0.5)
    2.0
    """
    return flops_per_step * steps / (peak_flops * mfu) / 86400


# ---------------------------------------------------------------------------------------- memory
ACTIVATION_COMPONENTS = ("model", "handout")


def activation_counts(model: Any, batch_size: int, seq_len: int | None = None, *, components: str = "model") -> dict[str, int]:
    """Activation elements a training step keeps for the backward pass, by component, summed over
    layers: one tensor per operation.

    `components="model"` counts every activation of the model as built (T = batch·seq tokens,
    h heads), per block: RMSNorms 2·T·d (none without norms), QKV projections 3·T·d (with qk_norm
    2·T·d more: the normalised q and k; with value_residual T·d more in every layer after the
    first: the mixed values), QᵀK h·batch·seq², softmax h·batch·seq², weighted sum of
    values T·d, output projection T·d, W1 T·d_ff, SiLU T·d_ff (ReLU² for the "relu2" FFN, counted
    the same), W2 T·d — and for SwiGLU also W3 T·d_ff and the gate product SiLU(W1x)⊙W3x T·d_ff,
    which W2's backward needs; with residual_scalars an entry of its own, 3·T·d: the gradients of
    λ_x, g_attn and g_ffn need the stream before the mix and each branch's output (the first
    block's stream is x0, which every λ_0 needs). After the blocks: final RMSNorm T·d, output
    embedding (logits) T·V (2·T·V with logit_softcap: the capped logits too), cross-entropy on the
    logits (the softmax it keeps) T·V.

    `components="handout"` counts only the handout's list for its AdamW accounting question, as
    written: per block the RMSNorm(s) (the pre-norm block's two), QKV projections, QᵀK, softmax,
    weighted sum, output projection, W1, SiLU, W2, with d_ff = 4·d_model as the handout assumes; then
    the final RMSNorm, the logits and the cross-entropy. It depends on the handout's hyperparameters
    alone (vocabulary, context, layers, d_model, heads), whatever the model's d_ff, FFN or norm: no
    W3 and no gate.

    >>> toy = ModelConfig(vocab_size=10, context_length=4, d_model=8, num_layers=1, num_heads=2, d_ff=32)
    >>> sum(activation_counts(toy, 1).values()), sum(activation_counts(toy, 1, components="handout").values())
    (944, 688)
    """
    if components not in ACTIVATION_COMPONENTS:
        raise CS336Error(f"unknown activation components {components!r}; valid: {', '.join(ACTIVATION_COMPONENTS)}")
    s = model_config(model)
    seq = s.context_length if seq_len is None else seq_len
    t, d, n, v = batch_size * seq, s.d_model, s.num_layers, s.vocab_size
    handout = components == "handout"
    w = 4 * d if handout else s.ffn_width
    norms = 1 if handout or s.norm != "none" else 0
    gated = s.ffn == "swiglu" and not handout
    mixed_values = 0 if handout else _value_mixing_layers(s) * t * d
    counts = {
        "rmsnorm": n * 2 * norms * t * d,
        "qkv_projections": n * (3 + (2 if s.qk_norm and not handout else 0)) * t * d + mixed_values,
        "attention_scores": n * s.num_heads * batch_size * seq * seq,
        "softmax": n * s.num_heads * batch_size * seq * seq,
        "attention_weighted_sum": n * t * d,
        "output_projection": n * t * d,
        "ffn_w1": n * t * w,
        "ffn_silu": n * t * w,
        "ffn_w3": n * t * w if gated else 0,
        "ffn_gate": n * t * w if gated else 0,
        "ffn_w2": n * t * d,
        "final_rmsnorm": norms * t * d,
        "lm_head": (2 if s.logit_softcap is not None and not handout else 1) * t * v,
        "cross_entropy": t * v,
    }
    if s.residual_scalars and not handout:
        counts["residual_scalars"] = n * 3 * t * d
    return counts


def adamw_memory(model: Any, batch_size: int, seq_len: int | None = None, dtype_bytes: int = 4, *,
                 components: str = "model") -> dict[str, int]:
    """Peak bytes of an AdamW training step by component, assuming (as the handout does) that all
    of them are alive at once: parameters, gradients, optimizer state (m and v: 2× parameters) and
    the activations of `activation_counts` (`components` chooses which). Sum the values for the total."""
    p = num_parameters(model) * dtype_bytes
    acts = sum(activation_counts(model, batch_size, seq_len, components=components).values()) * dtype_bytes
    return {"parameters": p, "gradients": p, "optimizer_state": 2 * p, "activations": acts}


def adamw_memory_linear(model: Any, seq_len: int | None = None, dtype_bytes: int = 4, *,
                        components: str = "model") -> tuple[int, int]:
    """(a, b) with peak bytes M(B) = a·B + b: activations grow with the batch, the rest does not."""
    b = sum(adamw_memory(model, 0, seq_len, dtype_bytes, components=components).values())
    a = sum(adamw_memory(model, 1, seq_len, dtype_bytes, components=components).values()) - b
    return a, b


def largest_batch(model: Any, memory_bytes: float, seq_len: int | None = None, dtype_bytes: int = 4, *,
                  components: str = "model") -> int:
    """The largest batch size whose `adamw_memory` fits in `memory_bytes` (0 if none does)."""
    a, b = adamw_memory_linear(model, seq_len, dtype_bytes, components=components)
    return max(0, math.floor((memory_bytes - b) / a))
