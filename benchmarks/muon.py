"""Time of one Muon step on the hidden matrices of the workbook's models: cs336 Muon with the
Newton–Schulz iteration in bfloat16 and in float32, against `torch.optim.Muon` (always bfloat16).

    python benchmarks/muon.py [--configs leaderboard_cpu tinystories] [--threads 1 2] [--steps 3] [--rounds 7]

The hidden matrices are what `MuonAdamW` gives Muon: attention q/k/v/output and FFN w1/w2/w3 of
every block (AdamW's share, embeddings, head and gains, is not timed). Gradients are fixed random
tensors (the step's cost does not depend on their values). Rounds are interleaved in a rotating
order; each figure is the median over rounds of a round's mean step time, in wall-clock and in
process CPU time (all threads), and the ratios, against torch's Muon in the same run, are of CPU
time, which other jobs on a shared machine inflate less. cs336's bfloat16 step is checked equal to
torch's to the bit on the first step. The load average is printed at the start and the end.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch

from adamw import stepped_optimizers  # the AdamW benchmark, beside this script
from cs336 import Muon
from cs336.paths import CONFIGS_DIR as CONFIGS
from cs336.runs import build_model, split_hidden_matrices
from cs336.training.config import load_config

HYPER = dict(lr=0.02, weight_decay=0.0, momentum=0.95)
MAKERS = {
    "cs336 bf16": lambda ps: Muon(ps, **HYPER),
    "cs336 fp32": lambda ps: Muon(ps, **HYPER, ns_dtype=torch.float32),
    "torch": lambda ps: torch.optim.Muon(ps, **HYPER),
}


def time_config(name: str, steps: int, rounds: int) -> dict[str, tuple[float, float]]:
    """Median (wall, CPU) seconds per step of each contender on the hidden matrices of config `name`."""
    cfg = load_config(CONFIGS / f"{name}.toml")
    torch.manual_seed(0)
    hidden, _ = split_hidden_matrices(build_model(cfg.model, torch.device("cpu")))
    template = [p.detach() for p in hidden]
    contenders = stepped_optimizers(template, MAKERS)
    ours, theirs = contenders["cs336 bf16"][0], contenders["torch"][0]
    assert all(torch.equal(a, b) for a, b in zip(ours, theirs)), "cs336 bf16 differs from torch.optim.Muon"
    times: dict[str, list[tuple[float, float]]] = {label: [] for label in contenders}
    for r in range(rounds):
        order = list(contenders)[r % len(contenders):] + list(contenders)[: r % len(contenders)]
        for label in order:
            opt = contenders[label][1]
            t0, c0 = time.perf_counter(), time.process_time()
            for _ in range(steps):
                opt.step()
            times[label].append(((time.perf_counter() - t0) / steps, (time.process_time() - c0) / steps))
    shapes = sorted({tuple(p.shape) for p in template})
    n = sum(p.numel() for p in template)
    print(f"\n{name}: {len(template)} matrices {shapes}, {n:,} parameters, {torch.get_num_threads()} thread(s)")
    return {label: (statistics.median(w for w, _ in ts), statistics.median(c for _, c in ts)) for label, ts in times.items()}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", nargs="+", default=["leaderboard_cpu", "tinystories"])
    parser.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--steps", type=int, default=3, help="steps per round")
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args(argv)
    print(f"torch {torch.__version__}, {os.cpu_count()} CPUs, load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    for threads in args.threads:
        torch.set_num_threads(threads)
        for name in args.configs:
            median = time_config(name, args.steps, args.rounds)
            cpu = {label: c for label, (_, c) in median.items()}
            for label, (wall, c) in median.items():
                extra = f"   {c / cpu['cs336 bf16']:5.2f}x cs336 bf16" if label == "cs336 fp32" else ""
                print(f"  {label:11s} wall {wall * 1e3:9.2f} ms   CPU {c * 1e3:9.2f} ms   {c / cpu['torch']:5.2f}x torch{extra}")
    print(f"\nload average at the end {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
