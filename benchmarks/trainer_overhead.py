"""What the training engine costs: steady-state tokens/s of `cs336.training.trainer.train` against
a bare loop over the same model, optimizer, batches and schedule.

The bare loop is the least a training step needs: sample a batch, forward, cross-entropy,
backward, clip, set the learning rate, AdamW step, with no per-step host sync. The trainer adds
micro-batch slicing, the non-finite check (one host sync per step), JSONL records, the progress
bar's bookkeeping, and whatever else it does per step. Its step times are read from its own log
(a record every step, `wall_s` between consecutive ones), so they include logging but not
start-up, evaluation or checkpoints (both turned off). Each side's tokens/s is tokens per step over
its median step time after a warm-up: the median ignores the bursts of a shared machine.

Rounds alternate bare and trainer (order rotated), and the reported ratio is the median over
rounds of trainer tokens/s ÷ bare tokens/s measured in the same round, so machine-load drift
hits both alike. Target: ratio ≥ 0.95 (logging every step is the worst case for the trainer).

    python benchmarks/trainer_overhead.py                        # the demo model on the CPU
    python benchmarks/trainer_overhead.py --config configs/tinystories.toml --steps 60   # on a GPU
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from cs336 import AdamW, cross_entropy, get_batch, get_lr_cosine_schedule, gradient_clipping  # noqa: E402
from cs336.training.config import TrainConfig, load_config  # noqa: E402
from cs336.training.runlog import read_log  # noqa: E402
from cs336.training.trainer import _autocast, build_model, resolve_device, train  # noqa: E402


def bare_loop(cfg: TrainConfig, data: np.ndarray, warmup: int, steps: int) -> list[float]:
    """Seconds of each step after the warm-up, for the plainest loop over the config's model and batches."""
    device = resolve_device(cfg.device)
    torch.manual_seed(cfg.seed)
    model = build_model(cfg.model, device)
    o = cfg.optim
    opt = AdamW(model.parameters(), lr=o.lr, betas=o.betas, eps=o.eps, weight_decay=o.weight_decay)
    rng = np.random.default_rng(cfg.seed)
    total = warmup + steps
    stamps = []
    for it in range(1, total + 1):
        if it > warmup:
            if device.type == "cuda":
                torch.cuda.synchronize()  # only to read the clock: one per step, like the trainer's
            stamps.append(time.perf_counter())
        for g in opt.param_groups:
            g["lr"] = get_lr_cosine_schedule(it, o.lr, o.min_lr, o.warmup_iters, total)
        x, y = get_batch(data, cfg.batch_size, cfg.model.context_length, device, generator=rng)
        with _autocast(device, cfg.dtype):
            loss = cross_entropy(model(x), y)
        loss.backward()
        gradient_clipping(model.parameters(), o.grad_clip or math.inf)
        opt.step()
        opt.zero_grad(set_to_none=True)
    if device.type == "cuda":
        torch.cuda.synchronize()
    stamps.append(time.perf_counter())
    return [b - a for a, b in zip(stamps, stamps[1:])]


def trainer_run(cfg: TrainConfig, work: Path, warmup: int, steps: int) -> list[float]:
    """Seconds of each step of `train()` after the warm-up, from the `wall_s` of consecutive records."""
    run_dir = work / f"run-{time.monotonic_ns()}"
    cfg = TrainConfig.from_dict({**cfg.to_dict(), "run_dir": str(run_dir), "max_steps": warmup + steps, "max_tokens": None, "max_minutes": None})
    train(cfg, progress=False)
    wall = {r["step"]: r["wall_s"] for r in read_log(run_dir / "log.jsonl") if "train_loss" in r}
    return [wall[s + 1] - wall[s] for s in range(warmup, warmup + steps)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", default=str(ROOT / "configs" / "demo.toml"))
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--steps", type=int, default=30, help="timed steps per measurement")
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=None, help="torch intra-op threads (CPU)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    work = Path(tempfile.mkdtemp(prefix="trainer-overhead-"))
    probe = load_config(args.config, ["max_steps=1", *args.overrides])
    tokens = np.random.default_rng(0).integers(0, probe.model.vocab_size, size=2_000_000, dtype=np.uint16)
    np.save(work / "tokens.npy", tokens)
    over = [f"data.train={work / 'tokens.npy'}", "data.valid=", "eval_interval=0", "eval_batches=0",
            "checkpoint_interval=0", "log_interval=1", "max_steps=1", *args.overrides]
    cfg = load_config(args.config, over)
    data = np.load(work / "tokens.npy", mmap_mode="r")
    device = resolve_device(cfg.device)
    print(f"device {device} ({torch.get_num_threads()} threads), model d_model={cfg.model.d_model} layers={cfg.model.num_layers} "
          f"vocab={cfg.model.vocab_size}, batch {cfg.batch_size}×{cfg.model.context_length}, dtype {cfg.dtype}, compile {cfg.compile}")

    ratios, bare_tps, trainer_tps = [], [], []
    for r in range(args.rounds):
        order = ["bare", "trainer"] if r % 2 == 0 else ["trainer", "bare"]
        got = {}
        for who in order:
            times = bare_loop(cfg, data, args.warmup, args.steps) if who == "bare" else trainer_run(cfg, work, args.warmup, args.steps)
            got[who] = cfg.tokens_per_step / statistics.median(times)  # the median step shrugs off load bursts
        ratios.append(got["trainer"] / got["bare"])
        bare_tps.append(got["bare"])
        trainer_tps.append(got["trainer"])
        print(f"round {r + 1}: bare {got['bare']:,.0f} tok/s, trainer {got['trainer']:,.0f} tok/s, ratio {ratios[-1]:.3f}")
    med = statistics.median(ratios)
    print(f"median: bare {statistics.median(bare_tps):,.0f} tok/s, trainer {statistics.median(trainer_tps):,.0f} tok/s; "
          f"trainer/bare = {med:.3f} (target ≥ 0.95: {'met' if med >= 0.95 else 'NOT met'})")


if __name__ == "__main__":
    main()
