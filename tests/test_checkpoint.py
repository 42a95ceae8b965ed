"""Checkpoints restore a run exactly and never execute code from the file."""

import io
import pathlib
import signal

import numpy as np
import pytest
import torch

from cs336 import AdamW, TransformerLM, cross_entropy, get_batch, get_lr_cosine_schedule, load_checkpoint, save_checkpoint
from cs336.errors import CS336Error
from cs336.training.checkpoint import read_checkpoint

CONFIG = dict(vocab_size=64, context_length=16, d_model=32, num_layers=2, num_heads=4, d_ff=48, rope_theta=10000.0)


pytestmark = pytest.mark.usefixtures("one_thread")


def _fresh(seed=0):
    torch.manual_seed(seed)
    model = TransformerLM(**CONFIG)
    return model, AdamW(model.parameters(), lr=1e-3, weight_decay=0.1)


def _train(model, opt, rng, data, start, stop):
    for it in range(start, stop):
        for group in opt.param_groups:
            group["lr"] = get_lr_cosine_schedule(it, 3e-3, 3e-4, 2, 10)
        x, y = get_batch(data, 4, CONFIG["context_length"], "cpu", generator=rng)
        opt.zero_grad()
        cross_entropy(model(x), y).backward()
        opt.step()


def test_resumed_run_equals_uninterrupted_run_bit_for_bit(tmp_path):
    data = np.random.default_rng(0).integers(0, CONFIG["vocab_size"], 2000).astype(np.uint16)
    model, opt = _fresh()
    rng = np.random.default_rng(42)
    _train(model, opt, rng, data, 0, 10)
    uninterrupted = {k: v.clone() for k, v in model.state_dict().items()}

    model, opt = _fresh()
    rng = np.random.default_rng(42)
    _train(model, opt, rng, data, 0, 4)
    path = tmp_path / "ckpt.pt"
    save_checkpoint(model, opt, 4, path, extra={"sampler": rng.bit_generator.state})
    del model, opt, rng

    model, opt = _fresh(seed=123)  # different initial weights: everything must come from the file
    it = load_checkpoint(path, model, opt)
    rng = np.random.default_rng()
    rng.bit_generator.state = read_checkpoint(path)["extra"]["sampler"]
    assert it == 4
    _train(model, opt, rng, data, it, 10)
    resumed = model.state_dict()
    assert all(torch.equal(resumed[k], uninterrupted[k]) for k in uninterrupted)


def test_checkpoint_round_trips_through_a_file_object():
    model, opt = _fresh()
    x = torch.randint(0, CONFIG["vocab_size"], (2, 8))
    cross_entropy(model(x), x).backward()
    opt.step()
    buf = io.BytesIO()
    save_checkpoint(model, opt, 7, buf, extra={"note": "hello"})
    buf.seek(0)
    model2, opt2 = _fresh(seed=1)
    assert load_checkpoint(buf, model2, opt2) == 7
    for (k, a), b in zip(model.state_dict().items(), model2.state_dict().values()):
        assert torch.equal(a, b), k
    s1, s2 = opt.state_dict()["state"], opt2.state_dict()["state"]
    assert all(torch.equal(s1[i]["exp_avg_sq"], s2[i]["exp_avg_sq"]) for i in s1)
    buf.seek(0)
    assert read_checkpoint(buf)["extra"] == {"note": "hello"}


class _Evil:
    """Unpickling this object touches a file: stands in for arbitrary code execution."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (pathlib.Path(self.marker),))


def test_checkpoint_with_a_pickled_object_is_refused_without_running_it(tmp_path):
    marker = tmp_path / "pwned"
    model, opt = _fresh()
    path = tmp_path / "evil.pt"
    save_checkpoint(model, opt, 1, path, extra={"payload": _Evil(str(marker))})
    with pytest.raises(CS336Error, match="pickled Python objects"):
        load_checkpoint(path, model, opt)
    assert not marker.exists()
    torch.load(path, weights_only=False)  # the unsafe load would have run it
    assert marker.exists()


def test_truncated_checkpoint_is_a_clear_error(tmp_path):
    model, opt = _fresh()
    path = tmp_path / "ckpt.pt"
    save_checkpoint(model, opt, 3, path)
    blob = path.read_bytes()
    path.write_bytes(blob[: len(blob) // 2])
    with pytest.raises(CS336Error, match=r"cannot read checkpoint .*ckpt\.pt: the file is truncated") as e:
        load_checkpoint(path, model, opt)
    assert "\n" not in str(e.value)


def test_foreign_files_are_clear_errors(tmp_path):
    model, opt = _fresh()
    text = tmp_path / "notes.txt"
    text.write_text("not a checkpoint\n")
    with pytest.raises(CS336Error, match="cannot read checkpoint"):
        load_checkpoint(text, model, opt)
    other = tmp_path / "weights.pt"
    torch.save(model.state_dict(), other)  # a real torch file, but not ours
    with pytest.raises(CS336Error, match="not a cs336 checkpoint"):
        load_checkpoint(other, model, opt)
    with pytest.raises(CS336Error, match="not found"):
        load_checkpoint(tmp_path / "missing.pt", model, opt)


def test_checkpoint_of_another_architecture_is_a_clear_error(tmp_path):
    model, opt = _fresh()
    path = tmp_path / "ckpt.pt"
    save_checkpoint(model, opt, 0, path)
    torch.manual_seed(0)
    bigger = TransformerLM(**{**CONFIG, "d_model": 64})
    with pytest.raises(CS336Error, match="does not fit") as e:
        load_checkpoint(path, bigger, AdamW(bigger.parameters()))
    assert "\n" not in str(e.value)


def test_interrupted_save_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    model, opt = _fresh()
    path = tmp_path / "ckpt.pt"
    save_checkpoint(model, opt, 1, path)
    before = path.read_bytes()
    real_save = torch.save

    def dying_save(obj, f):
        real_save(obj, f)
        f.truncate(100)  # half-written...
        raise KeyboardInterrupt  # ...when the run is killed

    monkeypatch.setattr(torch, "save", dying_save)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(model, opt, 2, path)
    assert path.read_bytes() == before and list(tmp_path.iterdir()) == [path]
    monkeypatch.undo()
    assert load_checkpoint(path, model, opt) == 1


def test_a_ctrl_c_while_saving_takes_effect_once_the_checkpoint_is_in_place(tmp_path, monkeypatch):
    # Unheld, torch.save turns an interrupt inside its writes into a RuntimeError, and the run
    # that was interrupted would end as one that failed to write.
    model, opt = _fresh()
    path = tmp_path / "ckpt.pt"
    save_checkpoint(model, opt, 1, path)
    real_save = torch.save

    def interrupted_save(obj, f):
        signal.raise_signal(signal.SIGINT)  # Ctrl-C, as the save begins
        real_save(obj, f)

    monkeypatch.setattr(torch, "save", interrupted_save)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(model, opt, 2, path)
    monkeypatch.undo()
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    assert load_checkpoint(path, model, opt) == 2 and list(tmp_path.iterdir()) == [path]
