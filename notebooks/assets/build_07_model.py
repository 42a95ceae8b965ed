"""Build the small TinyStories model that notebooks/07_generation.ipynb decodes from.

    python notebooks/assets/build_07_model.py      # from the project root; CS336_DATA_DIR set

1. a 2,000-token byte-level BPE on TinyStories-train-2M.txt (`<|endoftext|>` special);
2. the train and valid samples encoded to runs/07_generation/data/*.npy;
3. `cs336 train` with notebooks/assets/07_generation.toml (run directory runs/07_generation/run);
4. the final checkpoint stored in notebooks/assets/07_tinystories/ as a run directory that
   `cs336.runs.load_run` and `cs336 generate --run` read: config.json, vocab.json, merges.txt and
   checkpoints/step_XXXXXXX.pt with the weights in float16 (loading casts them back to float32)
   and no optimizer state, so it stays under 3 MB.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch

from cs336 import Tokenizer, runs, train_bpe
from cs336.data import corpus_path
from cs336.tokenization import END_OF_TEXT
from cs336.tokenization.encode_file import encode_file
from cs336.tokenization.files import MERGES_FILE, VOCAB_FILE
from cs336.training.checkpoint import FORMAT, read_checkpoint
from cs336.training.config import load_config
from cs336.training.trainer import train

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "notebooks" / "assets" / "07_generation.toml"
WORK = ROOT / "runs" / "07_generation"
OUT = ROOT / "notebooks" / "assets" / "07_tinystories"
SPECIALS = [END_OF_TEXT]


def main() -> None:
    cfg = load_config(CONFIG, [f'run_dir="{WORK / "run"}"'])
    (WORK / "data").mkdir(parents=True, exist_ok=True)
    vocab, merges = train_bpe(corpus_path("tinystories", "train"), cfg.model.vocab_size, SPECIALS)
    tokenizer = Tokenizer(vocab, merges, SPECIALS)
    tokenizer.save(WORK / VOCAB_FILE, WORK / MERGES_FILE)
    for split in ("train", "valid"):
        encode_file(tokenizer, corpus_path("tinystories", split), WORK / "data" / f"{split}.npy", workers=1)
    cfg.data.train, cfg.data.valid = str(WORK / "data" / "train.npy"), str(WORK / "data" / "valid.npy")
    summary = train(cfg, progress=True)
    print(summary)

    payload = read_checkpoint(runs.checkpoint_paths(WORK / "run")[-1])
    shutil.rmtree(OUT, ignore_errors=True)
    final = runs.checkpoint_path(OUT, payload["iteration"])
    final.parent.mkdir(parents=True)
    small = {
        "format": FORMAT,
        "model": {k: v.to(torch.float16) for k, v in payload["model"].items()},
        "optimizer": {},
        "iteration": payload["iteration"],
        "extra": {"config": payload["extra"]["config"], "val_loss": summary["val_loss"]},
    }
    torch.save(small, final)
    (OUT / runs.CONFIG).write_text(json.dumps(payload["extra"]["config"], indent=2) + "\n")
    tokenizer.save(OUT / VOCAB_FILE, OUT / MERGES_FILE)
    print(f"wrote {OUT}: " + ", ".join(f"{p.relative_to(OUT)} {p.stat().st_size:,} B" for p in sorted(OUT.rglob("*")) if p.is_file()))


if __name__ == "__main__":
    main()
