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
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from cs336 import AdamW, cross_entropy, get_batch, get_lr_cosine_schedule, gradient_clipping
from cs336.paths import CONFIGS_DIR
from cs336.runs import build_model, resolve_device
from cs336.training.config import TrainConfig, load_config
from cs336.training.data import load_tokens
from cs336.training.runlog import read_log
from cs336.training.trainer import _autocast, train


def bare_loop(cfg: TrainConfig, data: np.ndarray, warmup: int, steps: int) -> tuple[list[float], float]:
    """Wall seconds of each step after the warm-up, and CPU seconds per step, for the plainest
    loop over the config's model and batches."""
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
            if it == warmup + 1:
                cpu0 = time.process_time()
        for g in opt.param_groups:
            g["lr"] = get_lr_cosine_schedule(it, o.lr, o.min_lr, o.warmup_iters, total)
        x, y = get_batch(data, cfg.batch_size, cfg.model.context_length, device, generator=rng)
        with _autocast(device, cfg.dtype):
            loss = cross_entropy(model(x), y, fused=cfg.model.fused)
        loss.backward()
        gradient_clipping(model.parameters(), o.grad_clip or math.inf)
        opt.step()
        opt.zero_grad(set_to_none=True)
    if device.type == "cuda":
        torch.cuda.synchronize()
    stamps.append(time.perf_counter())
    cpu = (time.process_time() - cpu0) / steps
    return [b - a for a, b in zip(stamps, stamps[1:])], cpu


def trainer_run(cfg: TrainConfig, work: Path, warmup: int, steps: int) -> tuple[list[float], float]:
    """Wall seconds of each step of `train()` after the warm-up (from the `wall_s` of consecutive
    records), and CPU seconds per step: the CPU time of a run of warmup + steps steps minus that
    of a run of warmup steps, so start-up costs cancel."""
    cpu = {}
    for n in (warmup, warmup + steps):
        run_dir = work / f"run-{time.monotonic_ns()}"
        c = TrainConfig.from_dict({**cfg.to_dict(), "run_dir": str(run_dir), "max_steps": n, "max_tokens": None, "max_minutes": None})
        t0 = time.process_time()
        train(c, progress=False)
        cpu[n] = time.process_time() - t0
    recs = {r["step"]: r for r in read_log(run_dir / "log.jsonl") if "train_loss" in r}
    wall = [recs[s + 1]["wall_s"] - recs[s]["wall_s"] for s in range(warmup, warmup + steps)]
    # tokens_per_s times the optimizer step alone, so the rest of each wall interval is the loop's
    # own bookkeeping (logging, checks), measured in the same moment as the step: load cancels.
    in_step = sum(cfg.tokens_per_step / recs[s]["tokens_per_s"] for s in range(warmup + 1, warmup + steps + 1))
    BOOKKEEPING.append(1 - in_step / sum(wall))
    return wall, (cpu[warmup + steps] - cpu[warmup]) / steps


BOOKKEEPING: list[float] = []  # per trainer run: the fraction of wall time outside the step itself


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", default=str(CONFIGS_DIR / "demo.toml"))
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
    data = load_tokens(work / "tokens.npy")
    device = resolve_device(cfg.device)
    print(f"device {device} ({torch.get_num_threads()} threads), model d_model={cfg.model.d_model} layers={cfg.model.num_layers} "
          f"vocab={cfg.model.vocab_size}, batch {cfg.batch_size}×{cfg.model.context_length}, dtype {cfg.dtype}, compile {cfg.compile}")

    tok = cfg.tokens_per_step
    rows = []  # per round: bare wall tok/s, trainer wall tok/s, bare CPU tok/s, trainer CPU tok/s
    for r in range(args.rounds):
        order = ["bare", "trainer"] if r % 2 == 0 else ["trainer", "bare"]
        got = {}
        for who in order:
            if who == "bare":
                times, cpu = bare_loop(cfg, data, args.warmup, args.steps)
            else:
                times, cpu = trainer_run(cfg, work, args.warmup, args.steps)
            got[who] = (tok / statistics.median(times), tok / cpu)  # the median step shrugs off load bursts
        rows.append((got["bare"][0], got["trainer"][0], got["bare"][1], got["trainer"][1]))
        print(f"round {r + 1}: wall tok/s bare {rows[-1][0]:,.0f} trainer {rows[-1][1]:,.0f} (ratio {rows[-1][1] / rows[-1][0]:.3f}); "
              f"CPU-time tok/s bare {rows[-1][2]:,.0f} trainer {rows[-1][3]:,.0f} (ratio {rows[-1][3] / rows[-1][2]:.3f})")
    wall = statistics.median(t / b for b, t, _, _ in rows)
    cpu = statistics.median(t / b for _, _, b, t in rows)
    verdict = lambda x: "met" if x >= 0.95 else "NOT met"
    print(f"median trainer/bare: wall {wall:.3f} ({verdict(wall)}), CPU time {cpu:.3f} ({verdict(cpu)}); target ≥ 0.95")
    print(f"trainer time outside its optimizer steps (logging, checks, loop): {100 * statistics.median(BOOKKEEPING):.2f}% (median of runs)")
    print("(on a CPU shared with other work the CPU-time ratio is the steadier one; on a GPU read the wall ratio)")


if __name__ == "__main__":
    main()
