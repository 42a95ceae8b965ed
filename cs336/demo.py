"""The whole pipeline in a few minutes on a CPU: text → BPE → token ids → a trained LM → a story.

`cs336 demo` (what `make demo` runs) uses the TinyStories text in the data directory (the full
files when fetched, else the small samples in data/), reading at most `max_train_bytes` of it so
the demo's length does not depend on the corpus size:

    runs/demo/
      data/        train.txt, valid.txt (the slices used), train.npy, valid.npy (their token ids)
      run/         the training run (config, log.jsonl, summary.json, checkpoints) and the
                   tokenizer beside it (vocab.json, merges.txt), so `cs336 generate --run runs/demo/run`
                   works afterwards

Training runs on a wall-clock budget (`max_minutes` in configs/demo.toml), so the demo takes about
as long on any machine and a faster one simply trains further.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

from cs336.data import corpus_path, read_head
from cs336.errors import CS336Error
from cs336.generation import generate
from cs336.outputs import output_dir
from cs336.paths import CONFIGS_DIR
from cs336.runs import LOG, load_run
from cs336.tokenization import END_OF_TEXT, Tokenizer, train_bpe
from cs336.tokenization.encode_file import encode_file
from cs336.tokenization.files import MERGES_FILE, VOCAB_FILE
from cs336.training.config import load_config
from cs336.training.runlog import read_log
from cs336.training.trainer import train


DEFAULT_CONFIG = CONFIGS_DIR / "demo.toml"


def run_demo(
    out_dir: str | Path = "runs/demo",
    *,
    config: str | Path = DEFAULT_CONFIG,
    vocab_size: int = 2000,
    max_train_bytes: int = 4_000_000,
    max_valid_bytes: int = 1_000_000,
    overrides: list[str] | tuple[str, ...] = (),
    prompt: str = "Once upon a time",
    max_new_tokens: int = 200,
    progress: bool = True,
    log=print,
) -> dict[str, Any]:
    """Train BPE, encode, train a small LM and sample from it; return a summary dict."""
    # A bad --out or --set fails now, before anything is written, not after the BPE.
    out_dir = output_dir(out_dir, "demo output directory", create=False)
    load_config(config, [f"model.vocab_size={vocab_size}", *overrides])
    data_dir, run_dir = out_dir / "data", out_dir / "run"
    for d in (data_dir, run_dir):  # a fresh demo each time (only the demo's own folders)
        if d.exists():
            shutil.rmtree(d)
    data_dir.mkdir(parents=True)
    times: dict[str, float] = {}
    t_all = time.perf_counter()

    # 1. the text
    src_train, src_valid = corpus_path("tinystories", "train"), corpus_path("tinystories", "valid")
    train_txt, valid_txt = data_dir / "train.txt", data_dir / "valid.txt"
    n_train = train_txt.write_bytes(read_head(src_train, max_train_bytes))
    n_valid = valid_txt.write_bytes(read_head(src_valid, max_valid_bytes))
    log(f"[1/4] text: {n_train:,} bytes of {src_train.name}, {n_valid:,} bytes of {src_valid.name}")

    # 2. a byte-level BPE tokenizer, saved beside the run
    t = time.perf_counter()
    vocab, merges = train_bpe(train_txt, vocab_size, [END_OF_TEXT], num_workers=2, progress=progress)
    tokenizer = Tokenizer(vocab, merges, [END_OF_TEXT])
    run_dir.mkdir(parents=True)
    tokenizer.save(run_dir / VOCAB_FILE, run_dir / MERGES_FILE)
    times["bpe"] = time.perf_counter() - t
    longest = max((t for t in vocab.values() if t != END_OF_TEXT.encode()), key=len)
    log(f"[2/4] BPE: {len(vocab):,} tokens ({len(merges):,} merges) in {times['bpe']:.1f} s; longest token {longest.decode('utf-8', 'replace')!r}")

    # 3. token ids
    t = time.perf_counter()
    train_stats = encode_file(tokenizer, train_txt, data_dir / "train.npy", workers=2, progress=progress)
    valid_stats = encode_file(tokenizer, valid_txt, data_dir / "valid.npy", workers=1, progress=progress)
    times["encode"] = time.perf_counter() - t
    log(f"[3/4] encode: {train_stats.tokens:,} train and {valid_stats.tokens:,} valid tokens "
        f"({n_train / train_stats.tokens:.2f} bytes/token) in {times['encode']:.1f} s")

    # 4. the language model
    cfg = load_config(config, [
        f"data.train={data_dir / 'train.npy'}", f"data.valid={data_dir / 'valid.npy'}",
        f"model.vocab_size={len(vocab)}", f"run_dir={run_dir}", *overrides,
    ])
    t = time.perf_counter()
    summary = train(cfg, progress=progress)
    times["train"] = time.perf_counter() - t
    if summary["status"] != "finished":
        raise CS336Error(f"demo training ended with status {summary['status']}: {summary['message']}")
    evals = [r for r in read_log(run_dir / LOG) if "val_loss" in r]
    first_val, last_val = evals[0]["val_loss"], evals[-1]["val_loss"]
    log(f"[4/4] train: {summary['parameters']:,} parameters, {summary['step']:,} steps, {summary['tokens']:,} tokens "
        f"in {times['train']:.0f} s; validation loss {first_val:.3f} → {last_val:.3f} (perplexity {evals[-1]['val_ppl']:.1f})")

    # a story
    model, tok = load_run(run_dir)
    t = time.perf_counter()
    story = generate(model, tok, prompt, max_new_tokens, temperature=0.8, top_p=0.95, seed=0, stop_at_eos=True)
    times["generate"] = time.perf_counter() - t
    times["total"] = time.perf_counter() - t_all
    bar = "-" * 72
    log(f"\n{bar}\n{prompt}{story}\n{bar}")
    log(f"done in {times['total']:.0f} s. Run directory: {run_dir}")
    log(f"more samples: cs336 generate --run {run_dir} --prompt \"Once upon a time\"")
    return {
        "run_dir": str(run_dir), "vocab_size": len(vocab), "train_tokens": train_stats.tokens,
        "valid_tokens": valid_stats.tokens, "steps": summary["step"], "first_val_loss": first_val,
        "val_loss": last_val, "story": story, "seconds": {k: round(v, 2) for k, v in times.items()},
    }
