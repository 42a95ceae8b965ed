"""An ensemble run: `ensemble = K` independent members trained side by side, one process each,
whose prediction is the mean of their next-token distributions.

Member k of a run with seed s trains with seed s·K + k (its own initialisation and batches) on
`threads // K` threads (at least one) in `run_dir/member_k`, a run directory of its own that
resumes like any other. When every member has finished, the ensemble is evaluated on the run's
validation windows: its loss per token is −log((1/K) Σₖ pₖ(target)), never more than the mean of
the members' losses (the log is concave) and lower by how much their errors differ. The run's
`log.jsonl` holds that evaluation and each member's loss; `summary.json` the ensemble's loss, the
members' steps (mean), their tokens and parameters (summed) and each member's own summary.

On a CPU whose cores one training process uses poorly (on small matrices two threads run one
model far less than twice as fast as one), K members on one core each process more tokens in all;
on data a model overfits, their average generalises better than any of them (notebook 10 measures
both).
"""

from __future__ import annotations

import dataclasses
import json
import math
import multiprocessing
import os
import signal
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cs336.errors import CS336Error
from cs336.outputs import write_atomic
from cs336.provenance import code_version
from cs336.runs import LOG, load_run_model, write_config, write_summary
from cs336.training.config import TrainConfig
from cs336.training.loss import token_cross_entropy


def member_dir(run_dir: str | os.PathLike, k: int) -> Path:
    return Path(run_dir) / f"member_{k}"


def member_config(cfg: TrainConfig, k: int) -> TrainConfig:
    """Member k's own run: seed s·K + k, its share of the threads, on the CPU, in its own run directory."""
    K = cfg.ensemble
    threads = max(1, (cfg.threads or os.cpu_count() or 1) // K)
    return dataclasses.replace(cfg, ensemble=1, seed=cfg.seed * K + k, threads=threads, device="cpu",
                               name=f"{cfg.name}.member_{k}", run_dir=str(member_dir(cfg.resolved_run_dir(), k)))


def _train_member(cfg: TrainConfig, stop_after: int | None) -> dict[str, Any]:
    from cs336.training.trainer import train  # here: the trainer dispatches to this module

    return train(cfg, progress=False, stop_after=stop_after)


@torch.no_grad()
def ensemble_loss(models: list, batches) -> tuple[float, list[float]]:
    """The mixture's mean loss per token, −log((1/K) Σₖ pₖ(target)), over `batches` of (inputs,
    targets), and each model's own mean loss."""
    total, each, tokens = 0.0, np.zeros(len(models)), 0
    for x, y in batches:
        log_p = torch.stack([-token_cross_entropy(m(x).double(), y) for m in models])  # log p(target), float64
        each -= log_p.sum(dim=(1, 2)).numpy()
        total -= float((torch.logsumexp(log_p, dim=0) - math.log(len(models))).sum())
        tokens += y.numel()
    return total / tokens, list(each / tokens)


def train_ensemble(cfg: TrainConfig, *, progress: bool = True, stop_after: int | None = None) -> dict[str, Any]:
    """Train (or resume) the members of an ensemble run side by side, then evaluate the ensemble;
    return its summary (also in summary.json). Its status is "finished" when every member
    finished, else the first other status a member ended with, its message naming the member."""
    from cs336.training.trainer import open_tokens, validation_batches  # here: the trainer imports this module

    if cfg.device not in ("cpu", "auto") and not cfg.device.startswith("cpu"):
        raise CS336Error(f"ensemble={cfg.ensemble} trains its members as CPU processes; device={cfg.device!r} is not supported")
    run_dir = cfg.resolved_run_dir()
    members = [member_config(cfg, k) for k in range(cfg.ensemble)]
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        write_config(run_dir, cfg)
    except OSError as e:
        raise CS336Error(f"cannot write to run directory {run_dir}: {e.strerror}") from e
    if progress:
        print(f"{cfg.name}: {cfg.ensemble} members side by side, {members[0].threads} thread(s) each, in {run_dir}/member_*")
    # spawn: a fresh interpreter per member (a forked one would share the parent's torch threads)
    with ProcessPoolExecutor(cfg.ensemble, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = [pool.submit(_train_member, m, stop_after) for m in members]
        try:
            results = [f.result() for f in futures]  # a member's error is raised here, the others finish first
        except KeyboardInterrupt:
            # Interrupted alone (a terminal's Ctrl-C reaches the members too): pass it on, so each
            # member stops as an interrupted run does, its last checkpoint kept, and the pool can close.
            for process in list(pool._processes.values()):  # the executor keeps its workers here
                if process.is_alive():
                    os.kill(process.pid, signal.SIGINT)
            raise
    summaries = [{k: r[k] for k in ("status", "step", "tokens", "train_loss", "val_loss", "wall_s", "nan_skips", "parameters", "message")}
                 for r in results]
    status, message, val = "finished", "", None
    for k, r in enumerate(results):
        if r["status"] != "finished":
            status, message = r["status"], f"member {k} ({member_dir(run_dir, k)}): {r['message']}"
            break
    member_val = [r["val_loss"] for r in results]
    if status == "finished" and cfg.data.valid:
        models = [load_run_model(m.resolved_run_dir())[0] for m in members]
        valid = open_tokens(cfg.data.valid, cfg, "valid")
        val, member_val = ensemble_loss(models, validation_batches(valid, cfg))
    steps = [r["step"] for r in results]
    record = {"step": round(float(np.mean(steps))), "tokens": sum(r["tokens"] for r in results),
              "wall_s": max(r["wall_s"] for r in results)}
    if val is not None:  # the ensemble's one record, replaced when the run is rerun
        write_atomic(run_dir / LOG, json.dumps({**record, "val_loss": val, "val_ppl": math.exp(min(val, 700.0)),
                                                "member_val_loss": member_val}) + "\n")
    train_losses = [r["train_loss"] for r in results if r["train_loss"] is not None]
    summary = {
        "status": status,
        **record,
        "train_loss": float(np.mean(train_losses)) if train_losses else None,
        "val_loss": val,
        "val_ppl": math.exp(val) if val is not None and val < 700 else None,
        "nan_skips": sum(r["nan_skips"] for r in results),
        "parameters": sum(r["parameters"] for r in results),
        "device": "cpu",
        "world_size": 1,
        "run_dir": str(run_dir),
        "message": message,
        "peak_tflops": None,
        "ensemble": cfg.ensemble,
        "member_steps": steps,
        "member_val_loss": member_val,
        "members": summaries,
        "code": {**code_version(), "threads": members[0].threads},
    }
    write_summary(run_dir, summary)
    return summary
