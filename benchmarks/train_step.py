"""Training-step throughput and MFU of our TransformerLM against the same model built from PyTorch
built-ins, with the machine's matrix-multiply peak measured in the same run.

One step = forward, cross-entropy, backward, optimizer step. Contenders, same shape, same weights:

- `ours-ref`:      TransformerLM (reference path) + cs336 cross_entropy + cs336 AdamW (per-parameter loop)
- `ours-fused`:    the trainer's fast step: TransformerLM(fused=True), its LM head applied inside the
                   loss (`linear_cross_entropy`, via `next_token_loss`), cs336 AdamW(fused=True)
- `ours-compiled`: `ours-fused` with the model under torch.compile (`compile = true` in a config)
- `builtin`:       `BuiltinLM` below (nn.Linear, nn.Embedding, nn.RMSNorm, F.scaled_dot_product_attention)
                   + F.cross_entropy + torch.optim.AdamW (its default)

MFU = achieved FLOP/s / the float32 `torch.mm` peak measured in this run: in every round, beside
the contenders, the better of square products of sizes 2048 and 3072. A contender's MFU is the
median over rounds of its MFU against the peak of the same round (the peak printed, and the
ceiling's, are the median over rounds), as the machine's speed drifts. A step's FLOPs are
`cs336.accounting.training_step_flops` without the optimizer: 3 × forward, attention counted as the
full square (114.4 GFLOP for the handout's model at batch 4).

Rounds are interleaved: each round times every contender for `--steps` steps, in a rotated order,
each after one untimed step of its own (as a training step follows one of the same run);
times are wall-clock medians over rounds, and a ratio is the median over rounds of (step time /
built-in step time in the same round), so drifting machine load hits both sides alike. The minor
page faults per timed step are printed beside them.

    python benchmarks/train_step.py                      # reference and small configs, torch's threads
    python benchmarks/train_step.py --config reference --threads 2 --rounds 9
    python benchmarks/train_step.py --contenders ours-ref ours-fused builtin   # without compiling
    python benchmarks/train_step.py --config reference --profile ours-fused ours-compiled   # where the time goes
"""

from __future__ import annotations

import argparse
import dataclasses
import resource
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cs336 import AdamW
from cs336.accounting import training_step_flops
from cs336.model import ModelConfig
from cs336.provenance import cpu_name, matmul_peak_flops
from cs336.runs import build_model
from cs336.training.loss import cross_entropy, next_token_loss

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


@dataclasses.dataclass
class Contender:
    model: nn.Module
    optimizer: torch.optim.Optimizer
    loss: Callable[[Callable, Tensor, Tensor], Tensor]  # (forward, x, y) -> mean loss
    forward: Callable  # the model, or its compiled wrapper


CONTENDERS = ("ours-ref", "ours-fused", "ours-compiled", "builtin")


def build(shape: ModelConfig, device: str | torch.device = "cpu", seed: int = 0,
          names: tuple[str, ...] = CONTENDERS) -> dict[str, Contender]:
    """The contenders `names` (model, optimizer, loss), all starting from the same weights."""
    torch.manual_seed(seed)
    ref = build_model(shape, device)
    opt_args = dict(lr=1e-3, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1)
    contenders = {}
    for name in names:
        if name == "builtin":
            model = BuiltinLM(shape).to(device)
            model.load_state_dict(ref.state_dict())
            contenders[name] = Contender(model, torch.optim.AdamW(model.parameters(), **opt_args), builtin_loss, model)
            continue
        model = ref if name == "ours-ref" else build_model(dataclasses.replace(shape, fused=True), device)
        model.load_state_dict(ref.state_dict())
        forward = torch.compile(model) if name == "ours-compiled" else model
        loss = cross_entropy_of(model) if name == "ours-ref" else loss_of(model)
        contenders[name] = Contender(model, AdamW(model.parameters(), **opt_args, fused=name != "ours-ref"), loss, forward)
    return contenders


def cross_entropy_of(model: nn.Module):
    return lambda forward, x, y: cross_entropy(forward(x), y)


def loss_of(model: nn.Module):
    """The trainer's loss for this model."""
    return lambda forward, x, y: next_token_loss(model, x, y, forward=forward)


def builtin_loss(forward, x: Tensor, y: Tensor) -> Tensor:
    return F.cross_entropy(forward(x).flatten(0, -2).float(), y.flatten())


def train_step(c: Contender, x: Tensor, y: Tensor) -> float:
    c.optimizer.zero_grad(set_to_none=True)
    loss = c.loss(c.forward, x, y)
    loss.backward()
    c.optimizer.step()
    return loss.item()


def minor_faults() -> int:
    """Minor page faults of this process so far (memory the kernel mapped in on first touch)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def check_same_function(contenders: dict[str, Contender], x: Tensor) -> None:
    """The comparison is only fair if all compute the same logits from the same weights."""
    with torch.no_grad():
        outs = {name: c.model(x) for name, c in contenders.items()}
    first = next(iter(outs.values()))
    for name, out in outs.items():
        err = (out - first).abs().max().item()
        assert err < 1e-3, f"{name} differs from {next(iter(outs))} by {err}"


def ceiling_s(shape: ModelConfig, batch_size: int, repeats: int = 5) -> tuple[float, float]:
    """Seconds a step's matrix products and its attention take when run alone (medians of
    `repeats`): every weight's forward x·Wᵀ and backward products g·W and gᵀ·x over batch·seq rows,
    and F.scaled_dot_product_attention's causal forward and backward in every layer. With nothing
    else in a step, its MFU could be no higher than FLOPs / (their sum) / peak."""
    n, d, f = batch_size * shape.context_length, shape.d_model, shape.d_ff
    weights = [(d, d)] * 4 * shape.num_layers + [(f, d), (f, d), (d, f)] * shape.num_layers + [(shape.vocab_size, d)]

    operands = {(o, i): (torch.randn(n, i), torch.randn(o, i), torch.randn(n, o)) for o, i in set(weights)}

    def products():
        for shape_ in weights:
            x, w, g = operands[shape_]
            x @ w.T, g @ w, g.T @ x

    q = torch.randn(batch_size, shape.num_heads, shape.context_length, d // shape.num_heads, requires_grad=True)
    k, v = torch.randn_like(q, requires_grad=True), torch.randn_like(q, requires_grad=True)
    grad = torch.randn_like(q)

    def attention():
        for _ in range(shape.num_layers):
            torch.autograd.grad(F.scaled_dot_product_attention(q, k, v, is_causal=True), (q, k, v), grad)

    def median_s(fn) -> float:
        fn()
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
        return statistics.median(times)

    return median_s(products), median_s(attention)


def flops_of_products(shape: ModelConfig, batch_size: int) -> int:
    """FLOPs of `ceiling_s`'s products: 3 × (2·rows·in·out) per weight."""
    n, d, f = batch_size * shape.context_length, shape.d_model, shape.d_ff
    per_layer = 4 * d * d + 3 * f * d
    return 3 * 2 * n * (shape.num_layers * per_layer + shape.vocab_size * d)


def bench(name: str, shape: ModelConfig, batch_size: int, rounds: int, steps: int | None,
          names: tuple[str, ...]) -> dict[str, dict[str, float]]:
    contenders = build(shape, names=names)
    g = torch.Generator().manual_seed(1)
    x = torch.randint(shape.vocab_size, (batch_size, shape.context_length), generator=g)
    y = torch.randint(shape.vocab_size, (batch_size, shape.context_length), generator=g)
    check_same_function(contenders, x)
    for c in contenders.values():  # warm-up: allocator, optimizer state, compilation
        train_step(c, x, y)
        train_step(c, x, y)
    if steps is None:  # enough steps for about a second per timed block
        start = time.perf_counter()
        train_step(next(iter(contenders.values())), x, y)
        steps = max(1, round(1.0 / (time.perf_counter() - start)))
    order = list(contenders)
    walls: dict[str, list[float]] = {n: [] for n in order}  # wall seconds per step
    faults: dict[str, list[float]] = {n: [] for n in order}  # minor page faults per step
    peaks = []
    for r in range(rounds):
        peaks.append(matmul_peak_flops())
        for n in order[r % len(order):] + order[: r % len(order)]:  # rotate who goes first
            # One untimed step first: in training a step follows a step of the same run, whose
            # freed blocks the allocator hands out again; the first step after another contender
            # (or the peak's products) maps much of its memory fresh from the OS, page by page.
            train_step(contenders[n], x, y)
            faults_before, start = minor_faults(), time.perf_counter()
            for _ in range(steps):
                train_step(contenders[n], x, y)
            walls[n].append((time.perf_counter() - start) / steps)
            faults[n].append((minor_faults() - faults_before) / steps)
    tokens = batch_size * shape.context_length
    flops = training_step_flops(shape, batch_size=batch_size, include_optimizer=False)
    peak = statistics.median(peaks)
    print(f"\n{name}: {shape}\nbatch {batch_size} ({tokens} tokens/step, {flops / 1e9:.1f} GFLOP/step), "
          f"{rounds} rounds x {steps} steps, wall-clock medians; "
          f"float32 torch.mm peak {peak / 1e9:.0f} GFLOP/s (rounds: {min(peaks) / 1e9:.0f}-{max(peaks) / 1e9:.0f})")
    gemm_s, attention_s = ceiling_s(shape, batch_size)
    print(f"alone: the step's matrix products {gemm_s * 1e3:.1f} ms ({flops_of_products(shape, batch_size) / gemm_s / 1e9:.0f} GFLOP/s), "
          f"attention {attention_s * 1e3:.1f} ms: MFU ceiling {flops / (gemm_s + attention_s) / peak:.1%}")
    print(f"{'model':<14} {'ms/step':>8} {'tokens/s':>9} {'GFLOP/s':>8} {'MFU':>6} {'vs builtin':>10} {'faults/step':>11}")
    results = {"ceiling": {"ms": (gemm_s + attention_s) * 1e3, "mfu": flops / (gemm_s + attention_s) / peak,
                           "products_ms": gemm_s * 1e3, "attention_ms": attention_s * 1e3}}
    for n in order:
        wall = statistics.median(walls[n])
        mfu = statistics.median(flops / t / p for t, p in zip(walls[n], peaks))  # each against its round's peak
        ratio = statistics.median(t / b for t, b in zip(walls[n], walls["builtin"])) if "builtin" in walls else float("nan")
        page_faults = statistics.median(faults[n])
        results[n] = {"ms": wall * 1e3, "tokens_per_s": tokens / wall, "mfu": mfu, "vs_builtin": ratio,
                      "peak_gflops": peak / 1e9, "faults_per_step": page_faults}
        print(f"{n:<14} {wall * 1e3:>8.1f} {tokens / wall:>9.0f} {flops / wall / 1e9:>8.1f} {mfu:>6.1%} {ratio:>10.3f}"
              f" {page_faults:>11.0f}")
    return results


KINDS = {  # profiler op name (prefix) -> what it is, for `profile`
    "aten::mm": "matrix products", "aten::addmm": "matrix products", "aten::bmm": "matrix products",
    "aten::_scaled_dot_product_flash_attention": "attention (fused kernel)",
    "aten::_fused_adamw_": "optimizer", "aten::addcdiv_": "optimizer", "aten::addcmul_": "optimizer",
    "aten::sqrt": "optimizer", "aten::lerp_": "optimizer",
    "aten::_log_softmax": "softmax / cross-entropy", "aten::exp": "softmax / cross-entropy",
}


def profile(shape: ModelConfig, batch_size: int, name: str, steps: int = 5) -> dict[str, float]:
    """Time per step by kind of operation (torch.profiler's self time on the calling thread, which
    for an operation run on several intra-op threads is its elapsed time), over `steps` steps of
    one contender after two warm-up steps. Kernels that torch.compile generated count as one kind."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    c = build(shape, names=(name,))[name]
    g = torch.Generator().manual_seed(1)
    x = torch.randint(shape.vocab_size, (batch_size, shape.context_length), generator=g)
    y = torch.randint(shape.vocab_size, (batch_size, shape.context_length), generator=g)
    for _ in range(2):
        train_step(c, x, y)
    with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            train_step(c, x, y)
    kinds: dict[str, float] = {}
    for event in prof.key_averages():
        if "CompiledFxGraph" in event.key:
            kind = "compiled (fused) kernels"
        elif event.key.startswith("aten::"):
            kind = next((k for prefix, k in KINDS.items() if event.key.startswith(prefix)), "other operations")
        else:
            continue  # autograd and Python frames: their self time is bookkeeping
        kinds[kind] = kinds.get(kind, 0.0) + event.self_cpu_time_total / 1e3 / steps
    total = sum(kinds.values())
    print(f"\n{name}, ms per step by kind of operation ({steps} steps, {torch.get_num_threads()} threads):")
    for kind, ms in sorted(kinds.items(), key=lambda kv: -kv[1]):
        print(f"  {kind:<26} {ms:>8.1f}  {ms / total:>6.1%}")
    others = sorted((e for e in prof.key_averages() if e.key.startswith("aten::")
                     and not any(e.key.startswith(prefix) for prefix in KINDS)), key=lambda e: -e.self_cpu_time_total)
    print("  largest other operations (ms): " + ", ".join(f"{e.key[6:]} {e.self_cpu_time_total / 1e3 / steps:.1f}" for e in others[:8]))
    return kinds


def main(argv: list[str] | None = None) -> dict[str, dict[str, dict[str, float]]]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", nargs="+", choices=sorted(CONFIGS), default=["reference", "small"])
    p.add_argument("--batch-size", type=int, help="override each config's batch size")
    p.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch intra-op threads (default: torch's, %(default)s here)")
    p.add_argument("--contenders", nargs="+", choices=CONTENDERS, default=list(CONTENDERS))
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--steps", type=int, help="steps timed per contender per round (default: about one second)")
    p.add_argument("--profile", nargs="*", choices=CONTENDERS, metavar="CONTENDER",
                   help="instead of timing, profile these contenders' steps by kind of operation")
    a = p.parse_args(argv)
    threads_before = torch.get_num_threads()
    torch.set_num_threads(a.threads)
    results = {}
    try:
        print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, float32, {cpu_name()}")
        for name in a.config:
            if a.profile:
                results[name] = {c: profile(CONFIGS[name], a.batch_size or BATCH_SIZES[name], c) for c in a.profile}
                continue
            results[name] = bench(name, CONFIGS[name], a.batch_size or BATCH_SIZES[name], a.rounds, a.steps, tuple(a.contenders))
    finally:
        torch.set_num_threads(threads_before)  # main() is also called from the tests
    return results


if __name__ == "__main__":
    main()
