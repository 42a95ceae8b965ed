"""Data-parallel training on the CPU: two gloo processes under torchrun."""

import json
import subprocess
import sys

import pytest

from cs336.experiments.tiny import byte_tokens
from cs336.runs import checkpoint_paths
from cs336.training.checkpoint import read_checkpoint
from cs336.training.runlog import read_log
from cs336.training.trainer import train
from engine_fixtures import subprocess_env, tiny_config

pytestmark = pytest.mark.usefixtures("one_thread")


def torchrun(nproc: int, config_path, *extra: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
           "-m", "cs336", "train", "--config", str(config_path), "--no-progress", *extra]
    out = subprocess.run(cmd, env=subprocess_env(), capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return out


def train_losses(run_dir) -> dict[int, float]:
    return {r["step"]: r["train_loss"] for r in read_log(run_dir / "log.jsonl") if "train_loss" in r}


def test_two_ranks_follow_the_single_process_trajectory_and_resume_its_checkpoints(tmp_path):
    tokens = byte_tokens(tmp_path / "tokens")
    over = dict(checkpoint_interval=4, eval_interval=4, optim={"cosine_iters": 16})
    single = tiny_config(*tokens, tmp_path / "single", max_steps=16, **over)
    train(single, progress=False)

    # 8 steps in one process, then 8 more data-parallel on 2 ranks from its checkpoint, each rank
    # accumulating 2 micro-batches of 2 sequences (DDP syncs gradients on the last one only)
    train(tiny_config(*tokens, tmp_path / "ddp", max_steps=8, **over), progress=False)
    cfg_path = tmp_path / "ddp.json"
    cfg_path.write_text(json.dumps(tiny_config(*tokens, tmp_path / "ddp", max_steps=16, grad_accum_steps=2, **over).to_dict()))
    out = torchrun(2, cfg_path)
    assert out.stdout.count("finished step 16") == 1  # rank 0 alone reports

    a, b = train_losses(tmp_path / "single"), train_losses(tmp_path / "ddp")
    assert sorted(b) == list(range(1, 17))  # rank 0 alone logs, each step once
    # Every rank takes its rows of the same global batch, so both runs see the same data; only the
    # order of float32 sums differs (DDP averages two ranks' sums of two micro-batch gradients): ~1e-7 relative per
    # step, which Adam's normalisation can amplify a little over 8 steps. Measured: at most 5e-7.
    # With both ranks reading rank 0's rows the differences are 7e-3 to 0.1, so 1e-4 separates them.
    assert max(abs(a[s] - b[s]) for s in range(9, 17)) < 1e-4
    assert all(a[s] == b[s] for s in range(1, 9))
    va = [r["val_loss"] for r in read_log(tmp_path / "single" / "log.jsonl") if "val_loss" in r]
    vb = [r["val_loss"] for r in read_log(tmp_path / "ddp" / "log.jsonl") if "val_loss" in r]
    assert len(va) == len(vb) == 5 and max(abs(x - y) for x, y in zip(va, vb)) < 1e-4
    last = read_checkpoint(checkpoint_paths(tmp_path / "ddp")[-1])
    assert last["iteration"] == 16 and last["extra"]["world_size"] == 2
    assert json.loads((tmp_path / "ddp" / "summary.json").read_text())["world_size"] == 2


def test_a_batch_that_does_not_split_over_the_ranks_is_refused(tmp_path, monkeypatch):
    import cs336.training.trainer as trainer_module
    from cs336.errors import CS336Error
    from cs336.training.distributed import DistInfo

    tokens = byte_tokens(tmp_path / "tokens", n_bytes=5000)
    monkeypatch.setattr(trainer_module.distributed, "init", lambda device_type: DistInfo(0, 2, 0))
    with pytest.raises(CS336Error, match="batch_size=6 must be a multiple of world_size × grad_accum_steps = 2 × 2"):
        train(tiny_config(*tokens, tmp_path / "r", batch_size=6, grad_accum_steps=2), progress=False)
