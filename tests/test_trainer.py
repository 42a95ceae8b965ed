import dataclasses
import json
import math
import os
import signal
import subprocess
import sys
import time
import types
from pathlib import Path

import numpy as np
import pytest
import torch

import cs336.training.trainer as trainer_module
from cs336 import AdamW, cross_entropy, get_batch, get_lr_cosine_schedule, gradient_clipping
from cs336.accounting import training_step_flops
from cs336.provenance import matmul_peak_flops
from cs336.cli import main
from cs336.errors import CS336Error
from cs336.experiments.tiny import byte_tokens
from cs336.runs import build_model, checkpoint_paths, load_run_model
from cs336.training.checkpoint import read_checkpoint
from cs336.training.config import OptimConfig
from cs336.training.loss import linear_cross_entropy
from cs336.training.runlog import read_log
from cs336.training.trainer import lr_schedule, train
from engine_fixtures import subprocess_env, tiny_config

pytestmark = pytest.mark.usefixtures("one_thread")

ROOT = Path(__file__).resolve().parents[1]
TRAIN_KEYS = {"step", "tokens", "wall_s", "lr", "train_loss", "grad_norm", "tokens_per_s"}
EVAL_KEYS = {"step", "tokens", "wall_s", "val_loss", "val_ppl"}


@pytest.fixture(scope="module")
def tokens(tmp_path_factory):
    return byte_tokens(tmp_path_factory.mktemp("tokens"))


def losses(run_dir) -> dict[int, float]:
    return {r["step"]: r["train_loss"] for r in read_log(Path(run_dir) / "log.jsonl") if "train_loss" in r}


def test_a_run_lowers_validation_loss_and_leaves_a_complete_run_directory(tokens, tmp_path):
    cfg = tiny_config(*tokens, tmp_path / "run", max_steps=30, eval_interval=10, checkpoint_interval=10, log_interval=5)
    summary = train(cfg, progress=False)
    run = tmp_path / "run"
    records = read_log(run / "log.jsonl")
    train_recs = [r for r in records if "train_loss" in r]
    evals = [r for r in records if "val_loss" in r]
    assert all(set(r) == TRAIN_KEYS for r in train_recs) and all(set(r) == EVAL_KEYS for r in evals)
    assert [r["step"] for r in train_recs] == [1, 5, 10, 15, 20, 25, 30]
    assert [r["step"] for r in evals] == [0, 10, 20, 30]
    assert all(r["tokens"] == r["step"] * 8 * 32 for r in records)
    assert evals[-1]["val_loss"] < evals[0]["val_loss"] - 0.5  # from ~ln 256 = 5.5 down
    assert evals[0]["val_loss"] == pytest.approx(math.log(256), abs=0.3)
    assert all(e["val_ppl"] == pytest.approx(math.exp(e["val_loss"])) for e in evals)
    assert [p.name for p in checkpoint_paths(run)] == ["step_0000020.pt", "step_0000030.pt"]  # keep 2
    assert summary["status"] == "finished" and summary["step"] == 30 and summary["tokens"] == 30 * 256
    assert summary["val_loss"] == evals[-1]["val_loss"] and summary["train_loss"] == train_recs[-1]["train_loss"]
    assert json.loads((run / "summary.json").read_text()) == summary
    assert json.loads((run / "config.json").read_text()) == cfg.to_dict()
    assert (run / "config.toml").exists()
    model, saved = load_run_model(run)
    assert saved == cfg
    ckpt = read_checkpoint(checkpoint_paths(run)[-1])
    assert all(torch.equal(v, ckpt["model"][k]) for k, v in model.state_dict().items())


def test_logged_learning_rate_follows_the_cosine_schedule(tokens, tmp_path):
    cfg = tiny_config(*tokens, tmp_path / "run", max_steps=12, eval_batches=0)
    train(cfg, progress=False)
    o = cfg.optim
    for r in read_log(tmp_path / "run" / "log.jsonl"):
        assert r["lr"] == get_lr_cosine_schedule(r["step"], o.lr, o.min_lr, o.warmup_iters, 12)
    assert r["step"] == 12 and r["lr"] == o.min_lr  # the last update uses the minimum


def plain_loop(cfg, tokens, steps: int, *, fused: bool) -> dict[int, float]:
    """The training loop spelled out: seeded init, the seeded batch stream, the schedule, clipping,
    AdamW. With `fused`, the fast step: the fused model's hidden states, the head applied inside
    `linear_cross_entropy`, and AdamW's fused kernel."""
    o, L = cfg.optim, cfg.model.context_length
    torch.manual_seed(cfg.seed)
    model = build_model(dataclasses.replace(cfg.model, fused=fused))
    opt = AdamW(model.parameters(), lr=o.lr, betas=o.betas, eps=o.eps, weight_decay=o.weight_decay, fused=fused)
    data, rng, losses_by_step = np.load(tokens[0]), np.random.default_rng(cfg.seed), {}
    for step in range(1, steps + 1):
        for group in opt.param_groups:
            group["lr"] = get_lr_cosine_schedule(step, o.lr, o.min_lr, o.warmup_iters, steps)
        x, y = get_batch(data, cfg.batch_size, L, "cpu", generator=rng)
        if fused:
            loss = linear_cross_entropy(model(x, head=False), model.lm_head.weight, y)
        else:
            loss = cross_entropy(model(x), y)
        loss.backward()
        gradient_clipping(model.parameters(), o.grad_clip)
        opt.step()
        opt.zero_grad()
        losses_by_step[step] = loss.item()
    return losses_by_step


@pytest.mark.parametrize("fused", [False, True], ids=["reference", "fused"])
def test_the_trainer_takes_exactly_the_steps_of_a_plain_loop(tokens, tmp_path, fused):
    """The trainer's losses are the plain loop's to the last bit: it adds bookkeeping, never
    arithmetic; and the fast step computes the reference step's numbers up to float rounding."""
    cfg = tiny_config(*tokens, tmp_path / "run", max_steps=10, eval_interval=4, checkpoint_interval=3, model={"fused": fused})
    train(cfg, progress=False)
    assert losses(tmp_path / "run") == plain_loop(cfg, tokens, 10, fused=fused)
    if fused:
        reference = plain_loop(cfg, tokens, 10, fused=False)
        assert losses(tmp_path / "run") == pytest.approx(reference, rel=1e-5)


@pytest.fixture
def fake_clock(monkeypatch):
    """The trainer's clock, moved only by training forward passes, each `clock["step_s"]` long, so
    step times and the wall-clock schedule are exact."""
    clock = {"now": 0.0, "step_s": 0.125}  # binary fractions: sums and differences are exact
    real = trainer_module._Trainer.loss

    def timed(trainer, x, y):
        if torch.is_grad_enabled():
            clock["now"] += clock["step_s"]
        return real(trainer, x, y)

    monkeypatch.setattr(trainer_module._Trainer, "loss", timed)
    monkeypatch.setattr(trainer_module, "time", types.SimpleNamespace(perf_counter=lambda: clock["now"]))
    return clock


@pytest.mark.parametrize("fraction", [0.0, 1e-7, 4.9999e-7, 5e-7, 0.1, 1 / 3, 0.5, 0.7071, 0.999999, 0.9999996, 1.0])
def test_the_wall_clock_cosine_is_the_cosine_of_the_budget_fraction(fraction):
    """After the warm-up, lr = min_lr + (lr - min_lr)·(1 + cos(π·fraction))/2 of the budget's
    fraction elapsed, whatever the step."""
    o = OptimConfig(lr=3e-3, min_lr=3e-4, warmup_iters=7)
    expected = o.min_lr + (o.lr - o.min_lr) * (1 + math.cos(math.pi * fraction)) / 2
    for step in (7, 8, 500):
        assert lr_schedule(o, step, budget_fraction=fraction) == pytest.approx(expected, rel=1e-12, abs=1e-15)
    for step in range(o.warmup_iters):  # the warm-up counts steps, whatever the clock says
        assert lr_schedule(o, step, budget_fraction=fraction) == lr_schedule(o, step, total_steps=1000) == step / 7 * o.lr
    assert lr_schedule(o, 7, budget_fraction=1.0) == o.min_lr


def test_a_wall_clock_run_takes_its_learning_rates_from_the_budget_fraction(tokens, tmp_path, fake_clock):
    cfg = tiny_config(*tokens, tmp_path / "run", max_minutes=3 / 60, eval_interval=5, checkpoint_interval=5)
    summary = train(cfg, progress=False)
    budget_s, w, step_s = cfg.max_minutes * 60, cfg.optim.warmup_iters, fake_clock["step_s"]
    recs = [r for r in read_log(tmp_path / "run" / "log.jsonl") if "lr" in r]
    assert summary["step"] == math.ceil(budget_s / step_s) == len(recs) and recs[-1]["wall_s"] >= budget_s
    warmup_end = (w - 1) * step_s  # the clock when step `warmup_iters` starts
    for r in recs:
        started = (r["step"] - 1) * step_s
        fraction = min(1.0, (started - warmup_end) / max(budget_s - warmup_end, 1e-9)) if r["step"] >= w else None
        assert r["lr"] == lr_schedule(cfg.optim, r["step"], budget_fraction=fraction), r


def test_each_training_record_logs_tokens_per_second_and_mfu_against_the_configured_peak(tokens, tmp_path, fake_clock):
    cfg = tiny_config(*tokens, tmp_path / "run", max_steps=7, log_interval=3, peak_tflops=2e-4)
    train(cfg, progress=False)
    flops = training_step_flops(cfg.model.__dict__, batch_size=cfg.batch_size, include_optimizer=False)
    step_s, peak = fake_clock["step_s"], cfg.peak_tflops * 1e12
    recs = [r for r in read_log(tmp_path / "run" / "log.jsonl") if "train_loss" in r]
    assert [r["step"] for r in recs] == [1, 3, 6, 7] and all(set(r) == TRAIN_KEYS | {"mfu"} for r in recs)
    for r in recs:  # each record measures the steps since the previous one: each took step_s
        assert r["tokens_per_s"] == cfg.tokens_per_step / step_s
        assert r["mfu"] == pytest.approx(flops / step_s / peak, rel=1e-12)
    assert 0.1 < recs[0]["mfu"] < 10  # the peak was chosen to make this tiny model's MFU about 1
    train(tiny_config(*tokens, tmp_path / "no_peak", max_steps=2), progress=False)
    assert all("mfu" not in r for r in read_log(tmp_path / "no_peak" / "log.jsonl"))


def test_a_measured_peak_is_the_devices_matmul_rate_and_is_recorded(tokens, tmp_path, fake_clock, monkeypatch):
    """`peak_tflops = "measure"` measures the device's matrix-product rate at the run's dtype before the
    clock starts, logs MFU against it and records it in the summary."""
    measured = []
    monkeypatch.setattr(trainer_module, "matmul_peak_flops", lambda device, dtype: measured.append(dtype) or 4e8)
    cfg = tiny_config(*tokens, tmp_path / "run", max_steps=3, log_interval=1, peak_tflops="measure")
    summary = train(cfg, progress=False)
    assert measured == [torch.float32] and summary["peak_tflops"] == 4e8 / 1e12
    flops = training_step_flops(cfg.model.__dict__, batch_size=cfg.batch_size, include_optimizer=False)
    recs = [r for r in read_log(tmp_path / "run" / "log.jsonl") if "train_loss" in r]
    assert [r["mfu"] for r in recs] == pytest.approx([flops / fake_clock["step_s"] / 4e8] * 3, rel=1e-12)


def test_the_measured_matmul_peak_is_a_plausible_rate():
    rate = matmul_peak_flops("cpu", torch.float32, sizes=(256,), repeats=2)
    assert 1e8 < rate < 1e14  # between a slow core and far beyond any CPU


def test_sigkill_at_an_arbitrary_step_then_resume_gives_bit_identical_losses(tokens, tmp_path):
    over = dict(max_steps=120, checkpoint_interval=5, eval_interval=10)
    reference = tiny_config(*tokens, tmp_path / "reference", **over)
    train(reference, progress=False)
    killed = tiny_config(*tokens, tmp_path / "killed", **over)
    cfg_file = tmp_path / "killed.json"
    cfg_file.write_text(json.dumps(killed.to_dict()))
    env = subprocess_env()
    cmd = [sys.executable, "-m", "cs336", "train", "--config", str(cfg_file), "--no-progress"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while max(losses(tmp_path / "killed"), default=0) < 17 and proc.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    kill_step = max(losses(tmp_path / "killed"))
    assert 17 <= kill_step < 120, "the run should be killed mid-way"  # 100 steps of margin for the kill to land
    subprocess.run(cmd, env=env, check=True, capture_output=True)
    records = read_log(tmp_path / "killed" / "log.jsonl")
    steps = [r["step"] for r in records if "train_loss" in r]
    assert steps == list(range(1, 121))  # each step logged once: records past the checkpoint were cut
    assert losses(tmp_path / "killed") == losses(tmp_path / "reference")  # bit-identical floats
    val = lambda d: [(r["step"], r["val_loss"]) for r in read_log(d / "log.jsonl") if "val_loss" in r]
    assert val(tmp_path / "killed") == val(tmp_path / "reference")


def test_extending_a_finished_run_continues_it_exactly(tokens, tmp_path):
    # cosine_iters fixed, so the first 8 steps of both runs see the same schedule
    straight = tiny_config(*tokens, tmp_path / "straight", max_steps=16, optim={"cosine_iters": 16})
    train(straight, progress=False)
    first = tiny_config(*tokens, tmp_path / "split", max_steps=8, optim={"cosine_iters": 16})
    train(first, progress=False)
    train(tiny_config(*tokens, tmp_path / "split", max_steps=16, optim={"cosine_iters": 16}), progress=False)
    assert losses(tmp_path / "split") == losses(tmp_path / "straight")


def test_rerunning_a_finished_run_changes_nothing(tokens, tmp_path):
    cfg = tiny_config(*tokens, tmp_path / "run", max_steps=6)
    train(cfg, progress=False)
    before = (tmp_path / "run" / "log.jsonl").read_text()
    summary = train(cfg, progress=False)
    assert summary["status"] == "finished" and summary["step"] == 6
    assert (tmp_path / "run" / "log.jsonl").read_text() == before


def test_gradient_accumulation_matches_the_full_batch(tokens, tmp_path):
    full = train(tiny_config(*tokens, tmp_path / "a", max_steps=8), progress=False)
    accum = train(tiny_config(*tokens, tmp_path / "b", max_steps=8, grad_accum_steps=4), progress=False)
    a, b = losses(tmp_path / "a"), losses(tmp_path / "b")
    # Same batches, gradients summed in another order: float32 rounding only (~1e-7 relative),
    # far below the ~1e-2 loss change per step that a data or scaling bug would show.
    assert a.keys() == b.keys() and all(abs(a[k] - b[k]) < 1e-4 for k in a)
    assert full["val_loss"] == pytest.approx(accum["val_loss"], abs=1e-4)


def test_bfloat16_autocast_trains_close_to_float32(tokens, tmp_path):
    f32 = train(tiny_config(*tokens, tmp_path / "a", max_steps=10), progress=False)
    bf16 = train(tiny_config(*tokens, tmp_path / "b", max_steps=10, dtype="bfloat16"), progress=False)
    assert bf16["status"] == "finished"
    assert bf16["val_loss"] == pytest.approx(f32["val_loss"], abs=0.05)  # bf16 has ~3 significant digits


def poison_loss_from(monkeypatch, first_bad_call: int):
    """Make the trainer's loss NaN from the given forward pass on."""
    real = trainer_module._Trainer.loss
    calls = {"n": 0}

    def fake(trainer, x, y):
        calls["n"] += 1
        loss = real(trainer, x, y)
        return loss * float("nan") if calls["n"] >= first_bad_call and torch.is_grad_enabled() else loss

    monkeypatch.setattr(trainer_module._Trainer, "loss", fake)


def test_nan_loss_stops_the_run_and_keeps_the_last_good_checkpoint(tokens, tmp_path, monkeypatch):
    cfg = tiny_config(*tokens, tmp_path / "run", max_steps=20, eval_batches=0, checkpoint_interval=4)
    poison_loss_from(monkeypatch, first_bad_call=7)
    summary = train(cfg, progress=False)
    assert summary["status"] == "diverged" and summary["step"] == 7
    assert "non-finite loss" in summary["message"] and "step 7" in summary["message"] and "step_0000004.pt" in summary["message"]
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["status"] == "diverged"
    assert [p.name for p in checkpoint_paths(tmp_path / "run")] == ["step_0000004.pt"]
    ckpt = read_checkpoint(checkpoint_paths(tmp_path / "run")[0])
    assert all(torch.isfinite(v).all() for v in ckpt["model"].values())
    with pytest.raises(CS336Error, match="non-finite"):  # the CLI turns it into `error: ...`, exit 2
        trainer_module_cli_run(tmp_path / "run" / "config.json", monkeypatch)


def trainer_module_cli_run(config_path, monkeypatch):
    from cs336.cli import _run_train, build_parser

    args = build_parser().parse_args(["train", "--config", str(config_path), "--no-progress"])
    return _run_train(args)


def test_nan_skip_policy_skips_bad_updates_then_gives_up(tokens, tmp_path, monkeypatch):
    cfg = tiny_config(*tokens, tmp_path / "run", max_steps=20, eval_batches=0, nan_policy="skip", max_nan_skips=3)
    poison_loss_from(monkeypatch, first_bad_call=5)
    summary = train(cfg, progress=False)
    assert summary["status"] == "diverged" and summary["nan_skips"] == 4 and summary["step"] == 8
    recs = {r["step"]: r for r in read_log(tmp_path / "run" / "log.jsonl")}
    assert recs[5]["train_loss"] is None  # non-finite values are logged as null (valid JSON)


def test_skipped_update_leaves_the_weights_untouched(tokens, tmp_path, monkeypatch):
    cfg = tiny_config(*tokens, tmp_path / "run", max_steps=4, eval_batches=0, nan_policy="skip", checkpoint_interval=1, keep_checkpoints=10)
    poison_loss_from(monkeypatch, first_bad_call=4)
    assert train(cfg, progress=False)["status"] == "finished"
    s3, s4 = (read_checkpoint(p)["model"] for p in checkpoint_paths(tmp_path / "run")[-2:])
    assert all(torch.equal(s3[k], s4[k]) for k in s3)


def test_a_failed_checkpoint_write_is_an_error_and_keeps_the_previous_one(tokens, tmp_path, monkeypatch):
    cfg = tiny_config(*tokens, tmp_path / "run", max_steps=12, eval_batches=0, checkpoint_interval=4)
    real_save = torch.save
    calls = {"n": 0}

    def disk_full(obj, f, *a, **k):
        calls["n"] += 1
        if calls["n"] == 2:  # the second checkpoint: write some bytes, then the disk is full
            f.write(b"partial")
            raise OSError(28, "No space left on device")
        return real_save(obj, f, *a, **k)

    monkeypatch.setattr(torch, "save", disk_full)
    with pytest.raises(CS336Error, match="No space left on device.*intact"):
        train(cfg, progress=False)
    ckpt_dir = tmp_path / "run" / "checkpoints"
    assert sorted(p.name for p in ckpt_dir.iterdir()) == ["step_0000004.pt"]  # no temp file left
    assert read_checkpoint(ckpt_dir / "step_0000004.pt")["iteration"] == 4
    monkeypatch.setattr(torch, "save", real_save)
    assert train(cfg, progress=False)["step"] == 12  # and the run resumes from it


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root ignores directory permissions")
def test_an_unwritable_run_directory_is_a_clear_error(tokens, tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        with pytest.raises(CS336Error, match="cannot write"):
            train(tiny_config(*tokens, locked / "run", max_steps=2), progress=False)
    finally:
        locked.chmod(0o700)


def test_a_run_directory_that_cannot_be_created_is_a_clear_error(tokens, tmp_path):
    (tmp_path / "afile").write_text("")
    with pytest.raises(CS336Error, match="cannot write to run directory"):
        train(tiny_config(*tokens, tmp_path / "afile" / "run", max_steps=2), progress=False)


def cut_in_half(path: Path) -> None:
    os.truncate(path, path.stat().st_size // 2)


def test_an_unreadable_newest_checkpoint_falls_back_to_the_previous_and_is_written_again(tokens, tmp_path, capsys):
    cfg = tiny_config(*tokens, tmp_path / "run", max_steps=8, eval_batches=0)
    train(cfg, progress=False)
    reference = losses(tmp_path / "run")
    final = tmp_path / "run" / "checkpoints" / "step_0000008.pt"
    reference_weights = read_checkpoint(final)["model"]
    cut_in_half(final)
    capsys.readouterr()
    assert train(cfg, progress=False)["step"] == 8
    warnings = capsys.readouterr().err.splitlines()
    assert len(warnings) == 1 and warnings[0].startswith(f"warning: cannot read checkpoint {final}: the file is truncated")
    assert warnings[0].endswith("resuming from step_0000004.pt, the newest readable checkpoint")
    assert losses(tmp_path / "run") == reference  # steps 5-8 redone from step 4, identically
    assert [p.name for p in checkpoint_paths(tmp_path / "run")] == ["step_0000004.pt", "step_0000008.pt"]
    weights = read_checkpoint(final)["model"]  # the final checkpoint is whole again, and the same
    assert all(torch.equal(weights[k], v) for k, v in reference_weights.items())


def test_a_rerun_ending_before_an_unreadable_checkpoint_leaves_its_own_as_the_newest(tokens, tmp_path):
    """A run that now ends earlier (as a wall-clock run may) replaces the unreadable checkpoint of a
    later step with its own, and keeps its own even when it keeps only one."""
    train(tiny_config(*tokens, tmp_path / "run", max_steps=8, eval_batches=0), progress=False)
    cut_in_half(tmp_path / "run" / "checkpoints" / "step_0000008.pt")
    cfg = tiny_config(*tokens, tmp_path / "run", max_steps=6, eval_batches=0, keep_checkpoints=1)
    assert train(cfg, progress=False)["step"] == 6
    assert [p.name for p in checkpoint_paths(tmp_path / "run")] == ["step_0000006.pt"]
    assert read_checkpoint(tmp_path / "run" / "checkpoints" / "step_0000006.pt")["iteration"] == 6


def test_a_run_with_a_cut_final_checkpoint_is_an_error_until_a_rerun_writes_it_again(tokens, tmp_path, capsys):
    """generate and export name the unreadable checkpoint; rerunning train repairs the run."""
    from cs336.tokenization.files import save_vocab_merges

    run = tmp_path / "run"
    cfg = tiny_config(*tokens, run, max_steps=8, eval_batches=0, model={"vocab_size": 257})
    (tmp_path / "c.json").write_text(json.dumps(cfg.to_dict()))
    train_cmd = ["train", "--config", str(tmp_path / "c.json"), "--no-progress"]
    generate = ["generate", "--run", str(run), "--prompt", "Once", "--max-new-tokens", "2"]
    export = ["export", "--run", str(run), "--to", "hf", str(tmp_path / "hf")]
    assert main(train_cmd) == 0
    vocab = {i: bytes([i]) for i in range(256)} | {256: b"<|endoftext|>"}  # the byte ids' tokenizer
    save_vocab_merges(vocab, [], run / "vocab.json", run / "merges.txt")
    final = run / "checkpoints" / "step_0000008.pt"
    cut_in_half(final)
    capsys.readouterr()
    for cmd in (generate, export):
        assert main(cmd) == 2
        err = capsys.readouterr().err
        assert err.splitlines() == [f"error: cannot read checkpoint {final}: the file is truncated or corrupt (incomplete zip archive)"]
    assert not (tmp_path / "hf").exists()
    assert main(train_cmd) == 0
    assert capsys.readouterr().err.count("warning: ") == 1
    assert read_checkpoint(final)["iteration"] == 8
    assert main(generate) == 0 and main(export) == 0


def test_token_ids_beyond_the_vocabulary_are_found_before_training(tokens, tmp_path):
    bad = np.zeros(1000, dtype=np.uint16)
    bad[777] = 300
    np.save(tmp_path / "bad.npy", bad)
    with pytest.raises(CS336Error, match="token id 300.*vocab_size=256"):
        train(tiny_config(tmp_path / "bad.npy", tokens[1], tmp_path / "run"), progress=False)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    "data, match",
    [({"train": ""}, "data.train is not set"), ({"train": "nope.npy"}, "not found"), ({"valid": "nope.npy"}, "not found")],
)
def test_missing_data_is_a_clear_error(tokens, tmp_path, data, match):
    with pytest.raises(CS336Error, match=match):
        train(tiny_config(*tokens, tmp_path / "run", data=data), progress=False)


def test_resuming_with_a_different_model_is_refused(tokens, tmp_path):
    train(tiny_config(*tokens, tmp_path / "run", max_steps=4), progress=False)
    with pytest.raises(CS336Error, match="different model"):
        train(tiny_config(*tokens, tmp_path / "run", max_steps=8, model={"d_model": 64}), progress=False)


def test_wall_clock_budget_ends_the_run_at_the_budget_with_the_minimum_lr(tokens, tmp_path):
    budget_s = 3.0
    cfg = tiny_config(*tokens, tmp_path / "run", max_minutes=budget_s / 60, eval_interval=0, checkpoint_interval=0)
    summary = train(cfg, progress=False)
    recs = [r for r in read_log(tmp_path / "run" / "log.jsonl") if "lr" in r]
    assert summary["status"] == "finished" and [r["step"] for r in recs] == list(range(1, summary["step"] + 1))
    # stopped at the first step past the budget (wall_s is logged rounded to 0.1 ms: < may read as =)
    assert recs[-2]["wall_s"] <= budget_s <= recs[-1]["wall_s"]
    o = cfg.optim
    after_warmup = [r["lr"] for r in recs if r["step"] > o.warmup_iters]
    assert all(a >= b for a, b in zip(after_warmup, after_warmup[1:]))  # cosine decays monotonically
    # The cosine runs on the clock: each update's lr is the cosine at the time its step started
    # (the previous record's wall_s: no evaluation re-reads the clock between them), from the end
    # of the warm-up to the budget, where it is min_lr.
    # Exact whatever the machine's speed: a slow step moves the time, not the agreement.
    t_warm = recs[o.warmup_iters - 2]["wall_s"]  # the start of step `warmup_iters`
    for prev, rec in zip(recs[o.warmup_iters - 2 :], recs[o.warmup_iters - 1 :]):
        frac = min(1.0, (prev["wall_s"] - t_warm) / (budget_s - t_warm))
        expected = o.min_lr + 0.5 * (o.lr - o.min_lr) * (1 + math.cos(math.pi * frac))
        assert rec["lr"] == pytest.approx(expected, abs=1e-3 * o.lr), rec  # wall_s is logged to 0.1 ms
    if recs[-1]["wall_s"] - recs[-2]["wall_s"] < 0.05 * budget_s:  # the usual case: a step takes ms
        assert after_warmup[-1] == pytest.approx(o.min_lr, rel=0.2)  # so the last update is at min_lr
    assert checkpoint_paths(tmp_path / "run")[-1].name == f"step_{summary['step']:07d}.pt"


def test_cli_train_runs_a_config_with_overrides(tokens, tmp_path, capsys):
    cfg = tiny_config(*tokens, tmp_path / "unused", max_steps=3)
    (tmp_path / "c.json").write_text(json.dumps(cfg.to_dict()))
    assert main(["train", "--config", str(tmp_path / "c.json"), "--set", "max_steps=4", "--run-dir", str(tmp_path / "r"), "--no-progress"]) == 0
    assert "finished step 4" in capsys.readouterr().out
    assert json.loads((tmp_path / "r" / "summary.json").read_text())["step"] == 4


def test_cli_train_reports_a_bad_key_in_one_line(tmp_path, capsys):
    (tmp_path / "c.toml").write_text("max_steps = 1\n[optim]\nlearning_rate = 1\n")
    assert main(["train", "--config", str(tmp_path / "c.toml")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: unknown config key optim.learning_rate") and err.count("\n") == 1


def test_wandb_receives_every_record_when_enabled(tokens, tmp_path, monkeypatch):
    import types

    seen = {"init": None, "log": [], "finished": False}
    fake = types.ModuleType("wandb")
    run = types.SimpleNamespace(log=lambda d, step=None: seen["log"].append((step, d)), finish=lambda: seen.update(finished=True))
    fake.init = lambda **kw: seen.update(init=kw) or run
    monkeypatch.setitem(sys.modules, "wandb", fake)
    cfg = tiny_config(*tokens, tmp_path / "run", max_steps=4, wandb=True, wandb_project="p")
    train(cfg, progress=False)
    assert seen["init"]["project"] == "p" and seen["init"]["config"] == cfg.to_dict() and seen["finished"]
    logged = read_log(tmp_path / "run" / "log.jsonl")
    assert [(r["step"], {k: v for k, v in r.items() if k != "step"}) for r in logged] == seen["log"]


def test_wandb_enabled_without_the_package_is_a_clear_error(tokens, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "wandb", None)  # import wandb -> ImportError
    with pytest.raises(CS336Error, match="wandb package is not installed"):
        train(tiny_config(*tokens, tmp_path / "run", max_steps=2, wandb=True), progress=False)
    assert not (tmp_path / "run").exists()  # refused before anything was written


def test_ctrl_c_marks_the_run_interrupted_and_a_rerun_finishes_it_identically(tokens, tmp_path, monkeypatch):
    reference = tiny_config(*tokens, tmp_path / "reference", max_steps=12)
    train(reference, progress=False)
    real_step = trainer_module._Trainer.train_step

    def interrupt_at_7(self, lr):
        if self.state.step == 6:
            raise KeyboardInterrupt
        return real_step(self, lr)

    cfg = tiny_config(*tokens, tmp_path / "run", max_steps=12)
    monkeypatch.setattr(trainer_module._Trainer, "train_step", interrupt_at_7)
    with pytest.raises(KeyboardInterrupt):
        train(cfg, progress=False)
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["status"] == "interrupted"
    monkeypatch.setattr(trainer_module._Trainer, "train_step", real_step)
    assert train(cfg, progress=False)["status"] == "finished"
    assert losses(tmp_path / "run") == losses(tmp_path / "reference")


def test_a_muon_run_resumes_exactly_and_keeps_its_optimizer(tokens, tmp_path):
    """optim.name = "muon" trains through the same loop; a run stopped after 6 steps and resumed
    gives the uninterrupted run's losses, and resuming it with AdamW is refused."""
    muon = {"name": "muon", "muon_lr": 0.02}
    straight = tiny_config(*tokens, tmp_path / "a", max_steps=12, checkpoint_interval=6, optim=muon)
    assert train(straight, progress=False)["status"] == "finished"
    split = tiny_config(*tokens, tmp_path / "b", max_steps=12, checkpoint_interval=6, optim=muon)
    assert train(split, progress=False, stop_after=6)["status"] == "stopped"
    with pytest.raises(CS336Error, match="optim.name='muon'"):
        train(tiny_config(*tokens, tmp_path / "b", max_steps=12, checkpoint_interval=6), progress=False)
    train(split, progress=False)
    assert losses(tmp_path / "b") == losses(tmp_path / "a") and len(losses(tmp_path / "a")) == 12


def test_eval_all_is_the_mean_loss_over_every_non_overlapping_validation_window(tokens, tmp_path):
    """With eval_all the validation loss is the same for every seed's run of one model: the mean
    cross-entropy over windows 0..L, L..2L, ... of the whole validation file, computed here by hand
    from the final checkpoint."""
    cfg = tiny_config(*tokens, tmp_path / "run", max_steps=6, eval_interval=0, checkpoint_interval=0, eval_all=True,
                      eval_batches=0, batch_size=8, model={"fused": False})
    summary = train(cfg, progress=False)
    model, _ = load_run_model(tmp_path / "run")
    valid, L = np.load(tokens[1]), cfg.model.context_length
    starts = range(0, len(valid) - L, L)
    x = torch.from_numpy(np.stack([valid[s : s + L] for s in starts]).astype(np.int64))
    y = torch.from_numpy(np.stack([valid[s + 1 : s + L + 1] for s in starts]).astype(np.int64))
    with torch.no_grad():
        by_hand = sum(cross_entropy(model(x[i : i + 64]), y[i : i + 64]).double().item() * len(x[i : i + 64])
                      for i in range(0, len(x), 64)) / len(x)
    assert len(x) % cfg.batch_size != 0  # a short last batch is counted by its windows
    assert summary["val_loss"] == pytest.approx(by_hand, rel=1e-6)
