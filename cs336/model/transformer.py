"""The Transformer language model: blocks of attention and feed-forward with residual streams.

Reference architecture (the handout's): pre-norm RMSNorm, RoPE, SwiGLU, untied embedding and LM
head. The ablations of the write-up are keyword-only switches that default to it:

- `norm`: "pre" (x + f(norm(x))), "post" (norm(x + f(x))), or "none" (x + f(x), no final norm);
- `position`: "rope" or "nope" (no positional information at all; causality still leaks order);
- `ffn`: "swiglu", "silu" (w2(silu(w1 x)) with `silu_d_ff`, default 4·d_model, which matches
  SwiGLU's parameter count at d_ff = 8/3·d_model) or "relu2" (w2(relu(w1 x)²), same width option);
- `qk_norm`: RMSNorm on each head's queries and keys (gains of size head_dim), before RoPE;
- `logit_softcap`: c > 0 bounds the logits smoothly, logits ← c·tanh(logits / c) (None: off);
- `zero_init_output`: each block's attention output projection and FFN output matrix (w2) start
  at zero, so every block starts as the identity on the residual stream;
- `tie_embeddings`: the LM head and the token embedding share one matrix (initialised as the head);
- `value_residual`: every layer after the first mixes the first layer's values into its own,
  v ← (1 − λ)·v + λ·v₁, with a learnable λ per layer (`layers.{i}.attn.value_mix`, from 0.5):
  ResFormer's value residual (arXiv:2410.17897) with the modded-nanogpt speed-run's learnable λ;
- `residual_scalars`: before each block the stream is mixed with the token embeddings x0,
  x ← λ_x·x + λ_0·x0 (`layers.{i}.stream_mix` = (λ_x, λ_0), from (1, 0), the speed-run's "embed
  shortcut"), and each branch enters the stream times a gain (`layers.{i}.branch_gains` =
  (g_attn, g_ffn), from (1, 1)): at initialisation the model without the switch, reparametrised
  (in the first block x is x0, so its mix only scales the embeddings);
- `dropout`: p > 0 zeroes entries of the token embeddings and of each branch's output before it
  enters the stream with probability p in training (GPT-2's embedding and residual dropout), a
  regulariser for data seen many times; none at evaluation (`model.eval()`);
- `fused`: PyTorch's fused kernels in place of the reference ops (same numbers, faster).

The same arguments, as data, are a `cs336.model.config.ModelConfig`: what a config file's `[model]`
table holds and what `cs336.accounting` counts.
"""

from __future__ import annotations

import torch
from jaxtyping import Float, Int
from torch import Tensor, nn

from cs336.errors import CS336Error
from cs336.model.config import FFN, FFNS, NORMS, POSITIONS, Norm, Position, check_choice
from cs336.model.functional import dropout as drop, softcap
from cs336.model.kv_cache import KVCache, LayerKVCache
from cs336.model.layers import Embedding, Linear, MultiHeadSelfAttention, ReLU2FFN, RMSNorm, SiLUFFN, SwiGLU


class TransformerBlock(nn.Module):
    """One layer: `y = x + attn(ln1(x)); z = y + ffn(ln2(y))` in the reference (pre-norm) form.

    With `residual_scalars`: `x ← λ_x·x + λ_0·x0; y = x + g_attn·attn(ln1(x)); z = y + g_ffn·ffn(ln2(y))`.
    With `value_residual`, its attention mixes in the first layer's values (see `MultiHeadSelfAttention`).
    """

    def __init__(
        self,
        d_model: int,
        num_heads: int,
        d_ff: int,
        max_seq_len: int,
        theta: float,
        device=None,
        dtype=None,
        *,
        norm: Norm = "pre",
        position: Position = "rope",
        ffn: FFN = "swiglu",
        silu_d_ff: int | None = None,
        qk_norm: bool = False,
        value_residual: bool = False,
        residual_scalars: bool = False,
        zero_init_output: bool = False,
        dropout: float = 0.0,
        fused: bool = False,
    ):
        super().__init__()
        check_choice("norm", norm, NORMS)
        self.dropout = dropout
        check_choice("position", position, POSITIONS)
        check_choice("ffn", ffn, FFNS)
        self.norm = norm
        rope = position == "rope"
        self.attn = MultiHeadSelfAttention(
            d_model, num_heads, max_seq_len if rope else None, theta if rope else None, device, dtype,
            qk_norm=qk_norm, value_residual=value_residual, fused=fused,
        )
        if norm != "none":
            self.ln1 = RMSNorm(d_model, device=device, dtype=dtype, fused=fused)
            self.ln2 = RMSNorm(d_model, device=device, dtype=dtype, fused=fused)
        if ffn == "swiglu":
            self.ffn = SwiGLU(d_model, d_ff, device, dtype, fused=fused)
        else:
            ungated = SiLUFFN if ffn == "silu" else ReLU2FFN
            self.ffn = ungated(d_model, silu_d_ff or 4 * d_model, device, dtype, fused=fused)
        if zero_init_output:  # the matrices that write into the residual stream
            nn.init.zeros_(self.attn.output_proj.weight)
            nn.init.zeros_(self.ffn.w2.weight)
        self.residual_scalars = residual_scalars
        if residual_scalars:  # (λ_x, λ_0) and (g_attn, g_ffn), at values that change nothing
            self.stream_mix = nn.Parameter(torch.tensor([1.0, 0.0], device=device, dtype=dtype))
            self.branch_gains = nn.Parameter(torch.ones(2, device=device, dtype=dtype))

    def forward(
        self,
        x: Float[Tensor, "... seq d_model"],
        token_positions: Int[Tensor, "... seq"] | None = None,
        *,
        kv_cache: LayerKVCache | None = None,
        x0: Float[Tensor, "... seq d_model"] | None = None,
        first_values: Float[Tensor, "... h seq d"] | None = None,
        return_values: bool = False,
    ) -> Float[Tensor, "... seq d_model"] | tuple[Float[Tensor, "... seq d_model"], Float[Tensor, "... h seq d"]]:
        """`x0`: the token embeddings that `residual_scalars` mixes in (`None`: `x`, as in the first
        block); `first_values` and `return_values`: as in `MultiHeadSelfAttention.forward`."""
        if self.residual_scalars:
            x = self.stream_mix[0] * x + self.stream_mix[1] * (x if x0 is None else x0)
        a, values = self.attn(
            self.ln1(x) if self.norm == "pre" else x, token_positions,
            kv_cache=kv_cache, first_values=first_values, return_values=True,
        )
        if self.norm == "pre":
            y = x + self.scaled(0, a)
            z = y + self.scaled(1, self.ffn(self.ln2(y)))
        elif self.norm == "post":
            y = self.ln1(x + self.scaled(0, a))
            z = self.ln2(y + self.scaled(1, self.ffn(y)))
        else:
            y = x + self.scaled(0, a)
            z = y + self.scaled(1, self.ffn(y))
        return (z, values) if return_values else z

    def scaled(self, branch: int, out: Tensor) -> Tensor:
        """A branch's output (0: attention, 1: FFN) as it enters the stream: after `dropout` (in
        training), times its gain with `residual_scalars`."""
        out = drop(out, self.dropout, self.training)
        return self.branch_gains[branch] * out if self.residual_scalars else out


class TransformerLM(nn.Module):
    """token ids (batch, seq) → logits (batch, seq, vocab). Keys: `token_embeddings.weight`,
    `layers.{i}.*`, `ln_final.weight`, `lm_head.weight`."""

    def __init__(
        self,
        vocab_size: int,
        context_length: int,
        d_model: int,
        num_layers: int,
        num_heads: int,
        d_ff: int,
        rope_theta: float,
        device=None,
        dtype=None,
        *,
        norm: Norm = "pre",
        position: Position = "rope",
        ffn: FFN = "swiglu",
        silu_d_ff: int | None = None,
        qk_norm: bool = False,
        logit_softcap: float | None = None,
        zero_init_output: bool = False,
        tie_embeddings: bool = False,
        value_residual: bool = False,
        residual_scalars: bool = False,
        dropout: float = 0.0,
        fused: bool = False,
    ):
        super().__init__()
        if logit_softcap is not None and not logit_softcap > 0:
            raise CS336Error(f"logit_softcap={logit_softcap} must be positive (or None)")
        if not 0 <= dropout < 1:
            raise CS336Error(f"dropout={dropout} must be in [0, 1)")
        self.dropout = dropout
        self.logit_softcap, self.zero_init_output = logit_softcap, zero_init_output
        self.vocab_size, self.context_length = vocab_size, context_length
        self.d_model, self.num_layers, self.num_heads, self.d_ff = d_model, num_layers, num_heads, d_ff
        self.rope_theta, self.norm, self.position, self.ffn = rope_theta, norm, position, ffn
        self.silu_d_ff, self.qk_norm, self.tie_embeddings, self.fused = silu_d_ff, qk_norm, tie_embeddings, fused
        self.value_residual, self.residual_scalars = value_residual, residual_scalars
        self.token_embeddings = Embedding(vocab_size, d_model, device, dtype, fused=fused)
        self.layers = nn.ModuleList(
            TransformerBlock(
                d_model, num_heads, d_ff, context_length, rope_theta, device, dtype,
                norm=norm, position=position, ffn=ffn, silu_d_ff=silu_d_ff, qk_norm=qk_norm,
                value_residual=value_residual and i > 0, residual_scalars=residual_scalars,
                zero_init_output=zero_init_output, dropout=dropout, fused=fused,
            )
            for i in range(num_layers)
        )
        if norm != "none":
            self.ln_final = RMSNorm(d_model, device=device, dtype=dtype, fused=fused)
        self.lm_head = Linear(d_model, vocab_size, device, dtype, fused=fused)
        if tie_embeddings:
            # One matrix serves both ends and keeps the head's init (σ² = 2/(d_model + vocab)):
            # the embedding's N(0, 1) would make the initial logits ~√d_model times too large.
            self.token_embeddings.weight = self.lm_head.weight

    def forward(
        self,
        token_ids: Int[Tensor, "... seq"],
        *,
        token_positions: Int[Tensor, "... seq"] | None = None,
        kv_cache: KVCache | None = None,
        head: bool = True,
    ) -> Float[Tensor, "... seq vocab"] | Float[Tensor, "... seq d_model"]:
        """With `kv_cache` (see `cs336.model.kv_cache`), `token_ids` are the tokens after the
        cached ones; they are appended to the cache, and positions count on from its length.

        `head=False` returns the final hidden states instead of logits (after the final norm, before
        the LM head and any soft-cap), for a loss that applies the head itself
        (`cs336.training.loss.linear_cross_entropy`)."""
        seq = token_ids.shape[-1] + (0 if kv_cache is None else len(kv_cache))
        if seq > self.context_length:
            raise CS336Error(f"sequence length {seq} exceeds context_length {self.context_length}")
        x = x0 = drop(self.token_embeddings(token_ids), self.dropout, self.training)
        first_values = None  # the first layer's values of these tokens (the cached ones are mixed already)
        for i, layer in enumerate(self.layers):
            x, values = layer(
                x, token_positions, kv_cache=None if kv_cache is None else kv_cache[i], x0=x0,
                first_values=first_values, return_values=True,
            )
            if i == 0:
                first_values = values
        if self.norm != "none":
            x = self.ln_final(x)
        if not head:
            return x
        logits = self.lm_head(x)
        if self.logit_softcap is None:
            return logits
        if self.fused:
            return self.logit_softcap * torch.tanh(logits / self.logit_softcap)
        return softcap(logits, self.logit_softcap)

    def num_parameters(self, *, exclude_embeddings: bool = False) -> int:
        """Distinct parameters (a tied head counts once)."""
        n = sum(p.numel() for p in self.parameters())
        return n - self.token_embeddings.weight.numel() if exclude_embeddings else n
