import pytest

from cs336.cli import main
from cs336.training.runlog import read_log

pytestmark = pytest.mark.usefixtures("one_thread")


def test_demo_runs_end_to_end_and_leaves_a_run_that_generate_can_load(tmp_path, capsys):
    # the real pipeline, shrunk: a 300-token BPE on 300 kB, a few seconds of training
    from cs336.demo import run_demo

    out = run_demo(tmp_path / "demo", vocab_size=300, max_train_bytes=300_000, max_valid_bytes=100_000,
                   overrides=["max_minutes=0.08", "batch_size=8", "model.context_length=64", "eval_interval=10"],
                   max_new_tokens=20, progress=False)
    run = tmp_path / "demo" / "run"
    assert out["vocab_size"] == 300 and out["steps"] > 0 and isinstance(out["story"], str)
    assert out["val_loss"] < out["first_val_loss"] - 0.5  # it learned something
    assert {"config.json", "log.jsonl", "summary.json", "vocab.json", "merges.txt", "checkpoints"} <= {p.name for p in run.iterdir()}
    assert [r for r in read_log(run / "log.jsonl") if "val_loss" in r][0]["step"] == 0
    assert "[4/4] train" in capsys.readouterr().out
    # the run directory is complete: `cs336 generate` samples from it
    assert main(["generate", "--run", str(run), "--prompt", "Once", "--max-new-tokens", "5"]) == 0
