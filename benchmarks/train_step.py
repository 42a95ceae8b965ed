"""Training-step throughput of our TransformerLM against the same model built from PyTorch built-ins.

One step = forward, cross-entropy, backward, optimizer step. Three contenders, same shape and the
same weights:

- `ours-ref`:   TransformerLM (reference path) + cs336 cross_entropy + cs336 AdamW
- `ours-fused`: TransformerLM(fused=True)      + cs336 cross_entropy(fused=True) + cs336 AdamW
- `builtin`:    `BuiltinLM` below (nn.Linear, nn.Embedding, nn.RMSNorm/F.rms_norm,
                F.scaled_dot_product_attention) + F.cross_entropy + torch.optim.AdamW

Measurements are interleaved: each round times every contender for `--steps` steps, in a rotated
order, and the reported ratio is the median over rounds of (step time / builtin step time in the
same round), so drifting machine load hits both sides of a ratio alike. Ratios use the process's CPU
time, which on a shared machine counts the work done rather than the time spent waiting for a core;
with the default single thread it is the step's own compute. Wall-clock tokens/s are printed too.

    python benchmarks/train_step.py                      # reference and small configs
    python benchmarks/train_step.py --config small --threads 2 --rounds 15
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import time
from collections.abc import Callable
from functools import partial

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cs336 import AdamW, cross_entropy
from cs336.model import ModelConfig
from cs336.runs import build_model

CONFIGS = {
    # The handout's TinyStories model (ModelConfig's defaults).
    "reference": ModelConfig(),
    # Small enough that per-op overhead (Python, dispatch, tiny kernels) rather than matmuls dominates.
    "small": ModelConfig(vocab_size=1_000, context_length=64, d_model=128, num_layers=2, num_heads=4, d_ff=344),
    # For checking that the scripts run at all.
    "tiny": ModelConfig(vocab_size=100, context_length=16, d_model=32, num_layers=1, num_heads=2, d_ff=64),
}
BATCH_SIZES = {"reference": 4, "small": 8, "tiny": 2}  # sequences per step


# ---------------------------------------------------------------------------------------------
# The same architecture from PyTorch built-ins. Module names match ours, so it loads our state dict.


def rope_builtin(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotate adjacent pairs (x[2k], x[2k+1]); cos/sin are (seq, d_k/2). PyTorch has no RoPE op."""
    x_even, x_odd = x.unflatten(-1, (-1, 2)).unbind(-1)
    return torch.stack((x_even * cos - x_odd * sin, x_even * sin + x_odd * cos), dim=-1).flatten(-2)


class BuiltinAttention(nn.Module):
    def __init__(self, d_model: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.q_proj, self.k_proj, self.v_proj, self.output_proj = (nn.Linear(d_model, d_model, bias=False) for _ in range(4))

    def forward(self, x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
        b, s, d = x.shape
        q, k, v = (p(x).view(b, s, self.num_heads, d // self.num_heads).transpose(1, 2) for p in (self.q_proj, self.k_proj, self.v_proj))
        q, k = rope_builtin(q, cos, sin), rope_builtin(k, cos, sin)
        out = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.output_proj(out.transpose(1, 2).reshape(b, s, d))


class BuiltinFFN(nn.Module):
    def __init__(self, d_model: int, d_ff: int):
        super().__init__()
        self.w1, self.w3 = nn.Linear(d_model, d_ff, bias=False), nn.Linear(d_model, d_ff, bias=False)
        self.w2 = nn.Linear(d_ff, d_model, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.w2(F.silu(self.w1(x)) * self.w3(x))


class BuiltinBlock(nn.Module):
    def __init__(self, d_model: int, num_heads: int, d_ff: int):
        super().__init__()
        self.ln1, self.ln2 = nn.RMSNorm(d_model, eps=1e-5), nn.RMSNorm(d_model, eps=1e-5)
        self.attn, self.ffn = BuiltinAttention(d_model, num_heads), BuiltinFFN(d_model, d_ff)

    def forward(self, x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
        x = x + self.attn(self.ln1(x), cos, sin)
        return x + self.ffn(self.ln2(x))


class BuiltinLM(nn.Module):
    """The reference architecture only (pre-norm, RoPE, SwiGLU, untied head)."""

    def __init__(self, shape: ModelConfig):
        super().__init__()
        d_k = shape.d_model // shape.num_heads
        self.token_embeddings = nn.Embedding(shape.vocab_size, shape.d_model)
        self.layers = nn.ModuleList(BuiltinBlock(shape.d_model, shape.num_heads, shape.d_ff) for _ in range(shape.num_layers))
        self.ln_final = nn.RMSNorm(shape.d_model, eps=1e-5)
        self.lm_head = nn.Linear(shape.d_model, shape.vocab_size, bias=False)
        inv_freq = shape.rope_theta ** -(torch.arange(0, d_k, 2, dtype=torch.float64) / d_k)
        angles = torch.arange(shape.context_length, dtype=torch.float64)[:, None] * inv_freq
        self.register_buffer("cos", angles.cos().float(), persistent=False)
        self.register_buffer("sin", angles.sin().float(), persistent=False)

    def forward(self, token_ids: Tensor) -> Tensor:
        s = token_ids.shape[-1]
        cos, sin = self.cos[:s], self.sin[:s]
        x = self.token_embeddings(token_ids)
        for layer in self.layers:
            x = layer(x, cos, sin)
        return self.lm_head(self.ln_final(x))


# ---------------------------------------------------------------------------------------------


def build(shape: ModelConfig, device: str | torch.device = "cpu", seed: int = 0) -> dict[str, tuple[nn.Module, torch.optim.Optimizer, Callable]]:
    """The three contenders (model, optimizer, loss), all starting from the same weights."""
    torch.manual_seed(seed)
    ref = build_model(shape, device)
    fused = build_model(dataclasses.replace(shape, fused=True), device)
    fused.load_state_dict(ref.state_dict())
    builtin = BuiltinLM(shape).to(device)
    builtin.load_state_dict(ref.state_dict())
    opt_args = dict(lr=1e-3, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1)
    return {
        "ours-ref": (ref, AdamW(ref.parameters(), **opt_args), cross_entropy),
        # On CUDA, as torch.optim.AdamW does by default there, the multi-tensor update (bit-identical)
        "ours-fused": (fused, AdamW(fused.parameters(), **opt_args, foreach=torch.device(device).type == "cuda"),
                       partial(cross_entropy, fused=True)),
        "builtin": (builtin, torch.optim.AdamW(builtin.parameters(), **opt_args), builtin_cross_entropy),
    }


def builtin_cross_entropy(logits: Tensor, targets: Tensor) -> Tensor:
    return F.cross_entropy(logits.flatten(0, -2).float(), targets.flatten())


def train_step(model: nn.Module, opt: torch.optim.Optimizer, loss_fn, x: Tensor, y: Tensor) -> float:
    opt.zero_grad(set_to_none=True)
    loss = loss_fn(model(x), y)
    loss.backward()
    opt.step()
    return loss.item()


def check_same_function(contenders, x: Tensor) -> None:
    """The comparison is only fair if all three compute the same logits from the same weights."""
    with torch.no_grad():
        outs = {name: m(x) for name, (m, _, _) in contenders.items()}
    for name, out in outs.items():
        err = (out - outs["builtin"]).abs().max().item()
        assert err < 1e-3, f"{name} differs from builtin by {err}"


def bench(name: str, shape: ModelConfig, batch_size: int, rounds: int, steps: int | None) -> dict[str, float]:
    contenders = build(shape)
    g = torch.Generator().manual_seed(1)
    x = torch.randint(shape.vocab_size, (batch_size, shape.context_length), generator=g)
    y = torch.randint(shape.vocab_size, (batch_size, shape.context_length), generator=g)
    check_same_function(contenders, x)
    for m, opt, loss_fn in contenders.values():  # warm-up: allocator, optimizer state
        train_step(m, opt, loss_fn, x, y)
    if steps is None:  # enough steps for about half a CPU second per timed block
        start = time.process_time()
        train_step(*contenders["builtin"], x, y)
        steps = max(1, round(0.5 / (time.process_time() - start)))
    names = list(contenders)
    times: dict[str, list[float]] = {n: [] for n in names}  # CPU seconds per step
    walls: dict[str, list[float]] = {n: [] for n in names}  # wall seconds per step
    for r in range(rounds):
        for n in names[r % len(names):] + names[: r % len(names)]:  # rotate who goes first
            m, opt, loss_fn = contenders[n]
            wall, cpu = time.perf_counter(), time.process_time()
            for _ in range(steps):
                train_step(m, opt, loss_fn, x, y)
            walls[n].append((time.perf_counter() - wall) / steps)
            times[n].append((time.process_time() - cpu) / steps)
    tokens = batch_size * shape.context_length
    print(f"\n{name}: {shape}, batch {batch_size}  ({tokens} tokens/step, {rounds} rounds x {steps} steps)")
    print(f"{'model':<11} {'CPU s/step':>10} {'wall s/step':>11} {'tokens/s':>9} {'CPU ratio':>9} {'wall ratio':>10}")
    ratios = {}
    for n in names:
        cpu, wall = statistics.median(times[n]), statistics.median(walls[n])
        ratios[n] = statistics.median(t / b for t, b in zip(times[n], times["builtin"]))
        wall_ratio = statistics.median(t / b for t, b in zip(walls[n], walls["builtin"]))
        print(f"{n:<11} {cpu:>10.3f} {wall:>11.3f} {tokens / wall:>9.0f} {ratios[n]:>9.3f} {wall_ratio:>10.3f}")
    return ratios


def main(argv: list[str] | None = None) -> dict[str, dict[str, float]]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", nargs="+", choices=sorted(CONFIGS), default=["reference", "small"])
    p.add_argument("--batch-size", type=int, help="override each config's batch size")
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1: CPU time is then the main thread's)")
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--steps", type=int, help="steps timed per contender per round (default: about 0.5 CPU s)")
    a = p.parse_args(argv)
    threads_before = torch.get_num_threads()
    torch.set_num_threads(a.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, float32, CPU")
    results = {}
    try:
        for name in a.config:
            results[name] = bench(name, CONFIGS[name], a.batch_size or BATCH_SIZES[name], a.rounds, a.steps)
    finally:
        torch.set_num_threads(threads_before)  # main() is also called from the tests
    return results


if __name__ == "__main__":
    main()
