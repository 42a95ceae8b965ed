"""Decoding throughput (new tokens per second) with and without the KV cache.

The model has the handout's TinyStories shape (random weights: speed does not depend on them).
Greedy decoding of `--new-tokens` tokens after a short prompt, so with the defaults the sequence
outgrows the context window and the window slides (the cache is rebuilt then). Contenders:

- `no-cache`:       every step runs the model over the whole window (the reference, ratio 1.00)
- `cache`:          KV cache, reference ops
- `cache-fused`:    KV cache, PyTorch's fused kernels (`fused=True`)
- `hf-llama-cache`: the same weights exported to `transformers`' Llama, `generate()` with its cache
                    (an outside reference; it decodes only up to the context length, as it cannot
                    slide the window; skipped when transformers is not installed)

Each round times every contender once, in a rotated order; the reported ratio is the median over
rounds of (tokens/s ÷ no-cache tokens/s in the same round), so drifting machine load hits both
sides of a ratio alike. All contenders must produce the same greedy tokens (checked).

    python benchmarks/generate.py                          # TinyStories shape, 256 new tokens
    python benchmarks/generate.py --threads 1 --rounds 5 --device cuda
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import tempfile
import time

import torch

from cs336 import TransformerLM
from cs336.generation import sample_ids
from cs336.model import ModelConfig
from cs336.runs import build_model

SHAPE = ModelConfig()  # the handout's TinyStories model


def ours(model: TransformerLM, prompt: list[int], n: int, use_cache: bool):
    def run() -> list[int]:
        return [s.token_id for s in sample_ids(model, prompt, n, temperature=0, use_cache=use_cache)]

    return run


def hf_llama(model: TransformerLM, prompt: list[int], n: int, device: str):
    try:
        import transformers
    except ImportError:
        return None
    from cs336.export import save_hf

    with tempfile.TemporaryDirectory() as d:
        save_hf(model, d)
        llama = transformers.LlamaForCausalLM.from_pretrained(d).to(device).eval()
    ids = torch.tensor([prompt], device=device)

    @torch.no_grad()
    def run() -> list[int]:
        out = llama.generate(ids, max_new_tokens=n, do_sample=False, eos_token_id=None, pad_token_id=0, use_cache=True)
        return out[0, len(prompt):].tolist()

    return run


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--new-tokens", type=int, default=256)
    ap.add_argument("--prompt-tokens", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    torch.manual_seed(0)
    ref = build_model(SHAPE, args.device).eval()
    fused = build_model(dataclasses.replace(SHAPE, fused=True), args.device).eval()
    fused.load_state_dict(ref.state_dict())
    prompt = torch.randint(0, SHAPE.vocab_size, (args.prompt_tokens,), generator=torch.Generator().manual_seed(0)).tolist()
    contenders = {
        "no-cache": ours(ref, prompt, args.new_tokens, use_cache=False),
        "cache": ours(ref, prompt, args.new_tokens, use_cache=True),
        "cache-fused": ours(fused, prompt, args.new_tokens, use_cache=True),
    }
    counts = {name: args.new_tokens for name in contenders}
    # transformers does not slide a window: it decodes only as far as the context reaches.
    hf_tokens = min(args.new_tokens, SHAPE.context_length - args.prompt_tokens)
    hf = hf_llama(ref, prompt, hf_tokens, args.device)
    if hf is not None:
        contenders["hf-llama-cache"], counts["hf-llama-cache"] = hf, hf_tokens

    outputs = {name: run() for name, run in contenders.items()}  # warm-up, and the equality check
    reference = outputs["no-cache"]
    for name, out in outputs.items():
        assert out == reference[: counts[name]], f"{name} decoded different tokens than no-cache"

    names = list(contenders)
    rates: dict[str, list[float]] = {n: [] for n in names}
    ratios: dict[str, list[float]] = {n: [] for n in names}
    for r in range(args.rounds):
        order = names[r % len(names):] + names[: r % len(names)]
        this_round = {}
        for name in order:
            sync(args.device)
            t0 = time.perf_counter()
            contenders[name]()
            sync(args.device)
            this_round[name] = counts[name] / (time.perf_counter() - t0)
        for name in names:
            rates[name].append(this_round[name])
            ratios[name].append(this_round[name] / this_round["no-cache"])

    print(f"device={args.device} threads={torch.get_num_threads()} shape={SHAPE}")
    print(f"prompt {args.prompt_tokens} tokens, {args.new_tokens} new tokens (greedy), {args.rounds} rounds; medians")
    print(f"{'contender':<16} {'tokens/s':>10} {'× no-cache':>11}")
    for name in names:
        print(f"{name:<16} {statistics.median(rates[name]):>10.1f} {statistics.median(ratios[name]):>11.2f}")


if __name__ == "__main__":
    main()
