"""The cpu-scale experiments, live: their token files, and any point of a committed sweep rerun.

`make data-cpu` writes `runs/data/{tinystories,owt}_cpu/{train,valid}.npy` (a 2,000-token BPE of
each corpus's training text, then its training and held-out texts encoded with it); `cpu_tokens`
makes the same files in any folder, for the notebooks' live cells and the reproduction test.

>>> summary = live_run("lr_cpu", "/tmp/live", "optim.lr=0.3", "max_steps=100")  # doctest: +SKIP
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from cs336.data import sample_path, split_documents
from cs336.errors import CS336Error
from cs336.paths import RESULTS_DIR
from cs336.runs import CONFIG
from cs336.tokenization import END_OF_TEXT
from cs336.tokenization.bpe import train_bpe_to_dir
from cs336.tokenization.encode_file import encode_file
from cs336.tokenization.tokenizer import load_tokenizer
from cs336.training.config import TrainConfig, apply_overrides
from cs336.training.trainer import train

VOCAB_SIZE = 2000
# The token-file folder a cpu config names → the corpus it is made from.
DATA_DIRS = {"runs/data/tinystories_cpu": "tinystories", "runs/data/owt_cpu": "owt"}


def corpus_texts(corpus: str, workdir: Path) -> tuple[Path, Path]:
    """(training text, held-out text) of a corpus's shipped sample; OWT's split is written to `workdir`."""
    if corpus == "tinystories":
        return sample_path("tinystories/TinyStories-train-2M.txt"), sample_path("tinystories/TinyStories-valid-800K.txt")
    if corpus == "owt":
        split = split_documents(sample_path("owt/owt-sample-680K.txt"), workdir)  # every 5th document held out
        return split.train, split.valid
    raise CS336Error(f"no cpu-scale data for corpus {corpus!r}; known: tinystories, owt")


def cpu_tokens(corpus: str, workdir: str | Path) -> dict[str, Path]:
    """`{"train": path, "valid": path}`: the cpu-scale token files of `corpus` in `workdir`, made
    as `make data-cpu` makes them (once; a later call finds them)."""
    root = Path(workdir)
    out = {split: root / f"{split}.npy" for split in ("train", "valid")}
    if all(p.is_file() for p in out.values()):
        return out
    root.mkdir(parents=True, exist_ok=True)
    texts = dict(zip(("train", "valid"), corpus_texts(corpus, root)))
    train_bpe_to_dir(texts["train"], VOCAB_SIZE, [END_OF_TEXT], root, progress=False)
    tokenizer = load_tokenizer(root)
    for split, text in texts.items():
        encode_file(tokenizer, text, out[split], progress=False)
    return out


def committed_config(sweep: str, point: str | None = None) -> TrainConfig:
    """The config a committed sweep point ran with (`results/<sweep>/<point>/config.json`; default:
    its first point)."""
    root = RESULTS_DIR / sweep
    points = sorted(p.name for p in root.iterdir() if (p / CONFIG).is_file()) if root.is_dir() else []
    if not points:
        raise CS336Error(f"no committed runs in {root}")
    name = point or points[0]
    if name not in points:
        raise CS336Error(f"{sweep} has no point {name!r}; it has {', '.join(points)}")
    return TrainConfig.from_dict(json.loads((root / name / CONFIG).read_text()))


def live_run(sweep: str, workdir: str | Path, *overrides: str, point: str | None = None, progress: bool = False) -> dict[str, Any]:
    """Rerun a committed sweep point in `workdir` with `key=value` overrides (a learning rate, a
    batch size, an ablation switch, a seed, fewer steps) on the same token files; return its summary."""
    workdir = Path(workdir)
    cfg = committed_config(sweep, point).to_dict()
    corpus = DATA_DIRS.get(str(Path(cfg["data"]["train"]).parent))
    if corpus is None:
        raise CS336Error(f"{sweep} does not train on cpu-scale data ({cfg['data']['train']})")
    tokens = cpu_tokens(corpus, workdir / f"{corpus}_cpu")
    run_dir = workdir / "runs" / "__".join(o.replace("/", "_") for o in overrides) if overrides else workdir / "runs" / "committed"
    d = apply_overrides(cfg, [*overrides, f"data.train={json.dumps(str(tokens['train']))}",
                              f"data.valid={json.dumps(str(tokens['valid']))}", f"run_dir={json.dumps(str(run_dir))}",
                              "checkpoint_interval=0"])
    config = TrainConfig.from_dict(d)
    config.validate()
    return train(config, progress=progress)
