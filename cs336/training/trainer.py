"""The training loop: a config in, a run directory out (its layout: `cs336.runs`).

`train(config)` resumes from the newest readable checkpoint in the run directory, so a run killed at
any moment (even by SIGKILL) continues where its last checkpoint left off, with the same batches
and, on the CPU, bit-identical losses. Each step:

    global batch (batch_size windows, one seeded stream) → this rank's rows → micro-batches
    → forward (optionally bf16 autocast) → cross-entropy → backward (DDP averages gradients)
    → clip → non-finite check → AdamW step at the scheduled learning rate

The update that completes step s (1-based) uses `lr_schedule(optim, s, ...)`, so the last step
of a run of `total` steps uses the minimum learning rate when `cosine_iters` is the run length. In
wall-clock mode (`max_minutes`) the warm-up counts steps and the cosine runs on the fraction of the
budget elapsed since the warm-up ended, reaching `min_lr` exactly at the budget.

`_Trainer.run` is the outline; `_loop` takes the steps; each other job has a section of its own:
checkpoints, the wall-clock budget, evaluation, and logging (records with tokens/s and, given the
device's `peak_tflops`, the model FLOPs utilisation; the progress bar).
"""

from __future__ import annotations

import contextlib
import gc
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from cs336.accounting import training_step_flops
from cs336.errors import CS336Error
from cs336.provenance import code_version, matmul_peak_flops
from cs336.runs import CHECKPOINTS, LOG, build_model, build_optimizer, checkpoint_path, checkpoint_paths, resolve_device, write_config, write_summary
from cs336.training import distributed
from cs336.training.checkpoint import read_checkpoint, save_checkpoint
from cs336.training.config import OptimConfig, TrainConfig, resolve_path
from cs336.training.data import get_batch, load_tokens
from cs336.training.ensemble import train_ensemble
from cs336.training.loss import next_token_loss
from cs336.training.optim import get_lr_cosine_schedule, gradient_clipping
from cs336.training.runlog import RunLog, read_log, truncate_log


_EVAL_STREAM = 0x5EED_E7A1  # the validation batches' seed stream, apart from training's


# ---------------------------------------------------------------------------------------------
# building blocks
# ---------------------------------------------------------------------------------------------
def open_tokens(path: str, cfg: TrainConfig, split: str) -> np.ndarray:
    """Memory-map a token file and check, before any training, that every id fits the vocabulary."""
    if not path:
        raise CS336Error(f"data.{split} is not set: give the path of a token file (.npy from `cs336 encode`)")
    p = resolve_path(path)
    data = load_tokens(p, cfg.data.dtype)
    if len(data) <= cfg.model.context_length:
        raise CS336Error(f"{p} has {len(data)} tokens; it needs more than context_length={cfg.model.context_length}")
    chunk = 1 << 24  # 16M ids (32-64 MB) at a time keeps memory flat on multi-GB files
    top = max(int(data[i : i + chunk].max()) for i in range(0, len(data), chunk))
    if top >= cfg.model.vocab_size:
        raise CS336Error(f"{p} holds token id {top}, but model.vocab_size={cfg.model.vocab_size}; was it encoded with another tokenizer?")
    return data


# ---------------------------------------------------------------------------------------------
# the loop
# ---------------------------------------------------------------------------------------------
@dataclass
class _State:
    """Everything besides model and optimizer that resuming exactly needs."""
    step: int
    wall_s: float
    nan_skips: int
    rng: np.random.Generator  # the training batches' stream
    warmup_end_s: float | None  # wall-clock mode: when the warm-up ended


@dataclass
class _Throughput:
    """The optimizer steps since the last training record and the seconds they took."""
    tokens_per_step: int
    flops_per_step: int  # matmul FLOPs of forward and backward over the global batch
    peak_flops: float | None  # FLOP/s of all ranks' devices together; None = no MFU
    steps: int = 0
    seconds: float = 0.0

    def add(self, seconds: float) -> None:
        self.steps += 1
        self.seconds += seconds

    def take(self) -> dict[str, float]:
        """The window's tokens/s and model FLOPs utilisation (when the peak is known); a new window starts."""
        seconds = max(self.seconds, 1e-9)
        rates = {"tokens_per_s": round(self.steps * self.tokens_per_step / seconds, 1)}
        if self.peak_flops is not None:
            rates["mfu"] = self.steps * self.flops_per_step / seconds / self.peak_flops
        self.steps, self.seconds = 0, 0.0
        return rates


def lr_schedule(o: OptimConfig, step: int, *, total_steps: int | None = None, budget_fraction: float | None = None) -> float:
    """The learning rate of the update that completes `step` (1-based): a linear warm-up over
    `o.warmup_iters` steps, then a cosine from `o.lr` down to `o.min_lr`, either over steps (to
    `o.cosine_iters`, else `total_steps`) or, in wall-clock mode, over `budget_fraction`: the
    fraction of the time left after the warm-up that has elapsed (1 = the budget is spent).

    >>> o = OptimConfig(lr=1.0, min_lr=0.0, warmup_iters=2)
    >>> lr_schedule(o, 1, total_steps=10), lr_schedule(o, 10, total_steps=10)
    (0.5, 0.0)
    >>> lr_schedule(o, 1, budget_fraction=0.0), lr_schedule(o, 50, budget_fraction=0.5)
    (0.5, 0.5)
    """
    if total_steps is not None:
        return get_lr_cosine_schedule(step, o.lr, o.min_lr, o.warmup_iters, o.cosine_iters or total_steps)
    if step < o.warmup_iters:
        return get_lr_cosine_schedule(step, o.lr, o.min_lr, o.warmup_iters, o.warmup_iters)
    return get_lr_cosine_schedule(budget_fraction, o.lr, o.min_lr, 0, 1)


def validation_batches(valid_data: np.ndarray, cfg: TrainConfig):
    """A run's global batches of validation windows (inputs, targets), on the CPU:
    `eval_batches` seeded random batches, or with `eval_all` every non-overlapping window of the
    file in order (the last batch may be short). The same for every step of a run; with
    `eval_all`, the same for every seed."""
    L = cfg.model.context_length
    if not cfg.eval_all:
        rng = np.random.default_rng([cfg.seed, _EVAL_STREAM])
        for _ in range(cfg.eval_batches):
            yield get_batch(valid_data, cfg.batch_size, L, "cpu", generator=rng)
        return
    starts = np.arange(0, len(valid_data) - L, L)
    for i in range(0, len(starts), cfg.batch_size):
        rows = np.asarray(valid_data[starts[i : i + cfg.batch_size, None] + np.arange(L + 1)], dtype=np.int64)
        w = torch.from_numpy(rows)
        yield w[:, :-1], w[:, 1:]


def _autocast(device: torch.device, dtype: str):
    if dtype == "bfloat16" and device.type in ("cuda", "cpu"):
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def _to(x: torch.Tensor, device: torch.device) -> torch.Tensor:
    if device.type == "cuda":
        return x.pin_memory().to(device, non_blocking=True)
    return x.to(device)


class _Trainer:
    def __init__(self, cfg: TrainConfig, progress: bool, stop_after: int | None = None):
        self.cfg = cfg
        self.stop_after = stop_after
        self.device = resolve_device(cfg.device)
        self.dist = distributed.init(self.device.type)
        if self.dist.enabled and self.device.type == "cuda":
            self.device = torch.device("cuda", self.dist.local_rank)
        self.progress = progress and self.dist.is_main
        self.run_dir = cfg.resolved_run_dir()
        self.ckpt_dir = self.run_dir / CHECKPOINTS
        self.total = cfg.total_steps
        self.budget_s = cfg.max_minutes * 60 if cfg.max_minutes is not None else None

        per_rank, rem = divmod(cfg.batch_size, self.dist.world_size * cfg.grad_accum_steps)
        if rem or per_rank == 0:
            raise CS336Error(
                f"batch_size={cfg.batch_size} must be a multiple of world_size × grad_accum_steps = "
                f"{self.dist.world_size} × {cfg.grad_accum_steps}"
            )
        self.micro = per_rank  # sequences per forward pass
        self.rows = slice(self.dist.rank * per_rank * cfg.grad_accum_steps, (self.dist.rank + 1) * per_rank * cfg.grad_accum_steps)

        if cfg.threads is not None:
            torch.set_num_threads(cfg.threads)
        if self.device.type == "cuda" and cfg.tf32:
            torch.set_float32_matmul_precision("high")  # TF32 tensor cores for float32 matmuls
        self._wandb = self._import_wandb()

        self.train_data = open_tokens(cfg.data.train, cfg, "train")
        self.valid_data = open_tokens(cfg.data.valid, cfg, "valid") if cfg.data.valid and (cfg.eval_batches > 0 or cfg.eval_all) else None
        self._build_model()
        self.state = _State(0, 0.0, 0, np.random.default_rng(cfg.seed), None)
        self.resumed_from: Path | None = None
        self.last_written: Path | None = None  # the checkpoint this process wrote last
        self._resume()

    def _import_wandb(self):
        if not (self.cfg.wandb and self.dist.is_main):
            return None
        try:
            import wandb  # here: optional, only for runs that log to Weights & Biases
        except ImportError:
            raise CS336Error("wandb=true but the wandb package is not installed (pip install wandb)") from None
        return wandb

    def _build_model(self) -> None:
        cfg = self.cfg
        torch.manual_seed(cfg.seed)
        self.model = build_model(cfg.model, self.device)
        # The fused path's AdamW is torch's one-pass kernel made to compute the handout's update
        # (benchmarks/README.md, "AdamW"); the reference path keeps the readable per-parameter loop.
        self.optimizer = build_optimizer(self.model, cfg.optim, fused=cfg.model.fused)
        self.ddp = None
        forward: nn.Module = self.model
        if self.dist.enabled:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.ddp = forward = nn.parallel.DistributedDataParallel(self.model, device_ids=ids)
        self.forward = torch.compile(forward) if cfg.compile else forward

    # --- resume -------------------------------------------------------------------------------
    def _resume(self) -> None:
        unreadable = []
        for path in reversed(checkpoint_paths(self.run_dir)):
            try:
                payload = read_checkpoint(path)
            except CS336Error as e:  # an unreadable file (e.g. cut short): fall back to the previous
                unreadable.append(str(e))
                continue
            extra = payload["extra"]
            saved = TrainConfig.from_dict(extra["config"])
            if saved.optim.name != self.cfg.optim.name:
                raise CS336Error(f"{self.run_dir} holds a run trained with optim.name={saved.optim.name!r}; "
                                 "resume it with the same optimizer or choose a new run_dir")
            for key in ("model", "batch_size", "seed"):
                if getattr(saved, key) != getattr(self.cfg, key):
                    raise CS336Error(
                        f"{self.run_dir} holds a run with a different {key} ({getattr(saved, key)}); "
                        f"resume it with the same {key} or choose a new run_dir"
                    )
            self.model.load_state_dict(payload["model"])
            self.optimizer.load_state_dict(payload["optimizer"])
            self.state.step = payload["iteration"]
            self.state.wall_s = float(extra["wall_s"])
            self.state.nan_skips = int(extra["nan_skips"])
            self.state.warmup_end_s = extra["warmup_end_s"]
            self.state.rng.bit_generator.state = extra["rng"]
            torch.set_rng_state(extra["torch_rng"])
            self.resumed_from = path
            break
        if unreadable and self.dist.is_main:
            start = (f"resuming from {self.resumed_from.name}, the newest readable checkpoint" if self.resumed_from
                     else "no readable checkpoint left: starting from step 0")
            print(f"warning: {'; '.join(unreadable)}; {start}", file=sys.stderr)

    # --- checkpoints --------------------------------------------------------------------------
    def _checkpoint_path(self) -> Path:
        """Where the checkpoint of the current step goes."""
        return checkpoint_path(self.run_dir, self.state.step)

    def _checkpoint_extra(self) -> dict[str, Any]:
        s = self.state
        return {
            "config": self.cfg.to_dict(),
            "wall_s": s.wall_s,
            "nan_skips": s.nan_skips,
            "warmup_end_s": s.warmup_end_s,
            "rng": s.rng.bit_generator.state,
            "torch_rng": torch.get_rng_state(),
            "world_size": self.dist.world_size,
        }

    def _checkpoint(self) -> Path | None:
        """Rank 0 writes step_XXXXXXX.pt (atomically: `save_checkpoint`) and prunes old ones; every
        rank learns if it failed.

        Checkpoints past this step can only be unreadable ones that resuming skipped (one of this
        very step is replaced): their steps are being redone, so they go too."""
        path = self._checkpoint_path()
        error = None
        if self.dist.is_main:
            try:
                self.ckpt_dir.mkdir(parents=True, exist_ok=True)
                save_checkpoint(self.model, self.optimizer, self.state.step, path, extra=self._checkpoint_extra())
                paths = checkpoint_paths(self.run_dir)
                done, redone = paths[: paths.index(path) + 1], paths[paths.index(path) + 1 :]
                for old in done[: -self.cfg.keep_checkpoints] + redone:
                    old.unlink(missing_ok=True)
            except (OSError, RuntimeError) as e:  # torch wraps write errors in RuntimeError
                reason = getattr(e, "strerror", None) or str(e).splitlines()[0]
                error = f"cannot write checkpoint {path}: {reason}; earlier checkpoints are intact"
        error = distributed.broadcast_object(error, self.dist)
        if error:
            raise CS336Error(error)
        self.last_written = path
        return path

    # --- the wall-clock budget ----------------------------------------------------------------
    def _clock(self) -> float:
        """The run's wall-clock seconds. With a time budget the clock sets the learning rate and the
        end, so every rank takes rank 0's reading (otherwise the ranks' weights would drift apart)."""
        now = time.perf_counter() - self._t_origin
        return now if self.budget_s is None else distributed.rank0_value(now, self.dist, self.device)

    def _done(self) -> bool:
        s = self.state
        return (self.total is not None and s.step >= self.total) or (self.budget_s is not None and s.wall_s >= self.budget_s)

    def _budget_fraction(self, step: int) -> float | None:
        """Wall-clock mode, once the warm-up is over: the fraction of the time from the warm-up's end
        to the budget that has elapsed at the start of `step`. The warm-up ends when it is first asked."""
        s = self.state
        if self.budget_s is None or step < self.cfg.optim.warmup_iters:
            return None
        if s.warmup_end_s is None:
            s.warmup_end_s = s.wall_s
        return min(1.0, (s.wall_s - s.warmup_end_s) / max(self.budget_s - s.warmup_end_s, 1e-9))

    # --- evaluation ---------------------------------------------------------------------------
    @torch.no_grad()
    def evaluate(self) -> float:
        """Mean loss per token over the validation windows of `_eval_batches` (the same every time)."""
        cfg = self.cfg
        self.model.eval()
        total = torch.zeros((), dtype=torch.float64, device=self.device)
        windows = 0
        for x, y in self._eval_batches():
            windows += len(x)
            x, y = x[self.rows], y[self.rows]
            for k in range(0, len(x), self.micro):
                xb, yb = _to(x[k : k + self.micro], self.device), _to(y[k : k + self.micro], self.device)
                with _autocast(self.device, cfg.dtype):
                    total += self.loss(xb, yb).double() * len(xb)
        self.model.train()
        total = distributed.mean_across_ranks(total, self.dist) * self.dist.world_size
        return float(total) / windows

    def _eval_batches(self):
        return validation_batches(self.valid_data, self.cfg)

    def _evaluate_and_log(self) -> None:
        if self.valid_data is None:
            return
        s = self.state
        self.last_val, self.last_eval_step = self.evaluate(), s.step
        self._emit({"step": s.step, "tokens": s.step * self.cfg.tokens_per_step, "wall_s": round(s.wall_s, 4),
                    "val_loss": self.last_val, "val_ppl": math.exp(min(self.last_val, 700.0))})
        if self.progress:
            self.bar.write(f"step {s.step}: val_loss {self.last_val:.4f}")

    # --- one optimizer step -------------------------------------------------------------------
    def loss(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Mean next-token cross-entropy of a micro-batch, through the DDP or compiled wrapper."""
        return next_token_loss(self.model, x, y, forward=self.forward)

    def train_step(self, lr: float) -> tuple[float, float]:
        """Forward/backward over this rank's micro-batches, clip, step. Returns (loss, grad_norm);
        with a non-finite value the update is not applied."""
        cfg = self.cfg
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        x, y = get_batch(self.train_data, cfg.batch_size, cfg.model.context_length, "cpu", generator=self.state.rng)
        x, y = x[self.rows], y[self.rows]
        loss_sum = torch.zeros((), device=self.device)
        for k in range(cfg.grad_accum_steps):
            mb = slice(k * self.micro, (k + 1) * self.micro)
            xb, yb = _to(x[mb], self.device), _to(y[mb], self.device)
            last = k == cfg.grad_accum_steps - 1
            sync = contextlib.nullcontext() if (self.ddp is None or last) else self.ddp.no_sync()
            with sync:
                with _autocast(self.device, cfg.dtype):
                    loss = self.loss(xb, yb)
                (loss / cfg.grad_accum_steps).backward()
            loss_sum += loss.detach()
        loss_mean = distributed.mean_across_ranks(loss_sum / cfg.grad_accum_steps, self.dist)
        clip = cfg.optim.grad_clip or math.inf
        grad_norm = gradient_clipping(self.model.parameters(), clip)
        loss_v, norm_v = float(loss_mean), float(grad_norm)
        if math.isfinite(loss_v) and math.isfinite(norm_v):
            self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return loss_v, norm_v

    # --- the run directory and the log --------------------------------------------------------
    def _prepare_run_dir(self) -> None:
        if not self.dist.is_main:
            return
        try:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            write_config(self.run_dir, self.cfg)
            for stale in self.ckpt_dir.glob(".step_*.tmp") if self.ckpt_dir.is_dir() else []:
                stale.unlink()  # left by a run killed while writing a checkpoint
            # Records past the checkpoint belong to steps that are about to be redone.
            truncate_log(self.run_dir / LOG, self.state.step)
        except OSError as e:
            raise CS336Error(f"cannot write to run directory {self.run_dir}: {e.strerror}") from e

    def _recall_results(self) -> None:
        """The last losses and evaluation step the log holds (rank 0 reads it; every rank learns them)."""
        past = read_log(self.run_dir / LOG) if self.dist.is_main else []
        evals = [r for r in past if "val_loss" in r]
        trains = [r for r in past if "train_loss" in r]
        self.last_train = trains[-1]["train_loss"] if trains else None
        last_eval = (evals[-1]["step"], evals[-1]["val_loss"]) if evals else (None, None)
        self.last_eval_step, self.last_val = distributed.broadcast_object(last_eval, self.dist)

    def _open_outputs(self) -> None:
        """The log (with Weights & Biases, when asked for), the progress bar and the throughput meter."""
        cfg, s = self.cfg, self.state
        self.log = None
        if self.dist.is_main:
            wandb_run = None
            if self._wandb is not None:
                wandb_run = self._wandb.init(project=cfg.wandb_project, name=cfg.name, config=cfg.to_dict(), dir=str(self.run_dir))
            self.log = RunLog(self.run_dir / LOG, wandb_run)
        by_steps = self.total is not None
        self.bar = tqdm(
            total=self.total if by_steps else round(self.budget_s),
            initial=s.step if by_steps else min(round(s.wall_s), round(self.budget_s)),
            unit="step" if by_steps else "s", desc=cfg.name, disable=not self.progress,
            dynamic_ncols=True, mininterval=0.5, file=sys.stderr,
        )
        self.peak_tflops = cfg.peak_tflops  # one device's; measured before the clock starts
        if cfg.peak_tflops == "measure":
            self.peak_tflops = matmul_peak_flops(self.device, getattr(torch, cfg.dtype)) / 1e12
        peak = self.peak_tflops * 1e12 * self.dist.world_size if self.peak_tflops is not None else None
        flops = training_step_flops(self.model, batch_size=cfg.batch_size, include_optimizer=False)
        self.throughput = _Throughput(cfg.tokens_per_step, flops, peak)

    def _close_outputs(self) -> None:
        self.bar.close()
        if self.log is not None:
            self.log.close()

    def _emit(self, record: dict[str, Any]) -> None:
        if self.log is not None:
            self.log.write(record)

    def _log_train(self, lr: float, loss: float, grad_norm: float, step_s: float, done: bool) -> None:
        """A training record at the first and the last step, every `log_interval` steps and at every
        non-finite one; the progress bar every step."""
        cfg, s = self.cfg, self.state
        self.throughput.add(step_s)
        finite = math.isfinite(loss) and math.isfinite(grad_norm)
        if s.step % cfg.log_interval == 0 or s.step == 1 or done or not finite:
            self._emit({"step": s.step, "tokens": s.step * cfg.tokens_per_step, "wall_s": round(s.wall_s, 4), "lr": lr,
                        "train_loss": loss, "grad_norm": grad_norm, **self.throughput.take()})
        if self.progress:
            self.bar.set_postfix(loss=f"{loss:.3f}", lr=f"{lr:.2e}", tok_s=f"{cfg.tokens_per_step / max(step_s, 1e-9):,.0f}", refresh=False)

    def _advance_bar(self) -> None:
        """One step on the bar of a run of known length; the seconds so far on a time budget's."""
        if self.total is not None:
            self.bar.update(1)
        else:
            self.bar.update(min(round(self.state.wall_s), round(self.budget_s)) - self.bar.n)

    def _summary(self, status: str, message: str = "") -> dict[str, Any]:
        s = self.state
        summary = {
            "status": status,
            "step": s.step,
            "tokens": s.step * self.cfg.tokens_per_step,
            "train_loss": self.last_train,
            "val_loss": self.last_val,
            "val_ppl": math.exp(self.last_val) if self.last_val is not None and self.last_val < 700 else None,
            "wall_s": round(s.wall_s, 4),
            "nan_skips": s.nan_skips,
            "parameters": self.model.num_parameters(),
            "device": str(self.device),
            "world_size": self.dist.world_size,
            "run_dir": str(self.run_dir),
            "message": message,
            "peak_tflops": self.peak_tflops,
            "code": code_version(),
        }
        if self.dist.is_main:
            write_summary(self.run_dir, summary)
        return summary

    # --- the run ------------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        """Train to the end of the run, evaluate and checkpoint the last step, write the summary."""
        self._prepare_run_dir()
        distributed.barrier(self.dist)
        self._recall_results()
        self._open_outputs()
        status, message = "finished", ""
        self._t_origin = time.perf_counter() - self.state.wall_s  # wall_s continues across resumptions
        try:
            if self.state.step == 0 and self.last_eval_step is None:
                self._evaluate_and_log()
            status, message = self._loop()
            if status == "finished":
                self._finish()
        except KeyboardInterrupt:
            if self.dist.is_main:
                self._summary("interrupted", f"interrupted at step {self.state.step}; rerun to resume from the last checkpoint")
            raise
        finally:
            self._close_outputs()
        return self._summary(status, message)

    def _loop(self) -> tuple[str, str]:
        """Optimizer steps until the run's length or time budget is reached: ("finished", ""), or
        ("diverged", why) at a non-finite loss the policy does not skip."""
        cfg, s = self.cfg, self.state
        s.wall_s = self._clock()
        while not self._done():  # the clock is read once per step, so the last record shows why the run ended
            if self.stop_after is not None and s.step >= self.stop_after:
                return "stopped", f"stopped after step {s.step} (stop_after={self.stop_after}); rerun to continue"
            lr = lr_schedule(cfg.optim, s.step + 1, total_steps=self.total, budget_fraction=self._budget_fraction(s.step + 1))
            t0 = time.perf_counter()
            loss, grad_norm = self.train_step(lr)
            step_s = time.perf_counter() - t0
            s.step += 1
            s.wall_s = self._clock()
            done = self._done()
            finite = math.isfinite(loss) and math.isfinite(grad_norm)
            if finite:
                self.last_train = loss
            else:
                s.nan_skips += 1
            self._log_train(lr, loss, grad_norm, step_s, done)
            if not finite and (stop := self._non_finite(loss, grad_norm)):
                return "diverged", stop
            if cfg.eval_interval and s.step % cfg.eval_interval == 0 and not done:
                self._evaluate_and_log()
                s.wall_s = self._clock()
            if cfg.checkpoint_interval and s.step % cfg.checkpoint_interval == 0 and not done:
                self._checkpoint()
                s.wall_s = self._clock()
            self._advance_bar()
        return "finished", ""

    def _non_finite(self, loss: float, grad_norm: float) -> str | None:
        """After a non-finite loss or gradient norm (its update was not applied): why the run stops,
        or None when the policy skips it."""
        cfg, s = self.cfg, self.state
        bad = "loss" if not math.isfinite(loss) else "gradient norm"
        what = f"non-finite {bad} ({loss if bad == 'loss' else grad_norm}) at step {s.step}"
        if cfg.nan_policy == "stop" or s.nan_skips > cfg.max_nan_skips:
            good = checkpoint_paths(self.run_dir)
            message = (f"{what}: run stopped (nan_policy={cfg.nan_policy!r}, {s.nan_skips} non-finite steps); "
                       f"last good checkpoint: {good[-1] if good else 'none'}; try a lower optim.lr")
        else:
            message, what = None, f"{what}: update skipped ({s.nan_skips}/{cfg.max_nan_skips})"
        if self.progress:
            self.bar.write(message or what)
        return message

    def _finish(self) -> None:
        """The last step's evaluation and checkpoint, unless they are there already."""
        if self.last_eval_step != self.state.step:
            self._evaluate_and_log()
        if self._checkpoint_path() not in (self.resumed_from, self.last_written):  # else it is there, readable
            self._checkpoint()
        self.state.wall_s = self._clock()


def train(config: TrainConfig, *, progress: bool = True, stop_after: int | None = None) -> dict[str, Any]:
    """Train (or resume) the run `config` describes; return its summary (also in summary.json).

    The summary's `status` is "finished" or "diverged" (a non-finite loss; the message says where
    and the last good checkpoint is intact), and its `code` the code version that trained it
    (`cs336.provenance.code_version`). `stop_after=N` ends the run after step N with status
    "stopped", on the run's own schedule (the first N steps of the full run, e.g. to check a
    committed log). Under `torchrun` every rank calls this; rank 0 writes the files. With
    `ensemble = K > 1` the run is K members trained side by side (`cs336.training.ensemble`).
    """
    config.validate()
    if config.ensemble > 1:
        if distributed.from_environment().enabled:
            raise CS336Error(f"ensemble={config.ensemble} runs its members as processes of its own; launch it without torchrun")
        return train_ensemble(config, progress=progress, stop_after=stop_after)
    trainer, finished = None, False
    try:
        trainer = _Trainer(config, progress, stop_after)
        summary = trainer.run()
        finished = True
        return summary
    finally:
        if trainer is not None and trainer.dist.enabled:
            # Under torchrun, drop the DDP wrapper (its reducer holds the process group) before the
            # group goes; a reducer outliving its group can abort the process at exit.
            trainer.ddp = trainer.forward = None
            del trainer
            gc.collect()
        # After a normal finish every rank is done with collectives: meet, then leave together.
        # (After an error the other ranks may be mid-step, so no barrier: torchrun stops them.)
        distributed.shutdown(synchronize=finished)  # leaves a process group alone unless this call created it
