"""An ensemble run (`ensemble = K`) is its members trained alone, and its loss is that of the mean
of their distributions, computed here the slow, obvious way."""

import dataclasses
import json
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from cs336.cli import main
from cs336.errors import CS336Error
from cs336.experiments.sweeps import export_run
from cs336.experiments.tiny import byte_tokens
from cs336.runs import checkpoint_paths, find_runs, load_run_model
from cs336.training.checkpoint import read_checkpoint
from cs336.training.ensemble import member_config
from cs336.training.runlog import read_log
from cs336.training.trainer import train, validation_batches
from engine_fixtures import subprocess_env, tiny_config

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def tokens(tmp_path_factory):
    return byte_tokens(tmp_path_factory.mktemp("tokens"))


@pytest.fixture(scope="module")
def ensemble(tokens, tmp_path_factory):
    root = tmp_path_factory.mktemp("ensemble")
    cfg = tiny_config(*tokens, root / "run", max_steps=12, eval_interval=6, eval_all=True, seed=3, ensemble=2, threads=2)
    return cfg, train(cfg, progress=False)


def mixture_loss(models, batches) -> float:
    """−log of the mean of the models' probabilities of each target: softmax, average, log."""
    nll, n = 0.0, 0
    with torch.no_grad():
        for x, y in batches:
            p = sum(torch.softmax(m(x).double(), dim=-1) for m in models) / len(models)
            nll -= p.gather(-1, y.unsqueeze(-1)).log().sum().item()
            n += y.numel()
    return nll / n


def test_members_are_runs_of_their_own_seeds_and_threads(ensemble, tmp_path):
    cfg, summary = ensemble
    members = [member_config(cfg, k) for k in range(2)]
    assert [m.seed for m in members] == [6, 7] and [m.threads for m in members] == [1, 1]
    assert all(m.ensemble == 1 and m.resolved_run_dir() == cfg.resolved_run_dir() / f"member_{k}" for k, m in enumerate(members))
    # each member is exactly the single run of its config, trained alone
    alone = dataclasses.replace(members[1], run_dir=str(tmp_path / "alone"))
    single = train(alone, progress=False)
    assert single["val_loss"] == summary["members"][1]["val_loss"]
    ours, theirs = (read_checkpoint(checkpoint_paths(d)[-1])["model"] for d in (members[1].resolved_run_dir(), tmp_path / "alone"))
    assert all(torch.equal(ours[k], theirs[k]) for k in ours)


def test_the_ensemble_loss_is_the_mixture_of_the_members_distributions(ensemble, tokens):
    cfg, summary = ensemble
    models = [load_run_model(member_config(cfg, k).resolved_run_dir())[0] for k in range(2)]
    valid = np.load(tokens[1], mmap_mode="r")
    expected = mixture_loss(models, validation_batches(valid, cfg))
    assert summary["val_loss"] == pytest.approx(expected, rel=1e-12)
    # each member's own loss as its trainer logged it (float32 on the fused path)
    assert summary["member_val_loss"] == pytest.approx([m["val_loss"] for m in summary["members"]], abs=1e-5)
    assert summary["val_loss"] <= np.mean(summary["member_val_loss"])  # −log is convex


def test_the_ensemble_run_directory(ensemble):
    cfg, summary = ensemble
    run = cfg.resolved_run_dir()
    assert summary["status"] == "finished" and summary["ensemble"] == 2 and summary["member_steps"] == [12, 12]
    assert summary["step"] == 12 and summary["tokens"] == 2 * 12 * cfg.tokens_per_step
    assert summary["parameters"] == sum(m["parameters"] for m in summary["members"])
    assert summary["code"]["threads"] == 1 and summary["code"]["commit"]
    assert json.loads((run / "summary.json").read_text()) == summary
    (record,) = read_log(run / "log.jsonl")
    assert record["val_loss"] == summary["val_loss"] and record["member_val_loss"] == summary["member_val_loss"]
    assert json.loads((run / "config.json").read_text()) == cfg.to_dict()
    assert find_runs(run) == [run] and find_runs(run, members=True) == [run, run / "member_0", run / "member_1"]


def test_an_ended_ensemble_reruns_to_the_same_summary(ensemble):
    cfg, summary = ensemble
    again = train(cfg, progress=False)  # every member resumes from its last checkpoint: nothing trains
    kept = ("status", "step", "tokens", "val_loss", "member_steps", "member_val_loss", "parameters")
    assert {k: again[k] for k in kept} == {k: summary[k] for k in kept}


def test_export_copies_the_members_small_files(ensemble, tmp_path):
    cfg, _ = ensemble
    export_run(cfg.resolved_run_dir(), tmp_path / "out")
    names = sorted(p.relative_to(tmp_path / "out").as_posix() for p in (tmp_path / "out").rglob("*") if p.is_file())
    assert names == sorted(f"{d}{f}" for d in ("", "member_0/", "member_1/") for f in ("config.json", "log.jsonl", "summary.json"))


def test_a_stopped_member_stops_the_ensemble(tokens, tmp_path):
    cfg = tiny_config(*tokens, tmp_path / "run", max_steps=12, ensemble=2)
    summary = train(cfg, progress=False, stop_after=4)
    assert summary["status"] == "stopped" and "member 0" in summary["message"] and summary["val_loss"] is None
    assert summary["member_steps"] == [4, 4] and not (tmp_path / "run" / "log.jsonl").exists()


@pytest.mark.parametrize("settings, message", [
    ({"ensemble": 0}, "ensemble=0 must be at least 1"),
    ({"ensemble": 2, "device": "cuda"}, "trains its members as CPU processes"),
])
def test_bad_ensemble_settings_are_refused(tokens, tmp_path, settings, message):
    with pytest.raises(CS336Error, match=message):
        train(tiny_config(*tokens, tmp_path / "run", max_steps=2, **settings), progress=False)


def test_cs336_train_reports_the_ensemble_and_its_members(tokens, tmp_path, capsys):
    cfg = tiny_config(*tokens, tmp_path / "run", max_steps=3, ensemble=2)
    (tmp_path / "config.toml").write_text(cfg.to_toml())
    assert main(["train", "--config", str(tmp_path / "config.toml"), "--no-progress"]) == 0
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    out = capsys.readouterr().out
    assert f"finished: 2 members, 3 and 3 steps ({2 * 3 * cfg.tokens_per_step:,} tokens in all" in out
    assert f"val_loss {summary['val_loss']:.4f} (the members alone: {summary['member_val_loss'][0]:.4f}, " in out


def test_an_interrupt_of_the_parent_alone_stops_the_members(tokens, tmp_path):
    cfg = tiny_config(*tokens, tmp_path / "run", max_steps=20_000, checkpoint_interval=5, eval_interval=0, ensemble=2)
    (tmp_path / "config.json").write_text(json.dumps(cfg.to_dict()))
    cmd = [sys.executable, "-m", "cs336", "train", "--config", str(tmp_path / "config.json"), "--no-progress"]
    proc = subprocess.Popen(cmd, env=subprocess_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    logs = [tmp_path / "run" / f"member_{k}" / "log.jsonl" for k in range(2)]
    deadline = time.time() + 120
    # until both members have saved a checkpoint (an interrupted run keeps the last one it saved)
    while not all(checkpoint_paths(p.parent) for p in logs) and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)  # to the parent only, not its process group
    assert proc.wait(timeout=60) == 130
    err = proc.stderr.read().decode()
    assert all((p.parent / "summary.json").exists() for p in logs), err
    summaries = [json.loads((p.parent / "summary.json").read_text()) for p in logs]
    assert [s["status"] for s in summaries] == ["interrupted", "interrupted"] and all(s["step"] < 20_000 for s in summaries)
    assert not (tmp_path / "run" / "summary.json").exists()  # the ensemble did not end: a rerun resumes its members
    assert all(checkpoint_paths(p.parent) for p in logs)
