"""Time of one optimizer step: cs336 AdamW, per-parameter loop and `foreach=True`, against
`torch.optim.AdamW` with `foreach=False` and `foreach=True`, on the parameters of the workbook's models.

    python benchmarks/adamw.py [--configs tinystories_cpu tinystories] [--steps 10] [--rounds 5] [--device cpu]

Gradients are fixed random tensors (the step's cost does not depend on their values). Rounds are
interleaved; each figure is the best round's mean step time, and ratios are against torch's
AdamW with the same `foreach` setting, measured in the same run. The two cs336 paths are checked
bit-identical on the first step.
"""

from __future__ import annotations

import argparse
import time

import torch

from cs336 import AdamW
from cs336.paths import CONFIGS_DIR
from cs336.training.config import load_config
from cs336.runs import build_model


def stepped_optimizers(template: list[torch.Tensor], makers: dict) -> dict[str, tuple[list[torch.nn.Parameter], torch.optim.Optimizer]]:
    """For each `makers[label](params)`: its own copy of the `template` tensors, each with the same
    fixed random gradient, and the optimizer, stepped once so that its state exists."""
    grads = [torch.randn_like(p) * 1e-3 for p in template]
    contenders = {}
    for label, make in makers.items():
        params = [torch.nn.Parameter(p.clone()) for p in template]
        for p, g in zip(params, grads):
            p.grad = g
        opt = make(params)
        opt.step()  # creates the state
        contenders[label] = (params, opt)
    return contenders


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", nargs="+", default=["tinystories_cpu", "tinystories"])
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads (default 1, as the CPU benchmarks)")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cpu":
        torch.set_num_threads(args.threads)
    hyper = dict(lr=1e-3, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1)
    makers = {
        "cs336 loop": lambda ps: AdamW(ps, **hyper),
        "cs336 foreach": lambda ps: AdamW(ps, **hyper, foreach=True),
        "torch loop": lambda ps: torch.optim.AdamW(ps, **hyper, foreach=False),
        "torch foreach": lambda ps: torch.optim.AdamW(ps, **hyper, foreach=True),
    }
    print(f"device {device}" + (f", {torch.get_num_threads()} thread(s)" if device.type == "cpu" else f" ({torch.cuda.get_device_name(device)})"))
    for name in args.configs:
        cfg = load_config(CONFIGS_DIR / f"{name}.toml")
        torch.manual_seed(0)
        template = [p.detach() for p in build_model(cfg.model, device).parameters()]
        contenders = stepped_optimizers(template, makers)
        a, b = contenders["cs336 loop"][0], contenders["cs336 foreach"][0]
        assert all(torch.equal(x, y) for x, y in zip(a, b)), "foreach differs from the loop"
        best = {label: float("inf") for label in contenders}
        for r in range(args.rounds):
            order = list(contenders)[r % len(contenders):] + list(contenders)[: r % len(contenders)]
            for label in order:
                opt = contenders[label][1]
                sync(device)
                t0 = time.perf_counter()
                for _ in range(args.steps):
                    opt.step()
                sync(device)
                best[label] = min(best[label], (time.perf_counter() - t0) / args.steps)
        n = sum(p.numel() for p in template)
        print(f"\n{name}: {len(template)} tensors, {n:,} parameters")
        for label, t in best.items():
            ref = best["torch " + label.split()[1]]
            print(f"  {label:14s} {t * 1e3:8.3f} ms   {t / ref:5.2f}x torch {label.split()[1]}")


if __name__ == "__main__":
    main()
