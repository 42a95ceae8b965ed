"""Data-parallel training: one process per device, gradients averaged by DDP.

Launched by `torchrun --nproc_per_node N -m cs336 train ...`, which sets RANK / WORLD_SIZE /
LOCAL_RANK; without them everything here is a no-op for a single process. CPU uses the gloo
backend, CUDA uses NCCL with one GPU per local rank.

How the trainer splits the work: every rank draws the *same* global batch of `batch_size` windows
from one shared, seeded stream and keeps its own contiguous slice of rows, so the ranks see
distinct sequences and the run sees exactly the batches a single process would — the loss
trajectory does not depend on the number of processes, and a run can resume on a different one.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


_OWNED = False  # whether `init` created the process group (and so `shutdown` may destroy it)


def from_environment() -> DistInfo:
    """This process's place among the ranks torchrun described in the environment (rank 0 of one
    when not launched so); joins nothing."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    return DistInfo(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))


def init(device_type: str) -> DistInfo:
    """Join the process group torchrun described in the environment (no-op when not launched so)."""
    global _OWNED
    info = from_environment()
    if not info.enabled:
        return info
    if not dist.is_initialized():
        backend = "nccl" if device_type == "cuda" else "gloo"
        if device_type == "cuda":
            torch.cuda.set_device(info.local_rank)
        dist.init_process_group(backend=backend)
        _OWNED = True
    return info


def shutdown(synchronize: bool = False) -> None:
    """Leave the process group, if `init` created it; with `synchronize`, first wait at a barrier
    until every rank is leaving, so that no rank tears down connections another still uses."""
    global _OWNED
    if _OWNED and dist.is_initialized():
        if synchronize:
            dist.barrier()
        dist.destroy_process_group()
    _OWNED = False


def mean_across_ranks(x: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """The mean of a tensor over ranks (itself on one process)."""
    if not info.enabled:
        return x
    x = x.clone()
    dist.all_reduce(x, op=dist.ReduceOp.SUM)
    return x / info.world_size


def rank0_value(x: float, info: DistInfo, device: torch.device) -> float:
    """Rank 0's value of a float, on every rank (e.g. the clock, so that all ranks agree on the
    learning rate and on when a time budget ends)."""
    if not info.enabled:
        return x
    t = torch.tensor([x], dtype=torch.float64, device=device)
    dist.broadcast(t, src=0)
    return float(t)


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def broadcast_object(obj, info: DistInfo):
    """Rank 0's value of a picklable object, on every rank."""
    if not info.enabled:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]
