"""The KV cache: keys and values of the tokens a model has already read, kept for decoding.

Without it, sampling token n+1 re-runs the model over all n tokens before it. With it, each step
feeds only the new token: every attention layer appends that token's key and value to its cache
and attends over the cached ones, so a step costs O(context) instead of O(context²).

Keys are cached *after* RoPE, rotated at the positions they were read at; so the next token's
position is the cache length (`TransformerLM.forward` counts on from there). A cache is valid only
while those positions stay the same: when the context window slides, the cache must be rebuilt
from the tokens still in the window (see `cs336.generation`).

>>> cache = KVCache(num_layers=2)
>>> k, v = cache[0].append(torch.ones(1, 4, 3, 8), torch.ones(1, 4, 3, 8))  # (batch, heads, seq, d)
>>> k.shape, len(cache[0])
(torch.Size([1, 4, 3, 8]), 3)
"""

from __future__ import annotations

import torch
from jaxtyping import Float
from torch import Tensor


class LayerKVCache:
    """One attention layer's cached keys and values, shaped (..., heads, seq, d_k)."""

    def __init__(self) -> None:
        self.keys: Tensor | None = None
        self.values: Tensor | None = None

    def __len__(self) -> int:
        return 0 if self.keys is None else self.keys.shape[-2]

    def append(
        self, k: Float[Tensor, "... h new d"], v: Float[Tensor, "... h new d"]
    ) -> tuple[Float[Tensor, "... h seq d"], Float[Tensor, "... h seq d"]]:
        """Add the new tokens' keys and values; return all of them (old first)."""
        if self.keys is None:
            self.keys, self.values = k, v
        else:
            self.keys = torch.cat((self.keys, k), dim=-2)
            self.values = torch.cat((self.values, v), dim=-2)
        return self.keys, self.values


class KVCache:
    """A `LayerKVCache` per layer; its length is the number of tokens the model has read."""

    def __init__(self, num_layers: int) -> None:
        self.layers = [LayerKVCache() for _ in range(num_layers)]

    def __getitem__(self, i: int) -> LayerKVCache:
        return self.layers[i]

    def __len__(self) -> int:
        return len(self.layers[0]) if self.layers else 0
