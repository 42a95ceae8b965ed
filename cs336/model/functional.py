"""Stateless building blocks of the Transformer: softmax, SiLU, ReLU², logit soft-capping, dropout,
attention.

The reference versions are written with plain tensor ops (no `torch.nn.functional`), as the
handout asks; each layer that uses them can opt into PyTorch's fused kernels instead
(`fused=True`), which the tests check against these.
"""

from __future__ import annotations

import math

import torch

from jaxtyping import Bool, Float
from torch import Tensor


def softmax(x: Tensor, dim: int) -> Tensor:
    """Numerically stable softmax: subtracting the max leaves the result unchanged but keeps
    `exp` from overflowing.

    >>> softmax(torch.tensor([1000.0, 1000.0]), dim=0)
    tensor([0.5000, 0.5000])
    """
    # The result does not depend on the shift, so no gradient flows through it: detaching skips
    # amax's backward (an equality mask and a division over the whole tensor) at no cost in exactness.
    shifted = x - x.amax(dim=dim, keepdim=True).detach()
    e = torch.exp(shifted)
    # Times the reciprocal of the sum, not divided by the sum: the same numbers (to rounding), but a
    # division's backward takes two more passes over the whole tensor than a product's.
    return e * e.sum(dim=dim, keepdim=True).reciprocal()


def silu(x: Tensor) -> Tensor:
    """SiLU (swish): x · σ(x)."""
    return x * torch.sigmoid(x)


def relu_squared(x: Tensor) -> Tensor:
    """ReLU(x)² = max(x, 0)²."""
    return x.clamp(min=0).square()


def softcap(x: Tensor, cap: float) -> Tensor:
    """cap · tanh(x / cap), with tanh(y) = 2σ(2y) − 1 (σ saturates instead of overflowing): about x
    for |x| ≪ cap, never beyond ±cap.

    >>> softcap(torch.tensor([0.0, 1e6]), 30.0)
    tensor([ 0., 30.])
    """
    return cap * (2 * torch.sigmoid(x * (2 / cap)) - 1)


def dropout(x: Tensor, p: float, training: bool = True) -> Tensor:
    """Inverted dropout: each entry zeroed with probability `p`, the rest scaled by 1/(1 − p), so the
    expected value is unchanged; the identity when `p` is 0 or outside training. It draws its mask
    from torch's global generator, the same draws in the reference and the fused path.

    >>> dropout(torch.ones(4), 0.5, training=False)
    tensor([1., 1., 1., 1.])
    """
    if p == 0 or not training:
        return x
    keep = torch.empty_like(x).bernoulli_(1 - p)
    return x * keep * (1 / (1 - p))


def scaled_dot_product_attention(
    Q: Float[Tensor, "... q d_k"],
    K: Float[Tensor, "... k d_k"],
    V: Float[Tensor, "... k d_v"],
    mask: Bool[Tensor, "... q k"] | None = None,
) -> Float[Tensor, "... q d_v"]:
    """softmax(Q Kᵀ / √d_k) V, where `mask[..., i, j] = True` means query i may attend to key j.

    A query row that is masked everywhere comes out NaN (as in PyTorch's own kernel); a causal mask
    never does that, since every position sees itself.
    """
    d_k = Q.shape[-1]
    # (Q/√d_k)Kᵀ = QKᵀ/√d_k; scaling Q touches q·d_k numbers instead of q·k scores. `@` batches over
    # the leading dims as they are (einsum would permute and copy the scores for its product).
    scores = (Q / math.sqrt(d_k)) @ K.transpose(-2, -1)
    if mask is not None:
        # Adding −∞ where masked (0 elsewhere) rather than filling: an addition's backward passes the
        # gradient through untouched, a fill's masks it in one more pass over the scores.
        bias = torch.zeros(mask.shape, dtype=scores.dtype, device=scores.device).masked_fill_(~mask, float("-inf"))
        scores = scores + bias
    weights = softmax(scores, dim=-1)
    return weights @ V


def causal_mask(seq_len: int, device: torch.device | None = None, *, past: int = 0) -> Bool[Tensor, "q past+q"]:
    """`True` on and below the diagonal: position i sees positions 0..i. With `past` earlier
    (cached) keys in front, query i sits at position past + i.

    >>> causal_mask(2, past=1).int()
    tensor([[1, 1, 0],
            [1, 1, 1]], dtype=torch.int32)
    """
    return torch.ones(seq_len, past + seq_len, dtype=torch.bool, device=device).tril(diagonal=past)
