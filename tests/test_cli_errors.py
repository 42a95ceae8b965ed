"""Bad input to every `cs336` command: one line `error: ...` naming the problem, exit status 2,
no traceback, and the file system exactly as it was (no partial output, earlier outputs intact).

Each case runs the real command line (`cs336.cli.main`) inside a small world of files: good and
bad text, a tokenizer, a trained run, corrupt copies of each, and outputs of an earlier command.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from cs336 import Tokenizer
from cs336.cli import main
from cs336.errors import CS336Error
from cs336.tokenization.files import save_vocab_merges
from run_factory import gpt2_bpe, make_run

TEXT = "Once upon a time there was a cat.<|endoftext|>The cat sat on the mat and was happy.\n" * 20


@pytest.fixture(scope="module")
def world(tmp_path_factory, data_dir) -> Path:
    w = tmp_path_factory.mktemp("world")
    (w / "text.txt").write_text(TEXT, encoding="utf-8")
    (w / "empty.txt").write_bytes(b"")
    (w / "adir").mkdir()
    (w / "latin1.txt").write_bytes("caf\xe9 au lait".encode("latin-1"))  # not UTF-8
    vocab, merges = gpt2_bpe(data_dir, 200)
    (w / "tok").mkdir()
    save_vocab_merges(vocab, merges, w / "tok" / "vocab.json", w / "tok" / "merges.txt")
    (w / "bad_vocab").mkdir()
    (w / "bad_vocab" / "vocab.json").write_text('{"a": 0, "b": ')  # cut short
    (w / "bad_vocab" / "merges.txt").write_bytes((w / "tok" / "merges.txt").read_bytes())
    (w / "bad_merges").mkdir()
    (w / "bad_merges" / "vocab.json").write_bytes((w / "tok" / "vocab.json").read_bytes())
    (w / "bad_merges" / "merges.txt").write_text("#version: 0.2\nĠ t h\n")
    (w / "foreign_merges").mkdir()  # well-formed, but merges tokens the vocab lacks
    (w / "foreign_merges" / "vocab.json").write_bytes((w / "tok" / "vocab.json").read_bytes())
    (w / "foreign_merges" / "merges.txt").write_text("#version: 0.2\nzz qq\n")
    (w / "no_tok").mkdir()
    # an earlier encode's output and an earlier export: a failed rerun must leave them alone
    np.save(w / "ids.npy", np.arange(50, dtype=np.uint16))
    (w / "hf").mkdir()
    (w / "hf" / "config.json").write_text('{"earlier": true}\n')
    # a training run, one whose only checkpoint was cut short, and one whose newest was
    run = make_run(w / "run", data_dir, steps=(5,))
    ckpt = (run / "checkpoints" / "step_0000005.pt").read_bytes()
    for trunc in (w / "trunc_run", w / "trunc_newest_run"):
        (trunc / "checkpoints").mkdir(parents=True)
        for name in ("config.json", "vocab.json", "merges.txt"):
            (trunc / name).write_bytes((run / name).read_bytes())
    (w / "trunc_run" / "checkpoints" / "step_0000005.pt").write_bytes(ckpt[: len(ckpt) // 2])
    (w / "trunc_newest_run" / "checkpoints" / "step_0000005.pt").write_bytes(ckpt)
    (w / "trunc_newest_run" / "checkpoints" / "step_0000010.pt").write_bytes(ckpt[: len(ckpt) // 2])
    (w / "tokens.npy").parent.mkdir(exist_ok=True)
    np.save(w / "tokens.npy", np.arange(400, dtype=np.uint16) % 256)
    # token files cut short: to nothing, inside the data, inside the header; and raw ids cut mid-id
    tokens = (w / "tokens.npy").read_bytes()
    (w / "empty.npy").write_bytes(b"")
    (w / "cut_tokens.npy").write_bytes(tokens[: len(tokens) // 2])
    (w / "cut_header.npy").write_bytes(tokens[:40])
    (w / "text.npy").write_text(TEXT)
    (w / "odd.bin").write_bytes(tokens[128:][:301])
    (w / "train.toml").write_text(
        'name = "t"\nmax_steps = 2\nbatch_size = 2\ndevice = "cpu"\n'
        "[model]\nvocab_size = 257\ncontext_length = 8\nd_model = 16\nnum_layers = 1\nnum_heads = 2\nd_ff = 32\n"
        f'[data]\ntrain = "{w / "tokens.npy"}"\n'
    )
    (w / "bad.toml").write_text('name = "t"\n[model\n')
    (w / "sweep_no_base.toml").write_text('[sweep]\nname = "s"\n')
    return w


def snapshot(root: Path) -> dict[str, str]:
    """Every path under `root` with the SHA-256 of its bytes (directories as 'dir')."""
    return {
        str(p.relative_to(root)): "dir" if p.is_dir() else hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
    }


TOK, RUN = "{w}/tok", "{w}/run"
CASES = [
    # (case id, argv with {w} = the world directory, words the message must contain)
    # train-bpe
    ("bpe-missing-input", "train-bpe --input {w}/nope.txt --vocab-size 300 --out {w}/o --no-progress", "not found"),
    ("bpe-empty-corpus", "train-bpe --input {w}/empty.txt --vocab-size 300 --out {w}/o --no-progress", "empty"),
    ("bpe-input-is-dir", "train-bpe --input {w}/adir --vocab-size 300 --out {w}/o --no-progress", "not a file"),
    ("bpe-undecodable", "train-bpe --input {w}/latin1.txt --vocab-size 300 --out {w}/o --no-progress --workers 1", "utf-8"),
    ("bpe-vocab-too-small", "train-bpe --input {w}/text.txt --vocab-size 256 --special-token <|endoftext|> --out {w}/o --no-progress", "too small"),
    ("bpe-zero-workers", "train-bpe --input {w}/text.txt --vocab-size 260 --out {w}/o --workers 0", "--workers"),
    ("bpe-vocab-size-not-a-number", "train-bpe --input {w}/text.txt --vocab-size 10k --out {w}/o", "--vocab-size"),
    ("bpe-missing-out", "train-bpe --input {w}/text.txt --vocab-size 260", "--out"),
    ("bpe-out-is-file", "train-bpe --input {w}/text.txt --vocab-size 260 --out {w}/text.txt --no-progress --workers 1", "is a file"),
    ("bpe-out-under-file", "train-bpe --input {w}/text.txt --vocab-size 260 --out {w}/text.txt/tok --no-progress --workers 1", "text.txt"),
    # encode
    ("enc-no-tokenizer", "encode --input {w}/text.txt --out {w}/o.npy", "tokenizer"),
    ("enc-missing-tokenizer-dir", "encode --tokenizer {w}/nope --input {w}/text.txt --out {w}/o.npy", "not found"),
    ("enc-tokenizer-dir-empty", "encode --tokenizer {w}/no_tok --input {w}/text.txt --out {w}/o.npy", "vocab.json"),
    ("enc-corrupt-vocab", "encode --tokenizer {w}/bad_vocab --input {w}/text.txt --out {w}/o.npy", "vocab"),
    ("enc-corrupt-merges", "encode --tokenizer {w}/bad_merges --input {w}/text.txt --out {w}/o.npy", "merges.txt"),
    ("enc-merges-of-another-vocab", "encode --tokenizer {w}/foreign_merges --input {w}/text.txt --out {w}/o.npy", "merges.txt does not fit"),
    ("enc-missing-input", "encode --tokenizer " + TOK + " --input {w}/nope.txt --out {w}/o.npy", "not found"),
    ("enc-input-is-dir", "encode --tokenizer " + TOK + " --input {w}/adir --out {w}/o.npy", "not a file"),
    ("enc-empty-input", "encode --tokenizer " + TOK + " --input {w}/empty.txt --out {w}/o.npy", "empty"),
    ("enc-undecodable-keeps-old-output", "encode --tokenizer " + TOK + " --input {w}/latin1.txt --out {w}/ids.npy --workers 1 --no-progress", "utf-8"),
    ("enc-out-is-dir", "encode --tokenizer " + TOK + " --input {w}/text.txt --out {w}/adir --workers 1", "is a directory"),
    ("enc-out-under-file", "encode --tokenizer " + TOK + " --input {w}/text.txt --out {w}/text.txt/o.npy --workers 1", "text.txt"),
    ("enc-zero-workers", "encode --tokenizer " + TOK + " --input {w}/text.txt --out {w}/o.npy --workers 0", "--workers"),
    # train
    ("train-missing-config", "train --config {w}/nope.toml", "not found"),
    ("train-config-is-dir", "train --config {w}/adir", "adir"),
    ("train-bad-toml", "train --config {w}/bad.toml", "toml"),
    ("train-unknown-key", "train --config {w}/train.toml --set model.d_modle=8", "unknown config key model.d_modle"),
    ("train-wrong-type", "train --config {w}/train.toml --set model.d_model=wide", "model.d_model"),
    ("train-not-key-value", "train --config {w}/train.toml --set lr", "key=value"),
    ("train-missing-tokens", "train --config {w}/train.toml --set data.train={w}/nope.npy --run-dir {w}/r", "not found"),
    ("train-empty-tokens", "train --config {w}/train.toml --set data.train={w}/empty.npy --run-dir {w}/r", "token file is empty: "),
    ("train-truncated-tokens", "train --config {w}/train.toml --set data.train={w}/cut_tokens.npy --run-dir {w}/r", "cut_tokens.npy is truncated"),
    ("train-truncated-token-header", "train --config {w}/train.toml --set data.train={w}/cut_header.npy --run-dir {w}/r", "cut_header.npy is truncated"),
    ("train-truncated-valid-tokens", "train --config {w}/train.toml --set data.valid={w}/cut_tokens.npy --run-dir {w}/r", "cut_tokens.npy is truncated"),
    ("train-text-as-tokens", "train --config {w}/train.toml --set data.train={w}/text.npy --run-dir {w}/r", "text.npy is not a .npy token file"),
    ("train-raw-tokens-cut-mid-id", "train --config {w}/train.toml --set data.train={w}/odd.bin --set data.dtype=uint16 --run-dir {w}/r", "odd.bin is truncated"),
    ("train-ids-beyond-vocab", "train --config {w}/train.toml --set model.vocab_size=100 --run-dir {w}/r --no-progress", "vocab_size"),
    ("train-run-dir-is-file", "train --config {w}/train.toml --run-dir {w}/text.txt --no-progress", "run directory"),
    ("train-bad-device", "train --config {w}/train.toml --set device=tpu9 --run-dir {w}/r --no-progress", "device"),
    # generate
    ("gen-missing-run", "generate --run {w}/nope --prompt hi", "not found"),
    ("gen-run-without-checkpoints", "generate --run {w}/adir --tokenizer " + TOK + " --prompt hi", "checkpoint"),
    ("gen-truncated-checkpoint", "generate --run {w}/trunc_run --prompt hi", "step_0000005.pt: the file is truncated"),
    ("gen-truncated-newest-checkpoint", "generate --run {w}/trunc_newest_run --prompt hi", "step_0000010.pt: the file is truncated"),
    ("gen-not-a-checkpoint", "generate --checkpoint {w}/text.txt --tokenizer " + TOK + " --config {w}/run/config.json --prompt hi", "checkpoint"),
    ("gen-bare-checkpoint-no-tokenizer", "generate --checkpoint {w}/run/checkpoints/step_0000005.pt --prompt hi", "--tokenizer"),
    ("gen-corrupt-vocab", "generate --run " + RUN + " --tokenizer {w}/bad_vocab --prompt hi", "vocab"),
    ("gen-empty-prompt", "generate --run " + RUN + " --prompt ''", "prompt"),
    ("gen-bad-top-p", "generate --run " + RUN + " --prompt hi --top-p 0", "top_p"),
    ("gen-bad-device", "generate --run " + RUN + " --prompt hi --device tpu9", "device"),
    # export
    ("export-unknown-format", "export --run " + RUN + " --to gguf {w}/o", "format"),
    ("export-out-is-file", "export --run " + RUN + " --to hf {w}/text.txt", "is a file"),
    ("export-truncated-keeps-old-export", "export --run {w}/trunc_run --to hf {w}/hf", "step_0000005.pt: the file is truncated"),
    ("export-truncated-newest-checkpoint", "export --run {w}/trunc_newest_run --to hf {w}/o", "step_0000010.pt: the file is truncated"),
    ("export-missing-run", "export --run {w}/nope --to hf {w}/o", "not found"),
    # sweep
    ("sweep-missing-file", "sweep {w}/nope.toml --dry-run", "nope.toml"),
    ("sweep-file-is-dir", "sweep {w}/adir --dry-run", "adir"),
    ("sweep-bad-toml", "sweep {w}/bad.toml --dry-run", "toml"),
    ("sweep-without-base", "sweep {w}/sweep_no_base.toml --dry-run", "base"),
    ("sweep-zero-parallel", "sweep {w}/sweep_no_base.toml --parallel 0", "--parallel"),
    ("unknown-command", "trian --config x", "invalid choice"),
    ("gen-run-and-checkpoint", "generate --run " + RUN + " --checkpoint x.pt --prompt hi", "not allowed with"),
    # data fetch
    ("fetch-missing-mirror", "data fetch tinystories --mirror {w}/nope --dest {w}/d", "mirror"),
    ("fetch-mirror-without-files", "data fetch tinystories --mirror {w}/adir --dest {w}/d", "not found in mirror"),
    # demo
    ("demo-out-is-file", "demo --out {w}/text.txt --no-progress", "is a file"),
    ("demo-unknown-key", "demo --out {w}/demo --set max_minuts=1 --no-progress", "unknown config key max_minuts"),
]


@pytest.mark.parametrize("argv, expected", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_one_error_line_and_changes_nothing(world, argv, expected, capsys):
    import shlex

    before = snapshot(world)
    try:
        status = main([a.replace("{w}", str(world)) for a in shlex.split(argv)])
    except SystemExit as e:  # a usage mistake, caught while parsing the arguments
        status = e.code
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert status == 2, err
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err
    assert expected.lower() in lines[0].lower(), lines[0]
    assert snapshot(world) == before  # nothing written, nothing partial, earlier outputs intact


def test_decode_of_an_unknown_id_names_it():
    tok = Tokenizer({i: bytes([i]) for i in range(256)}, [])
    with pytest.raises(CS336Error, match="cannot decode id 256"):
        tok.decode([104, 256])
    with pytest.raises(CS336Error, match="cannot decode id -1"):
        tok.decode([-1])


def test_every_subcommand_has_a_bad_input_case():
    from test_cli import subcommands

    covered = {c[1].split()[0] for c in CASES}
    assert covered >= set(subcommands())


def test_a_good_run_of_the_same_world_succeeds(world, tmp_path, capsys):
    """The cases fail for the reason they name: the same commands with good input work."""
    assert main(["encode", "--tokenizer", str(world / "tok"), "--input", str(world / "text.txt"),
                 "--out", str(tmp_path / "ids.npy"), "--workers", "1", "--no-progress"]) == 0
    assert main(["generate", "--run", str(world / "run"), "--prompt", "hi", "--max-new-tokens", "2"]) == 0
    assert main(["export", "--run", str(world / "run"), "--to", "hf", str(tmp_path / "hf")]) == 0
    assert json.loads((tmp_path / "hf" / "config.json").read_text())["vocab_size"] == 457


def test_the_installed_command_line_prints_one_error_line(tmp_path):
    """The same contract through `python -m cs336` in a fresh process (no capsys, real exit code)."""
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-m", "cs336", "encode", "--tokenizer", str(tmp_path / "nope"), "--input", "x", "--out", "y"],
        capture_output=True, text=True,
    )
    assert out.returncode == 2
    assert out.stderr.splitlines() == [f"error: tokenizer directory not found: {tmp_path / 'nope'}"]
    assert out.stdout == ""
