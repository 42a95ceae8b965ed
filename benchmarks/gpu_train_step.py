"""GPU training-step throughput and model FLOPs utilisation (MFU): our TransformerLM (reference and
fused paths, cs336 AdamW, fused for the fused path) against the same model built from PyTorch built-ins (torch.optim.AdamW),
all under bfloat16 autocast and torch.compile.

FLOPs per token are `cs336.accounting.training_step_flops` (without the optimizer) per token, which
comes to the usual convention, counting a causal attention as if it were full:

    6·N  +  12·L·S·d_model

N = the weights of the matrix multiplies (all but the token embeddings, a lookup, and the RMSNorm
gains), L layers, S the context length. 6·N is a forward (2N) and a backward (4N) through every
weight; the second term is QKᵀ and attention·V (2·S·d_model each per token per layer, forward),
times 3 for training. MFU = tokens/s · FLOPs per token / peak, with H100 SXM's dense bf16 peak 989 TFLOP/s by default.

    python benchmarks/gpu_train_step.py                          # on a CUDA GPU, reference config
    python benchmarks/gpu_train_step.py --batch-size 64 --config reference small
    python benchmarks/gpu_train_step.py --dry-run                # tiny config on CPU: does it run?
"""

from __future__ import annotations

import argparse
import statistics
import time
from contextlib import nullcontext

import torch

from cs336.accounting import training_step_flops
from cs336.model import ModelConfig
from train_step import CONFIGS, build, check_same_function  # the CPU benchmark, beside this script

H100_BF16_DENSE_TFLOPS = 989.0


def flops_per_token(shape: ModelConfig) -> float:
    """Training FLOPs per token of a full-context sequence: 6·N + 12·L·S·d_model."""
    return training_step_flops(shape, include_optimizer=False) / shape.context_length


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main(argv: list[str] | None = None) -> dict[str, dict[str, float]]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", nargs="+", choices=sorted(CONFIGS), default=["reference"])
    p.add_argument("--batch-size", type=int, default=64, help="sequences per step (default 64)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--dtype", choices=["bfloat16", "float32"], default="bfloat16", help="autocast dtype (weights stay float32)")
    p.add_argument("--compile-backend", default="inductor", help="torch.compile backend, or 'none' for eager")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps per contender (compilation happens here)")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--steps", type=int, default=10, help="timed steps per contender per round")
    p.add_argument("--peak-tflops", type=float, default=H100_BF16_DENSE_TFLOPS)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    p.add_argument("--dry-run", action="store_true", help="tiny config on CPU, Dynamo with the eager backend, 1 step: checks the script runs")
    a = p.parse_args(argv)
    if a.dry_run:
        a.config, a.batch_size, a.device, a.compile_backend = ["tiny"], 2, "cpu", "eager"
        a.warmup, a.rounds, a.steps = 1, 1, 1
    if a.threads:
        torch.set_num_threads(a.threads)
    device = torch.device(a.device)
    dtype = getattr(torch, a.dtype)
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
    else:
        name = f"CPU, {torch.get_num_threads()} threads"
    print(f"torch {torch.__version__}, {name}, autocast {a.dtype}, compile={a.compile_backend}, peak {a.peak_tflops} TFLOP/s")

    results = {}
    for config in a.config:
        shape = CONFIGS[config]
        contenders = build(shape, device, names=("ours-ref", "ours-fused", "builtin"))  # compiled below
        g = torch.Generator().manual_seed(1)
        x = torch.randint(shape.vocab_size, (a.batch_size, shape.context_length), generator=g).to(device)
        y = torch.randint(shape.vocab_size, (a.batch_size, shape.context_length), generator=g).to(device)
        check_same_function(contenders, x[:2])  # in float32, before compiling
        fpt = flops_per_token(shape)
        amp = torch.autocast(device.type, dtype=dtype) if dtype != torch.float32 else nullcontext()

        steps = {}
        for name_, c in contenders.items():
            fwd = c.model if a.compile_backend == "none" else torch.compile(c.model, backend=a.compile_backend)

            def step(fwd=fwd, c=c):
                c.optimizer.zero_grad(set_to_none=True)
                with amp:
                    loss = c.loss(fwd, x, y)
                loss.backward()
                c.optimizer.step()
                return loss

            for _ in range(a.warmup):
                loss = step()
            assert torch.isfinite(loss).item(), f"{name_}: loss {loss.item()}"
            steps[name_] = step

        names = list(steps)
        times: dict[str, list[float]] = {n: [] for n in names}
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        for r in range(a.rounds):
            for n in names[r % len(names):] + names[: r % len(names)]:
                sync(device)
                start = time.perf_counter()
                for _ in range(a.steps):
                    steps[n]()
                sync(device)
                times[n].append((time.perf_counter() - start) / a.steps)

        tokens = a.batch_size * shape.context_length
        print(f"\n{config}: {shape}, batch {a.batch_size}, {tokens} tokens/step, {fpt / 1e6:.1f} MFLOP/token")
        print(f"{'model':<11} {'ms/step':>9} {'tokens/s':>10} {'TFLOP/s':>8} {'MFU':>7} {'ratio vs builtin':>17}")
        results[config] = {}
        for n in names:
            med = statistics.median(times[n])
            ratio = statistics.median(t / b for t, b in zip(times[n], times["builtin"]))
            tflops = tokens / med * fpt / 1e12
            mfu = tflops / a.peak_tflops
            results[config][n] = mfu
            print(f"{n:<11} {med * 1e3:>9.2f} {tokens / med:>10.0f} {tflops:>8.1f} {mfu:>7.1%} {ratio:>17.3f}")
        if device.type == "cuda":
            print(f"peak memory {torch.cuda.max_memory_allocated(device) / 2**30:.2f} GiB")
        del contenders, steps
    return results


if __name__ == "__main__":
    main()
