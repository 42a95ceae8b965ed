"""The Transformer's layers, written from the handout's definitions.

Every layer holds its parameters under the public API's state-dict keys. The reference path uses
plain tensor ops; `fused=True` (keyword-only) swaps in PyTorch's fused kernels
(`F.scaled_dot_product_attention`, `F.rms_norm`, `F.silu`, `F.relu`, `F.linear`, `F.embedding`,
`torch.lerp`), tested equal to it. Both paths trace into a single torch.compile graph.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from einops import rearrange
from jaxtyping import Float, Int
from torch import Tensor, nn

from cs336.errors import CS336Error
from cs336.model.functional import causal_mask, relu_squared, scaled_dot_product_attention, silu
from cs336.model.kv_cache import LayerKVCache


class Linear(nn.Module):
    """y = x Wᵀ, no bias. W is (out, in), initialised N(0, 2/(in+out)) truncated at ±3σ."""

    def __init__(self, in_features: int, out_features: int, device=None, dtype=None, *, fused: bool = False):
        super().__init__()
        self.in_features, self.out_features, self.fused = in_features, out_features, fused
        self.weight = nn.Parameter(torch.empty(out_features, in_features, device=device, dtype=dtype))
        std = math.sqrt(2.0 / (in_features + out_features))
        nn.init.trunc_normal_(self.weight, mean=0.0, std=std, a=-3 * std, b=3 * std)

    def forward(self, x: Float[Tensor, "... d_in"]) -> Float[Tensor, "... d_out"]:
        if self.fused:
            return F.linear(x, self.weight)
        return x @ self.weight.T  # a transposed view: the product reads W in place (einsum copies it)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}"


class Embedding(nn.Module):
    """A lookup table: row `i` of `weight` is the vector of token `i`. Init N(0, 1) truncated at ±3."""

    def __init__(self, num_embeddings: int, embedding_dim: int, device=None, dtype=None, *, fused: bool = False):
        super().__init__()
        self.num_embeddings, self.embedding_dim, self.fused = num_embeddings, embedding_dim, fused
        self.weight = nn.Parameter(torch.empty(num_embeddings, embedding_dim, device=device, dtype=dtype))
        nn.init.trunc_normal_(self.weight, mean=0.0, std=1.0, a=-3.0, b=3.0)

    def forward(self, token_ids: Int[Tensor, "..."]) -> Float[Tensor, "... d"]:
        if self.fused:  # its backward is a dedicated scatter-add, cheaper than indexing's
            return F.embedding(token_ids, self.weight)
        return self.weight[token_ids]

    def extra_repr(self) -> str:
        return f"{self.num_embeddings}, {self.embedding_dim}"


class RMSNorm(nn.Module):
    """x / sqrt(mean(x²) + eps) · g, computed in float32 (squares of bf16 overflow and lose
    precision) and cast back to the input dtype."""

    def __init__(self, d_model: int, eps: float = 1e-5, device=None, dtype=None, *, fused: bool = False):
        super().__init__()
        self.d_model, self.eps, self.fused = d_model, eps, fused
        self.weight = nn.Parameter(torch.ones(d_model, device=device, dtype=dtype))

    def forward(self, x: Float[Tensor, "... d_model"]) -> Float[Tensor, "... d_model"]:
        in_dtype = x.dtype
        x32, g32 = x.to(torch.float32), self.weight.to(torch.float32)  # no-ops for float32
        if self.fused:
            return F.rms_norm(x32, (self.d_model,), g32, self.eps).to(in_dtype)
        rms = torch.sqrt(x32.pow(2).mean(dim=-1, keepdim=True) + self.eps)
        return (x32 / rms * g32).to(in_dtype)


class SwiGLU(nn.Module):
    """The gated feed-forward network: w2(silu(w1 x) ⊙ w3 x)."""

    def __init__(self, d_model: int, d_ff: int, device=None, dtype=None, *, fused: bool = False):
        super().__init__()
        self.fused = fused
        self.w1 = Linear(d_model, d_ff, device, dtype, fused=fused)
        self.w2 = Linear(d_ff, d_model, device, dtype, fused=fused)
        self.w3 = Linear(d_model, d_ff, device, dtype, fused=fused)

    def forward(self, x: Float[Tensor, "... d_model"]) -> Float[Tensor, "... d_model"]:
        act = F.silu if self.fused else silu
        return self.w2(act(self.w1(x)) * self.w3(x))


class SiLUFFN(nn.Module):
    """The ungated ablation: w2(silu(w1 x)). With d_ff = 4·d_model it has the parameters of a
    SwiGLU with d_ff = 8/3·d_model (8·d_model² either way)."""

    def __init__(self, d_model: int, d_ff: int, device=None, dtype=None, *, fused: bool = False):
        super().__init__()
        self.fused = fused
        self.w1 = Linear(d_model, d_ff, device, dtype, fused=fused)
        self.w2 = Linear(d_ff, d_model, device, dtype, fused=fused)

    def forward(self, x: Float[Tensor, "... d_model"]) -> Float[Tensor, "... d_model"]:
        return self.w2(self.activation(self.w1(x)))

    def activation(self, h: Tensor) -> Tensor:
        return F.silu(h) if self.fused else silu(h)


class ReLU2FFN(SiLUFFN):
    """The ungated squared-ReLU FFN: w2(relu(w1 x)²). The matrices (and width option) of `SiLUFFN`,
    so the two compare at equal parameters."""

    def activation(self, h: Tensor) -> Tensor:
        return F.relu(h).square() if self.fused else relu_squared(h)


class RotaryPositionalEmbedding(nn.Module):
    """RoPE: rotates each adjacent pair (x[2k], x[2k+1]) of a query or key at position i by the
    angle i / θ^(2k/d_k), k = 0..d_k/2-1, so that q·k depends on positions only through their
    difference.

    cos/sin tables for every position below `max_seq_len` are computed once (in float64, then
    stored as float32) and kept as non-persistent buffers: they follow `.to(device)` but stay out of
    the state dict.

    >>> rope = RotaryPositionalEmbedding(theta=10000.0, d_k=2, max_seq_len=4)
    >>> rope(torch.tensor([[1.0, 0.0]]), torch.tensor([1]))  # (cos 1, sin 1)
    tensor([[0.5403, 0.8415]])
    """

    def __init__(self, theta: float, d_k: int, max_seq_len: int, device=None, *, fused: bool = False):
        super().__init__()
        if d_k % 2:
            raise CS336Error(f"RoPE needs an even head dimension, got d_k={d_k}")
        self.theta, self.d_k, self.max_seq_len, self.fused = theta, d_k, max_seq_len, fused
        inv_freq = theta ** -(torch.arange(0, d_k, 2, device=device, dtype=torch.float64) / d_k)
        angles = torch.arange(max_seq_len, device=device, dtype=torch.float64)[:, None] * inv_freq
        self.register_buffer("cos", angles.cos().to(torch.float32), persistent=False)  # (max_seq_len, d_k/2)
        self.register_buffer("sin", angles.sin().to(torch.float32), persistent=False)

    def forward(
        self, x: Float[Tensor, "... seq d_k"], token_positions: Int[Tensor, "... seq"] | None = None
    ) -> Float[Tensor, "... seq d_k"]:
        """`token_positions` broadcasts against x's leading dims; `None` means 0..seq-1 (a slice of
        the tables instead of a gather)."""
        if token_positions is None:
            cos, sin = self.cos[: x.shape[-2]], self.sin[: x.shape[-2]]
        else:
            cos, sin = self.cos[token_positions], self.sin[token_positions]  # (... seq, d_k/2)
        if self.fused and not torch.compiler.is_compiling():
            # A pair (a, b) is the complex number a + ib, and the rotation is a product with
            # cos + i·sin: one complex multiply instead of four real ones, a subtraction, an
            # addition and a stack (about 3x faster forward+backward on CPU), in float32 as below.
            # Not under torch.compile: Inductor fuses the real version into one kernel but has no
            # code generation for complex numbers.
            pairs = torch.view_as_complex(x.float().unflatten(-1, (-1, 2)))  # a view when x is float32
            rotated = torch.view_as_real(pairs * torch.complex(cos.float(), sin.float()))
            return rotated.flatten(-2).to(x.dtype)
        x_even, x_odd = x.unflatten(-1, (-1, 2)).unbind(-1)  # views; their backward is one stack
        rotated = torch.stack((x_even * cos - x_odd * sin, x_even * sin + x_odd * cos), dim=-1)
        return rotated.flatten(-2).to(x.dtype)  # interleave back: (..., k, 2) -> (..., 2k)


class MultiHeadSelfAttention(nn.Module):
    """Causal multi-head self-attention; RoPE on Q and K when `max_seq_len` and `theta` are given.

    With `qk_norm`, each head's queries and keys go through an RMSNorm over the head dimension
    (`q_norm.weight`, `k_norm.weight`, one gain per head dimension shared by the heads) before RoPE.

    With `value_residual` (for every layer but the first), the values are mixed with the first
    layer's values of the same tokens before attention, v ← (1 − λ)·v + λ·v₁: the value residual
    of ResFormer (Zhou et al. 2024, "Value Residual Learning For Alleviating Attention
    Concentration In Transformers", arXiv:2410.17897), which fixes λ = 0.5, made learnable as in
    the modded-nanogpt speed-run: one scalar per layer (`value_mix`), starting at 0.5.

    The projections stack the heads in rows: rows h·d_k .. (h+1)·d_k of `q_proj.weight` are head h.
    """

    def __init__(
        self,
        d_model: int,
        num_heads: int,
        max_seq_len: int | None = None,
        theta: float | None = None,
        device=None,
        dtype=None,
        *,
        qk_norm: bool = False,
        value_residual: bool = False,
        fused: bool = False,
    ):
        super().__init__()
        if d_model % num_heads:
            raise CS336Error(f"d_model={d_model} is not divisible by num_heads={num_heads}")
        self.d_model, self.num_heads, self.d_k, self.fused = d_model, num_heads, d_model // num_heads, fused
        self.q_proj = Linear(d_model, d_model, device, dtype, fused=fused)
        self.k_proj = Linear(d_model, d_model, device, dtype, fused=fused)
        self.v_proj = Linear(d_model, d_model, device, dtype, fused=fused)
        self.output_proj = Linear(d_model, d_model, device, dtype, fused=fused)
        self.rope = (
            RotaryPositionalEmbedding(theta, self.d_k, max_seq_len, device, fused=fused)
            if max_seq_len is not None and theta is not None
            else None
        )
        self.qk_norm = qk_norm
        if qk_norm:
            self.q_norm = RMSNorm(self.d_k, device=device, dtype=dtype, fused=fused)
            self.k_norm = RMSNorm(self.d_k, device=device, dtype=dtype, fused=fused)
        self.value_residual = value_residual
        if value_residual:  # λ, the first layer's share of the values
            self.value_mix = nn.Parameter(torch.full((), 0.5, device=device, dtype=dtype))

    def forward(
        self,
        x: Float[Tensor, "... seq d_model"],
        token_positions: Int[Tensor, "... seq"] | None = None,
        *,
        kv_cache: LayerKVCache | None = None,
        first_values: Float[Tensor, "... h seq d"] | None = None,
        return_values: bool = False,
    ) -> Float[Tensor, "... seq d_model"] | tuple[Float[Tensor, "... seq d_model"], Float[Tensor, "... h seq d"]]:
        """With `kv_cache`, `x` holds only the tokens after the cached ones: their positions count
        on from the cache length, and they attend to the cached keys and values as well.

        `return_values` also returns the values the tokens of `x` were attended with, (batch,
        heads, seq, d_k): the first layer's are the `first_values` that a `value_residual` layer
        needs. Only the new tokens' are needed: the cache holds values already mixed."""
        seq = x.shape[-2]
        past = 0 if kv_cache is None else len(kv_cache)
        q, k, v = (
            rearrange(proj(x), "... seq (h d) -> ... h seq d", h=self.num_heads)
            for proj in (self.q_proj, self.k_proj, self.v_proj)
        )
        if self.qk_norm:
            q, k = self.q_norm(q), self.k_norm(k)
        if self.value_residual:
            if first_values is None:
                raise CS336Error("a value_residual attention layer needs the first layer's values (first_values)")
            lam = self.value_mix
            v = torch.lerp(v, first_values, lam) if self.fused else (1 - lam) * v + lam * first_values
        new_values = v
        if self.rope is not None:
            if token_positions is None and past:  # cached tokens hold positions 0..past-1
                token_positions = torch.arange(past, past + seq, device=x.device)
            positions = None if token_positions is None else token_positions.unsqueeze(-2)  # over heads
            q, k = self.rope(q, positions), self.rope(k, positions)
        if kv_cache is not None:
            k, v = kv_cache.append(k, v)
        if self.fused and past == 0:
            out = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        elif self.fused:  # is_causal would align the diagonal to the top left, ignoring `past`
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=causal_mask(seq, x.device, past=past))
        else:
            out = scaled_dot_product_attention(q, k, v, causal_mask(seq, x.device, past=past))
        out = self.output_proj(rearrange(out, "... h seq d -> ... seq (h d)"))
        return (out, new_values) if return_values else out
