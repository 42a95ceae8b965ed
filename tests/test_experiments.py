"""Sweeps, run loading and figures, on synthetic run directories written in the trainer's format."""

from __future__ import annotations

import json
import math
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest

from cs336.cli import main
from cs336.errors import CS336Error
from cs336.experiments import sweeps
from cs336.experiments.cpu import committed_config, live_run
from cs336.experiments.plots import FIGURES, make_figures
from cs336.experiments.runs import flatten, load_runs, summarize_runs, swept_keys
from cs336.experiments.sweeps import expand, load_sweep, run_sweep
from cs336.runs import write_summary
from cs336.training.runlog import read_log


def write_run(run_dir: Path, config: dict, losses: list[float], *, status: str | None = "finished", eval_every: int = 2) -> None:
    """A run directory as the trainer writes it: config.json, log.jsonl, summary.json."""
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.json").write_text(json.dumps(config))
    lines = []
    for i, loss in enumerate(losses, start=1):
        rec = {"step": i, "tokens": 128 * i, "wall_s": 0.5 * i, "lr": config["optim"]["lr"], "train_loss": loss, "grad_norm": 1.0, "tokens_per_s": 256.0}
        lines.append(json.dumps(rec))
        if i % eval_every == 0:
            lines.append(json.dumps({"step": i, "tokens": 128 * i, "wall_s": 0.5 * i, "val_loss": loss + 0.1, "val_ppl": math.exp(loss + 0.1)}))
    (run_dir / "log.jsonl").write_text("\n".join(lines) + "\n")
    if status:
        (run_dir / "summary.json").write_text(json.dumps({"status": status}))


def cfg(lr: float, batch_size: int = 8, **model) -> dict:
    m = {"vocab_size": 256, "context_length": 16, "d_model": 32, "num_layers": 2, "num_heads": 2, "d_ff": 64, "norm": "pre", "position": "rope", "ffn": "swiglu"}
    return {"model": {**m, **model}, "optim": {"lr": lr, "betas": [0.9, 0.95]}, "batch_size": batch_size, "seed": 0}


# --------------------------------------------------------------------------- runs → DataFrame
def test_flatten_gives_dotted_keys_and_keeps_lists_as_values():
    assert flatten({"a": {"b": {"c": 1}, "d": [1, 2]}, "e": "x"}) == {"a.b.c": 1, "a.d": [1, 2], "e": "x"}


def test_load_runs_has_one_row_per_record_with_config_status_and_kind(tmp_path):
    write_run(tmp_path / "lr=0.001", cfg(1e-3), [5.0, 4.0, 3.0, 2.5])
    write_run(tmp_path / "lr=0.1", cfg(1e-1), [5.0, 9.0], status="diverged")
    df = load_runs(tmp_path)
    assert len(df) == (4 + 2) + (2 + 1)
    assert set(df["run"]) == {"lr=0.001", "lr=0.1"}
    first = df[df["run"] == "lr=0.001"]
    assert (first["optim.lr"] == 1e-3).all() and (first["model.d_model"] == 32).all()
    assert first["optim.betas"].iloc[0] == [0.9, 0.95]
    assert list(first["kind"]) == ["train", "train", "eval", "train", "train", "eval"]
    assert first.loc[first["kind"] == "eval", "val_loss"].tolist() == pytest.approx([4.1, 2.6])
    assert df.loc[df["run"] == "lr=0.1", "status"].unique().tolist() == ["diverged"]


def test_load_runs_marks_a_run_without_summary_as_running(tmp_path):
    write_run(tmp_path / "a", cfg(1e-3), [3.0], status=None, eval_every=1)
    assert load_runs(tmp_path)["status"].unique().tolist() == ["running"]


def test_load_runs_on_an_empty_or_missing_folder_is_a_clear_error(tmp_path):
    with pytest.raises(CS336Error, match="no runs"):
        load_runs(tmp_path)
    with pytest.raises(CS336Error, match="no such run folder"):
        load_runs(tmp_path / "missing")


def test_summarize_runs_reports_final_best_and_divergence(tmp_path):
    write_run(tmp_path / "ok", cfg(1e-3), [5.0, 3.0, 4.0, 3.5])
    write_run(tmp_path / "nan", cfg(1e-1), [5.0, 4.0, float("nan"), float("nan")], status="finished")
    s = summarize_runs(load_runs(tmp_path)).set_index("run")
    assert s.loc["ok", "final_val_loss"] == pytest.approx(3.6)
    assert s.loc["ok", "best_val_loss"] == pytest.approx(3.1)
    assert s.loc["ok", "steps"] == 4 and not s.loc["ok", "diverged"]
    # a NaN loss means divergence even when the status does not say so
    assert s.loc["nan", "diverged"] and math.isnan(s.loc["nan", "final_val_loss"])
    assert s.loc["nan", "last_finite_val_loss"] == pytest.approx(4.1)
    assert swept_keys(s.reset_index()) == ["optim.lr"]


# --------------------------------------------------------------------------- sweep files
def test_expand_is_the_grid_product_in_order_then_the_explicit_points():
    pts = expand({"optim": {"lr": [1e-3, 1e-2]}, "data.batch_size": [8, 64]}, [{"name": "extra", "model.norm": "none"}], {})
    assert [p.name for p in pts] == [
        "batch_size=8__lr=0.001", "batch_size=64__lr=0.001", "batch_size=8__lr=0.01", "batch_size=64__lr=0.01", "extra",
    ]
    # the product varies the last-written key fastest, like nested loops
    assert [p.overrides for p in pts[:4]] == [
        {"optim.lr": 1e-3, "data.batch_size": 8}, {"optim.lr": 1e-3, "data.batch_size": 64},
        {"optim.lr": 1e-2, "data.batch_size": 8}, {"optim.lr": 1e-2, "data.batch_size": 64},
    ]
    assert pts[0].name == "batch_size=8__lr=0.001" and pts[-1].name == "extra"
    assert pts[-1].overrides == {"model.norm": "none"}


def test_name_keys_choose_which_swept_values_name_a_point():
    pts = expand({}, [{"batch_size": 1, "optim.lr": 0.01, "eval_batches": 128}, {"batch_size": 64, "optim.lr": 0.01, "eval_batches": 2}], {}, ["batch_size", "optim.lr"])
    assert [p.name for p in pts] == ["batch_size=1__lr=0.01", "batch_size=64__lr=0.01"]
    with pytest.raises(CS336Error, match="share a name"):
        expand({}, [{"batch_size": 1, "eval_batches": 128}, {"batch_size": 1, "eval_batches": 2}], {}, ["batch_size"])


def test_point_names_use_the_full_key_when_last_parts_clash():
    pts = expand({"model.d_ff": [64], "other.d_ff": [32]}, [], {})
    assert pts[0].name == "model.d_ff=64__other.d_ff=32"


@pytest.mark.parametrize(
    "grid, points, shared, message",
    [
        ({"optim.lr": []}, [], {}, "non-empty list"),
        ({"optim.lr": 0.1}, [], {}, "non-empty list"),
        ({}, [], {}, "no points"),
        ({}, [{"optim.lr": 0.1}, {"optim.lr": 0.1}], {}, "share a name"),
        ({"optim.lr": [0.1]}, [], {"optim.lr": 0.2}, "both set"),
    ],
)
def test_expand_rejects_bad_grids(grid, points, shared, message):
    with pytest.raises(CS336Error, match=message):
        expand(grid, points, shared)


def sweep_file(tmp_path: Path, body: str) -> Path:
    (tmp_path / "base.toml").write_text("seed = 0\nmax_steps = 3\n")
    path = tmp_path / "sweep.toml"
    path.write_text(textwrap.dedent(body))
    return path


def test_load_sweep_resolves_base_relative_to_the_file(tmp_path):
    path = sweep_file(tmp_path, """
        [sweep]
        name = "t"
        base = "base.toml"
        scale = "cpu"
        [set]
        "optim.max_steps" = 3
        [grid]
        "optim.lr" = [0.001, 0.01]
    """)
    s = load_sweep(path, out_dir=tmp_path / "runs")
    assert s.base == (tmp_path / "base.toml").resolve() and s.scale == "cpu"
    assert s.overrides(s.points[1]) == {"optim.max_steps": 3, "optim.lr": 0.01, "run_dir": str(tmp_path / "runs" / "lr=0.01")}


def test_seeds_repeat_every_point_once_per_seed(tmp_path):
    path = sweep_file(tmp_path, """
        [sweep]
        base = "base.toml"
        seeds = [0, 1]
        [grid]
        "optim.lr" = [0.001, 0.01]
        [[points]]
        name = "nope"
        "model.position" = "nope"
    """)
    s = load_sweep(path, out_dir=tmp_path / "runs")
    assert [p.name for p in s.points] == ["lr=0.001__seed=0", "lr=0.001__seed=1", "lr=0.01__seed=0", "lr=0.01__seed=1",
                                          "nope__seed=0", "nope__seed=1"]
    assert s.points[-1].overrides == {"model.position": "nope", "seed": 1}


@pytest.mark.parametrize(
    "body, message",
    [
        ('[sweep]\nbase = "base.toml"\nlr = 1\n[grid]\na = [1]\n', r"unknown \[sweep\] key\(s\) lr; valid: name, base"),
        ('[sweep]\nbase = "base.toml"\nseeds = []\n[grid]\na = [1]\n', "seeds must be a non-empty list"),
        ('[sweep]\nbase = "base.toml"\nseeds = [0, 0]\n[grid]\na = [1]\n', "repeat a seed"),
        ('[sweep]\nbase = "base.toml"\nseeds = [0, 1]\n[grid]\nseed = [1]\n', "cannot be combined"),
        ('[sweep]\nbase = "base.toml"\n[grids]\na = [1]\n', "unknown section"),
        ('[sweep]\nname = "x"\n[grid]\na = [1]\n', "needs `base`"),
        ('[sweep]\nbase = "nope.toml"\n[grid]\na = [1]\n', "not found"),
        ('[sweep\n', "invalid TOML"),
    ],
)
def test_load_sweep_rejects_bad_files_with_one_line(tmp_path, body, message):
    with pytest.raises(CS336Error, match=message):
        load_sweep(sweep_file(tmp_path, body))


# --------------------------------------------------------------------------- running sweeps
FAKE_TRAINER = r'''
import json, math, sys
from pathlib import Path
spec = json.loads(sys.argv[1])
o = spec["overrides"]
run = Path(o["run_dir"])
with open(run.parent / "calls.txt", "a") as f:
    f.write(run.name + "\n")
cfg = {"optim": {"lr": o.get("optim.lr", 1e-3)}, "model": {"norm": o.get("model.norm", "pre")}, "run_dir": str(run)}
(run / "config.json").write_text(json.dumps(cfg))
log = run / "log.jsonl"
start = sum(1 for _ in open(log)) if log.exists() else 0   # resume where the log stops
with open(log, "a") as f:
    for step in range(start + 1, 4):
        loss = float("nan") if cfg["optim"]["lr"] > 1 and step > 1 else 3.0 / step
        f.write(json.dumps({"step": step, "tokens": step, "wall_s": step, "train_loss": loss, "val_loss": loss}) + "\n")
if o.get("seed") == 13:
    sys.exit(3)
status = "diverged" if cfg["optim"]["lr"] > 1 else "finished"
(run / "summary.json").write_text(json.dumps({"status": status}))
'''


@pytest.fixture
def fake_trainer(tmp_path, monkeypatch):
    script = tmp_path / "fake_trainer.py"
    script.write_text(FAKE_TRAINER)
    monkeypatch.setattr(sweeps, "point_command", lambda sweep, point: [sys.executable, str(script), json.dumps({"config": str(sweep.base), "overrides": sweep.overrides(point)})])
    return tmp_path


def test_run_sweep_skips_ended_points_resumes_interrupted_ones_and_exports_logs(fake_trainer, tmp_path):
    path = sweep_file(tmp_path, """
        [sweep]
        base = "base.toml"
        out_dir = "OUT"
        [grid]
        "optim.lr" = [0.001, 0.01, 10.0]
    """)
    out = tmp_path / "runs"
    path.write_text(path.read_text().replace('out_dir = "OUT"', f'out_dir = "{out}"\nresults_dir = "{tmp_path / "results"}"'))
    write_run(out / "lr=0.001", cfg(1e-3), [2.0], status="finished")
    (out / "lr=0.01").mkdir(parents=True)
    (out / "lr=0.01" / "log.jsonl").write_text(json.dumps({"step": 1, "train_loss": 3.0, "val_loss": 3.0}) + "\n")

    dry = run_sweep(path, dry_run=True, log=lambda *_: None)
    assert dry == {"lr=0.001": "finished", "lr=0.01": "resume", "lr=10": "pending"}
    assert not (out / "calls.txt").exists()

    states = run_sweep(path, parallel=2, log=lambda *_: None)
    assert states == {"lr=0.001": "finished", "lr=0.01": "finished", "lr=10": "diverged"}
    assert sorted((out / "calls.txt").read_text().split()) == ["lr=0.01", "lr=10"]
    resumed = read_log(out / "lr=0.01" / "log.jsonl")
    assert [r["step"] for r in resumed] == [1, 2, 3]
    assert sorted(p.name for p in (tmp_path / "results").iterdir()) == ["lr=0.01", "lr=10", "sweep.json"]
    assert sorted(p.name for p in (tmp_path / "results" / "lr=10").iterdir()) == ["config.json", "log.jsonl", "summary.json"]
    info = json.loads((tmp_path / "results" / "sweep.json").read_text())
    assert info["points"]["lr=10"] == {"optim.lr": 10.0} and "torch" in info["hardware"]

    # everything has ended now: a second sweep trains nothing
    run_sweep(path, log=lambda *_: None)
    assert len((out / "calls.txt").read_text().split()) == 2


def test_sweep_info_records_the_threads_each_run_uses(tmp_path, monkeypatch):
    """A config's `threads` is what the trainer applies, whatever OMP_NUM_THREADS the sweep sets."""
    path = sweep_file(tmp_path, """
        [sweep]
        base = "base.toml"
        [[points]]
        name = "env"
        [[points]]
        name = "one"
        threads = 1
    """)
    sweep = sweeps.load_sweep(path)
    assert sweeps._threads_per_run(sweep, 2) == {"env": 2, "one": 1}
    (tmp_path / "base.toml").write_text("seed = 0\nmax_steps = 3\nthreads = 1\n")
    assert sweeps._threads_per_run(sweeps.load_sweep(path), 2) == 1


def test_a_failing_point_is_reported_and_the_cli_exits_nonzero(fake_trainer, tmp_path, capsys):
    path = sweep_file(tmp_path, f"""
        [sweep]
        base = "base.toml"
        out_dir = "{tmp_path / 'runs'}"
        [[points]]
        seed = 13
        [[points]]
        seed = 0
    """)
    assert main(["sweep", str(path)]) == 1
    out = capsys.readouterr().out
    assert "seed=13: failed (exit 3)" in out and "seed=0: finished" in out


SLOW_TRAINER = r'''
import json, os, sys, time
from pathlib import Path
run = Path(json.loads(sys.argv[1])["overrides"]["run_dir"])
(run / "pid").write_text(str(os.getpid()))
time.sleep(60)
'''


def test_ctrl_c_stops_the_running_points_and_starts_no_more(tmp_path, monkeypatch):
    import os
    import signal
    import threading
    import time

    script = tmp_path / "slow_trainer.py"
    script.write_text(SLOW_TRAINER)
    monkeypatch.setattr(sweeps, "point_command", lambda sweep, point: [sys.executable, str(script), json.dumps({"overrides": sweep.overrides(point)})])
    path = sweep_file(tmp_path, f"""
        [sweep]
        base = "base.toml"
        out_dir = "{tmp_path / 'runs'}"
        [grid]
        seed = [1, 2, 3]
    """)
    pids = [tmp_path / "runs" / f"seed={s}" / "pid" for s in (1, 2)]

    def ctrl_c_once_two_points_run():
        while not all(p.exists() for p in pids):
            time.sleep(0.05)
        os.kill(os.getpid(), signal.SIGINT)

    threading.Thread(target=ctrl_c_once_two_points_run, daemon=True).start()
    started = time.time()
    with pytest.raises(KeyboardInterrupt):
        run_sweep(path, parallel=2, log=lambda *_: None)
    assert time.time() - started < 30  # the 60-second points were stopped, and waited for
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(int(pid.read_text()), 0)
    assert not (tmp_path / "runs" / "seed=3").exists()  # the third point never started


def test_a_point_whose_config_does_not_load_stops_the_sweep_before_training(fake_trainer, tmp_path):
    path = sweep_file(tmp_path, f"""
        [sweep]
        base = "base.toml"
        out_dir = "{tmp_path / 'runs'}"
        [grid]
        "optim.lr" = [0.01]
        "model.nrom" = ["none"]
    """)
    with pytest.raises(CS336Error, match="sweep point nrom=none__lr=0.01: unknown config key model.nrom"):
        run_sweep(path, log=lambda *_: None)
    assert not (tmp_path / "runs").exists()


def test_cli_sweep_reports_bad_input_as_one_line(tmp_path, capsys):
    assert main(["sweep", str(tmp_path / "missing.toml")]) == 2
    assert capsys.readouterr().err.strip() == f"error: no such sweep file: {tmp_path / 'missing.toml'}"
    path = sweep_file(tmp_path, '[sweep]\nbase = "base.toml"\n[grid]\nseed = [1]\n')
    with pytest.raises(SystemExit) as exit_info:  # a usage mistake, caught while parsing the arguments
        main(["sweep", str(path), "--parallel", "0"])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.strip() == "error: argument --parallel: must be at least 1, got 0 (see `cs336 sweep --help`)"
    with pytest.raises(CS336Error, match="--parallel must be at least 1, got 0"):  # the function checks it too
        run_sweep(path, parallel=0)


# --------------------------------------------------------------------------- figures
def synthetic_results(root: Path) -> None:
    for lr, losses, status in [(1e-3, [5, 4, 3.5, 3.2], "finished"), (1e-2, [5, 3.5, 3, 2.8], "finished"), (1e-1, [5, 8, float("nan"), float("nan")], "diverged")]:
        write_run(root / "lr_cpu" / f"lr={lr:g}", cfg(lr), losses, status=status)
    for bs in (1, 8, 64):
        for lr in (1e-3, 1e-2):
            write_run(root / "batch_size_cpu" / f"bs={bs}__lr={lr:g}", cfg(lr, bs), [5, 4, 3 + bs / 100 + lr * 10])
    for name, lr, model in [("base_lr=0.01", 1e-2, {}), ("base_lr=0.001", 1e-3, {}), ("nonorm_lr=0.01", 1e-2, {"norm": "none"}), ("nonorm_lr=0.001", 1e-3, {"norm": "none"}),
                            ("post", 1e-2, {"norm": "post"}), ("nope", 1e-2, {"position": "nope"}), ("silu", 1e-2, {"ffn": "silu"})]:
        write_run(root / "ablations_cpu" / name, cfg(lr, **model), [5, 4, 3.5], status="diverged" if name == "nonorm_lr=0.01" else "finished")
    for sweep, seeds in (("leaderboard_track_cpu", (0, 1, 2)), ("leaderboard_screen_cpu", (0,))):
        for condition, shift in (("baseline", 0.0), ("muon", -0.1), ("softcap", 0.02)):
            for seed in seeds:
                run = root / sweep / f"{condition}__seed={seed}"
                write_run(run, {**cfg(3e-3), "seed": seed}, [5, 4, 3 + shift + seed / 100, 2.9 + shift + seed / 100], status=None)
                write_summary(run, {"status": "finished", "val_loss": 3.0 + shift + seed / 100, "step": 4, "wall_s": 2.0,
                                    "code": {"commit": "abcdef0123"}})
    for lr, losses, status in [(1e-2, [6, 5, 4.5, 4.4], "finished"), (1e-1, [6, 9, float("nan"), float("nan")], "diverged")]:
        write_run(root / "owt_cpu" / f"lr={lr:g}", cfg(lr), losses, status=status)
    (root / "lr_cpu" / "sweep.json").write_text(json.dumps({"name": "lr_cpu", "scale": "cpu", "base": "tinystories_cpu.toml", "hardware": "test cpu"}))


def test_make_figures_draws_every_figure_as_png_and_svg_reproducibly(tmp_path):
    synthetic_results(tmp_path / "results")
    paths = make_figures(tmp_path / "results", tmp_path / "figures", log=lambda *_: None)
    assert sorted(p.name for p in paths) == sorted(f"{n}.{ext}" for n in FIGURES for ext in ("png", "svg"))
    first = {p.name: p.read_bytes() for p in paths}
    svg = first["06_lr_sweep.svg"].decode()
    assert "scale: cpu" in svg and "test cpu" in svg and "diverged" in svg
    again = make_figures(tmp_path / "results", tmp_path / "figures", log=lambda *_: None)
    assert {p.name: p.read_bytes() for p in again} == first


def test_make_figures_skips_missing_results(tmp_path):
    said = []
    assert make_figures(tmp_path / "nothing", tmp_path / "figures", log=said.append) == []
    assert len(said) == len(FIGURES) and all(s.startswith("skip") for s in said)


# --------------------------------------------------------------------------- with the real trainer
@pytest.mark.slow
def test_a_real_sweep_trains_each_point_and_marks_the_divergent_one(tmp_path):
    """Two tiny points through the real trainer in subprocesses: a sane rate finishes, a rate past
    AdamW's decay-step bound (lr·λ > 2) diverges, and the logs load."""
    from cs336.experiments.tiny import tiny_overrides

    base = tmp_path / "tiny.toml"
    o = dict(item.split("=", 1) for item in tiny_overrides(tmp_path / "data", "unused"))
    o.pop("run_dir")
    top = {k: v for k, v in o.items() if "." not in k}
    tables: dict[str, list[str]] = {}
    for k, v in o.items():
        if "." in k:
            t, key = k.split(".")
            tables.setdefault(t, []).append(f"{key} = {v}")
    text = "\n".join(f"{k} = {v}" for k, v in top.items()) + "\n"
    text += "".join(f"\n[{t}]\n" + "\n".join(lines) + "\n" for t, lines in tables.items())
    base.write_text(text.replace("max_steps = 60", "max_steps = 20"))
    path = tmp_path / "sweep.toml"
    path.write_text(f'[sweep]\nbase = "tiny.toml"\nout_dir = "{tmp_path / "runs"}"\n[grid]\n"optim.lr" = [3e-2, 100.0]\n')
    assert run_sweep(path, parallel=2, log=lambda *_: None) == {"lr=0.03": "finished", "lr=100": "diverged"}
    s = summarize_runs(load_runs(tmp_path / "runs")).set_index("run")
    assert s.loc["lr=0.03", "steps"] == 20 and s.loc["lr=0.03", "final_val_loss"] < 4.0
    assert s.loc["lr=100", "diverged"] and s.loc["lr=100", "steps"] < 20


# --------------------------------------------------------------------------- write-up export
def test_writeup_joins_the_numbered_notebooks_in_order_with_figures_inlined(tmp_path):
    nbformat = pytest.importorskip("nbformat")
    pytest.importorskip("nbconvert")
    from cs336.experiments.writeup import export_writeup

    import matplotlib.pyplot as plt

    (tmp_path / "figures").mkdir()
    fig, ax = plt.subplots()
    ax.plot([0, 1])
    fig.savefig(tmp_path / "figures" / "f.png")
    plt.close(fig)
    nbs = tmp_path / "notebooks"
    nbs.mkdir()
    for name, text in [("02_b.ipynb", "# Second"), ("01_a.ipynb", "# First\n\n![plot](../figures/f.png)"), ("scratch.ipynb", "# Not a chapter")]:
        nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell(text)]), nbs / name)
    html = export_writeup(nbs, tmp_path / "out" / "writeup.html").read_text()
    assert html.index("First") < html.index("Second") and "Not a chapter" not in html
    assert "data:image/png;base64," in html


def test_writeup_without_notebooks_is_a_clear_error(tmp_path):
    from cs336.experiments.writeup import export_writeup

    with pytest.raises(CS336Error, match="no numbered notebooks"):
        export_writeup(tmp_path)


# --------------------------------------------------------------------------- live reruns of committed points
@pytest.mark.slow
def test_live_run_reruns_a_committed_point_with_overrides(tmp_path):
    summary = live_run("lr_cpu", tmp_path, "max_steps=30", "threads=1", "eval_interval=10", point="lr=0.1")
    assert summary["status"] == "finished" and summary["step"] == 30
    base = committed_config("lr_cpu", "lr=0.1")
    assert summary["parameters"] == 356_672 and base.optim.lr == 0.1
    assert (tmp_path / "tinystories_cpu" / "train.npy").is_file()  # made once, beside the runs
    with pytest.raises(CS336Error, match="has no point 'lr=7'"):
        live_run("lr_cpu", tmp_path, point="lr=7")


@pytest.mark.parametrize("path", sorted((Path(__file__).parents[1] / "configs" / "sweeps").glob("*.toml")), ids=lambda p: p.stem)
def test_every_committed_sweep_file_loads_with_valid_points(path):
    """A sweep file names its points' configs by overrides; a typo in a key or a bad value would
    only show when that point's turn comes, hours into a sweep."""
    sweep = load_sweep(path)
    sweeps.check_points(sweep)
    assert sweep.points and len({p.name for p in sweep.points}) == len(sweep.points)


def test_the_track_table_compares_each_condition_with_the_baseline_by_seed(tmp_path):
    """Mean ± sd over seeds, and the paired t-test against the baseline on the seeds both have; a run
    that has not ended is left out."""
    from cs336.experiments.records import track_table
    from cs336.experiments.stats import paired_t_test
    from cs336.runs import write_summary

    losses = {"baseline": [3.10, 3.05, 3.12], "muon": [3.00, 2.97, 3.05]}
    for condition, values in losses.items():
        for seed, loss in enumerate(values):
            run = tmp_path / f"{condition}__seed={seed}"
            run.mkdir()
            (run / "config.json").write_text("{}")
            write_summary(run, {"status": "finished", "val_loss": loss, "step": 100 + seed, "wall_s": 600.0,
                                "code": {"commit": "abcdef0123"}})
    (tmp_path / "muon__seed=3").mkdir()
    (tmp_path / "muon__seed=3" / "config.json").write_text("{}")  # still running: no summary
    table = track_table(tmp_path)
    assert list(table.index) == ["baseline", "muon"] and table.loc["muon", "seeds"] == 3
    assert table.loc["muon", "mean"] == pytest.approx(sum(losses["muon"]) / 3)
    expected = paired_t_test(losses["baseline"], losses["muon"])
    assert table.loc["muon", "vs baseline"] == pytest.approx(expected.mean_diff) and table.loc["muon", "p"] == pytest.approx(expected.p)
    assert table.loc["baseline", "steps"] == 101 and table.loc["baseline", "commit"] == "abcdef0"


@pytest.mark.parametrize("make", [lambda p: p / "missing", lambda p: p], ids=["missing folder", "no ended runs"])
def test_the_track_table_of_nothing_is_one_error_line(tmp_path, make, capsys):
    from cs336.experiments.records import main as records_main

    with pytest.raises(SystemExit) as exit_info:
        records_main([str(make(tmp_path))])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and err.startswith("error: ") and err.count("\n") == 1


def test_the_cpu_record_config_is_the_track_point_it_was_measured_as():
    """configs/leaderboard_cpu.toml is the track's point of the newest record: editing one without
    the other would make the record table describe a config nobody measured."""
    from cs336.experiments.records import CPU_RECORDS
    from cs336.experiments.sweeps import point_config
    from cs336.paths import CONFIGS_DIR
    from cs336.training.config import load_config

    sweep = load_sweep(CONFIGS_DIR / "sweeps" / "leaderboard_track_cpu.toml")
    point = next(p for p in sweep.points if p.name == f"{CPU_RECORDS[-1]}__seed=0")
    measured = point_config(sweep.base, sweep.overrides(point)).to_dict()
    record = load_config(CONFIGS_DIR / "leaderboard_cpu.toml").to_dict()
    assert {k: v for k, v in measured.items() if k != "run_dir"} == {k: v for k, v in record.items() if k != "run_dir"}
