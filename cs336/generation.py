"""Decoding: turn a trained language model and a prompt into text.

Each step reads the model's logits for the next token, reshapes them into a sampling distribution
(`next_token_distribution`: temperature, then top-k, then top-p) and draws one token from it with
a seeded `torch.Generator`, so the same seed gives the same text.

Two details make decoding both exact and fast:

- **The context window.** The model reads at most `context_length` tokens. When the sequence
  outgrows it, the window moves forward by `slide` tokens at once (`window_start`): `slide=1` always
  shows the model the latest `context_length` tokens; a larger slide keeps the window in place for
  `slide - 1` more steps, which is what lets the cache be reused.
- **The KV cache** (`cs336.model.kv_cache`). With `use_cache=True` each step feeds only the newest
  token. RoPE rotated the cached keys at their positions in the window, so when the window moves
  they are stale: the cache is then rebuilt from the tokens still in the window. Either way the
  model sees exactly the same window as without a cache, so the two paths give the same logits
  (tested to 1e-5), and a cached step costs O(context) instead of O(context²).

>>> text = generate(model, tokenizer, "Once upon a time", max_new_tokens=32, temperature=0.95, top_p=0.1)  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
from jaxtyping import Float
from torch import Tensor, nn

from cs336.errors import CS336Error
from cs336.model.functional import softmax
from cs336.model.kv_cache import KVCache, LayerKVCache
from cs336.runs import load_run
from cs336.tokenization import END_OF_TEXT


__all__ = [
    "KVCache",
    "LayerKVCache",
    "Step",
    "next_token_distribution",
    "window_start",
    "sample_ids",
    "generate",
]


def next_token_distribution(
    logits: Float[Tensor, "... vocab"], temperature: float = 1.0, top_p: float = 1.0, top_k: int | None = None
) -> Float[Tensor, "... vocab"]:
    """The distribution the next token is drawn from.

    - `temperature` divides the logits before the softmax: below 1 sharpens, above 1 flattens,
      and 0 means greedy (all mass on the arg-max; the lowest id wins a tie).
    - `top_k` keeps the k most likely tokens.
    - `top_p` (nucleus) keeps the smallest set of most likely tokens whose probability adds up to
      at least `top_p` (always at least one token); ties in probability keep the lower id first.

    The kept probabilities are renormalised to sum to 1.

    >>> next_token_distribution(torch.tensor([2.0, 1.0, 0.0]), top_p=0.5)
    tensor([1., 0., 0.])
    >>> next_token_distribution(torch.tensor([2.0, 1.0, 0.0]), temperature=0).tolist()
    [1.0, 0.0, 0.0]
    """
    if temperature < 0:
        raise CS336Error(f"temperature must be >= 0, got {temperature}")
    if not 0 < top_p <= 1:
        raise CS336Error(f"top_p must be in (0, 1], got {top_p}")
    if top_k is not None and top_k < 1:
        raise CS336Error(f"top_k must be >= 1, got {top_k}")
    logits = logits.to(torch.float32)
    if temperature == 0:
        greedy = torch.zeros_like(logits)
        return greedy.scatter_(-1, logits.argmax(dim=-1, keepdim=True), 1.0)
    probs = softmax(logits / temperature, dim=-1)
    if top_k is None and top_p >= 1:
        return probs
    sorted_probs, order = torch.sort(probs, dim=-1, descending=True, stable=True)
    keep = torch.ones_like(sorted_probs, dtype=torch.bool)
    if top_k is not None:
        keep[..., top_k:] = False
    if top_p < 1:
        # Keep a token while the tokens before it hold less than top_p: the first one always stays.
        mass_before = sorted_probs.cumsum(dim=-1) - sorted_probs
        keep &= mass_before < top_p
    kept = torch.zeros_like(probs).scatter_(-1, order, sorted_probs * keep)
    return kept / kept.sum(dim=-1, keepdim=True)


def window_start(start: int, length: int, context_length: int, slide: int = 1) -> int:
    """Where the model's window begins once the sequence has `length` tokens.

    The window `[start, length)` stays put while it fits in `context_length`; when it no longer
    does, it moves forward to hold `context_length - slide + 1` tokens, leaving room for
    `slide - 1` more before it moves again.

    >>> window_start(0, 9, context_length=8, slide=1), window_start(0, 9, context_length=8, slide=4)
    (1, 4)
    >>> window_start(4, 10, context_length=8, slide=4)  # 6 tokens still fit
    4
    """
    if not 1 <= slide <= context_length:
        raise CS336Error(f"slide must be in [1, context_length={context_length}], got {slide}")
    if length - start <= context_length:
        return start
    return length - (context_length - slide + 1)


@dataclass(frozen=True)
class Step:
    """One decoding step: the token drawn, its probability under the sampling distribution, and
    the model's raw next-token logits (before temperature and truncation)."""

    token_id: int
    prob: float
    logits: Float[Tensor, " vocab"]


def _model_device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


@torch.no_grad()
def sample_ids(
    model: nn.Module,
    prompt_ids: Sequence[int],
    max_new_tokens: int = 256,
    *,
    temperature: float = 1.0,
    top_p: float = 1.0,
    top_k: int | None = None,
    seed: int | None = 0,
    eos_id: int | None = None,
    use_cache: bool = True,
    slide: int | None = None,
) -> Iterator[Step]:
    """Yield up to `max_new_tokens` sampled tokens (as `Step`s), one at a time.

    Stops early after yielding `eos_id` when it is given. `seed=None` draws from torch's global
    generator. `slide` is how far the context window moves when the sequence outgrows it
    (`window_start`); the default, a quarter of the context, keeps cached decoding O(context) per
    token on average. `use_cache=False` runs the model on the whole window at every step: the
    plain reference the cached path is tested against.
    """
    context_length = model.context_length
    slide = max(1, context_length // 4) if slide is None else slide
    if max_new_tokens < 0:
        raise CS336Error(f"max_new_tokens must be >= 0, got {max_new_tokens}")
    if len(prompt_ids) == 0:
        raise CS336Error("the prompt is empty: give at least one token")
    bad = next((i for i in prompt_ids if not 0 <= i < model.vocab_size), None)
    if bad is not None:
        raise CS336Error(f"prompt token ids must be in [0, {model.vocab_size}), got {bad}")
    device = _model_device(model)
    generator = None
    if seed is not None:
        generator = torch.Generator(device=device)
        generator.manual_seed(seed)

    was_training = model.training
    model.eval()
    try:
        ids = list(prompt_ids)
        start = window_start(0, len(ids), context_length, slide)
        cache: KVCache | None = None
        for _ in range(max_new_tokens):
            new_start = window_start(start, len(ids), context_length, slide)
            if not use_cache:
                window = torch.tensor(ids[new_start:], device=device)
                logits = model(window[None])[0, -1].clone()  # not a view that pins all positions
            else:
                if cache is None or new_start != start:  # first step, or the window moved
                    cache = KVCache(len(model.layers))
                    unread = ids[new_start:]
                else:
                    unread = ids[new_start + len(cache) :]
                logits = model(torch.tensor(unread, device=device)[None], kv_cache=cache)[0, -1].clone()
            start = new_start
            probs = next_token_distribution(logits, temperature, top_p, top_k)
            token = int(torch.multinomial(probs, 1, generator=generator)) if temperature > 0 else int(probs.argmax())
            yield Step(token, float(probs[token]), logits)
            ids.append(token)
            if eos_id is not None and token == eos_id:
                return
    finally:
        model.train(was_training)


def generate(
    model: nn.Module,
    tokenizer,
    prompt: str,
    max_new_tokens: int = 256,
    temperature: float = 1.0,
    top_p: float = 1.0,
    top_k: int | None = None,
    seed: int | None = 0,
    stop_at_eos: bool = True,
    *,
    use_cache: bool = True,
    slide: int | None = None,
) -> str:
    """The text the model writes after `prompt` (the prompt itself is not repeated).

    With `stop_at_eos`, decoding ends at the first `<|endoftext|>`, which is left out of the text;
    without it, `<|endoftext|>` appears in the text wherever the model wrote it.
    """
    eos_id = tokenizer_eos_id(tokenizer) if stop_at_eos else None
    prompt_ids = tokenizer.encode(prompt)
    new_ids = [
        s.token_id
        for s in sample_ids(
            model, prompt_ids, max_new_tokens,
            temperature=temperature, top_p=top_p, top_k=top_k, seed=seed, eos_id=eos_id,
            use_cache=use_cache, slide=slide,
        )
    ]
    if eos_id is not None and new_ids and new_ids[-1] == eos_id:
        new_ids = new_ids[:-1]
    return tokenizer.decode(new_ids)


def tokenizer_eos_id(tokenizer) -> int | None:
    """The id of `<|endoftext|>` when the tokenizer treats it as one special token, else None."""
    ids = tokenizer.encode(END_OF_TEXT)
    return ids[0] if len(ids) == 1 else None


def generate_from_run(
    run=None, *, checkpoint=None, tokenizer=None, config=None, prompt: str, device="cpu", **options
) -> str:
    """`generate` with the model and tokenizer of a run directory (or checkpoint + tokenizer)."""
    model, tok = load_run(run, checkpoint=checkpoint, tokenizer=tokenizer, config=config, device=device)
    return generate(model, tok, prompt, **options)
