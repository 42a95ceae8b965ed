"""The `cs336` command line: argument parsing only.

Each subcommand calls one package function. Errors the user can fix (`CS336Error`, missing files,
bad values) are printed as one line, `error: ...`, with exit status 2; no traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from cs336.data import CORPORA, HOLDOUT_EVERY, corpus_path, split_documents
from cs336.data.fetch import fetch
from cs336.demo import run_demo
from cs336.errors import CS336Error
from cs336.export import export_hf
from cs336.generation import generate_from_run
from cs336.paths import CHECKOUT_DATA, data_dir
from cs336.tokenization.bpe import train_bpe_to_dir
from cs336.tokenization.encode_file import encode_file
from cs336.tokenization.tokenizer import load_tokenizer
from cs336.training import distributed
from cs336.training.config import load_config
from cs336.training.trainer import train


class _HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the line breaks of descriptions and examples, and ends each option's help with its
    default. An option whose default is None or empty says in its help what happens without it."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        shown = "(default: " in text or action.default in (None, [], argparse.SUPPRESS)
        if action.option_strings and action.nargs != 0 and not action.required and not shown:
            text += " (default: %(default)s)"
        return text


_FORMAT = dict(formatter_class=_HelpFormatter)


def _examples(*lines: str) -> str:
    return "examples:\n" + "\n".join(f"  {line}" for line in lines)


class _Parser(argparse.ArgumentParser):
    """Usage mistakes, like package errors, are one line: `error: ...`, exit status 2."""
    def error(self, message: str):
        self.exit(2, f"error: {message} (see `{self.prog} --help`)\n")


def _positive_int(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {n}")
    return n


# ---------------------------------------------------------------------------------------------
# data fetch, where, split
# ---------------------------------------------------------------------------------------------
def _add_data(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "data", help="download or copy the full-size corpora into the data directory",
        description="Manage the full-size corpora (the samples in the checkout's data/ need nothing).", **_FORMAT,
        epilog=_examples("cs336 data where", "cs336 data fetch tinystories", "cs336 data fetch owt --mirror /mnt/corpora",
                         "cs336 data split --input data/owt/owt-sample-680K.txt --out runs/data/owt_cpu"),
    )
    data_sub = p.add_subparsers(dest="data_command", required=True, metavar="{fetch,where,split}", help="what to do")
    f = data_sub.add_parser(
        "fetch", help="fetch a corpus (progress bar, resume, checksum)",
        description="Download a corpus into the data directory, resuming a partial download and checking "
        "each file's SHA-256; files already present and verified are left alone. A file only ever "
        "appears under its final name once complete.", **_FORMAT,
        epilog=_examples("cs336 data fetch tinystories", "cs336 data fetch owt --dest /big/disk/data",
                         "cs336 data fetch tinystories --mirror /mnt/corpora   # copy, no network"),
    )
    f.add_argument("corpus", choices=["tinystories", "owt"], help="TinyStories V2 (GPT-4) train/valid, or the OpenWebText sample (gzip)")
    f.add_argument("--mirror", metavar="DIR", help="copy from this local directory instead of downloading (default: download)")
    f.add_argument("--dest", metavar="DIR", help="target directory (default: $CS336_DATA_DIR or data/)")
    f.set_defaults(func=_run_data_fetch)
    w = data_sub.add_parser(
        "where", help="print the data directory and the file each corpus split reads",
        description="Print the data directory ($CS336_DATA_DIR, else the checkout's data/, else "
        "$XDG_DATA_HOME/cs336) and, for each corpus split, the file that is read: the full-size "
        "file when fetched, else the shipped sample.", **_FORMAT, epilog=_examples("cs336 data where"),
    )
    w.set_defaults(func=_run_data_where)
    s = data_sub.add_parser(
        "split", help="split a sample into train and held-out documents",
        description="Write OUT/train.txt and OUT/valid.txt from a file of documents joined by <|endoftext|>: "
        "counting documents from 1, every K-th is held out (valid), the others are for training. "
        "The same on every machine; each file keeps the input's format.", **_FORMAT,
        epilog=_examples("cs336 data split --input data/owt/owt-sample-680K.txt --out runs/data/owt_cpu"),
    )
    s.add_argument("--input", required=True, metavar="FILE", help="documents joined by <|endoftext|>")
    s.add_argument("--out", required=True, metavar="DIR", help="output directory (train.txt, valid.txt)")
    s.add_argument("--holdout-every", type=_positive_int, default=HOLDOUT_EVERY, metavar="K", help="hold out every K-th document")
    s.set_defaults(func=_run_data_split)


def _run_data_fetch(args: argparse.Namespace) -> int:
    fetch(args.corpus, mirror=args.mirror, dest=args.dest)
    return 0


def _run_data_split(args: argparse.Namespace) -> int:
    split = split_documents(args.input, args.out, holdout_every=args.holdout_every)
    for name, path in split.paths.items():
        print(f"{name}: {split.documents[name]} documents, {split.bytes[name]:,} bytes -> {path}")
    return 0


def _run_data_where(args: argparse.Namespace) -> int:
    origin = "$CS336_DATA_DIR" if os.environ.get("CS336_DATA_DIR") else "the checkout" if CHECKOUT_DATA else "user directory"
    print(f"data directory: {data_dir()} ({origin})")
    for name in CORPORA:
        for split in ("train", "valid"):
            try:
                path = corpus_path(name, split)
                sample = CORPORA[name].samples.get(split, "").endswith(path.name)
                print(f"{name} {split}: {path}{' (sample)' if sample else ''}")
            except CS336Error:
                print(f"{name} {split}: not here (cs336 data fetch {name})")
    return 0


# ---------------------------------------------------------------------------------------------
# train-bpe
# ---------------------------------------------------------------------------------------------
def _add_train_bpe(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train-bpe",
        help="train a byte-level BPE tokenizer on a text file",
        description="Train a byte-level BPE and write vocab.json and merges.txt (GPT-2 format) and stats.json "
        "(timings, peak memory, longest token) into the output directory.", **_FORMAT,
        epilog=_examples(
            "cs336 train-bpe --input data/tinystories/TinyStoriesV2-GPT4-train.txt --vocab-size 10000 \\",
            "    --special-token '<|endoftext|>' --out runs/tok-10k",
        ),
    )
    p.add_argument("--input", required=True, metavar="FILE", help="UTF-8 training text")
    p.add_argument("--vocab-size", required=True, type=_positive_int, metavar="N", help="bytes + merges + special tokens")
    p.add_argument(
        "--special-token", action="append", default=[], metavar="T", dest="special_tokens",
        help="a special token (repeatable), e.g. '<|endoftext|>' (default: none)",
    )
    p.add_argument("--out", required=True, metavar="DIR", help="output directory")
    p.add_argument(
        "--workers", type=_positive_int, default=None, metavar="K", help="pre-tokenization processes (default: all CPUs)"
    )
    p.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    p.set_defaults(func=_run_train_bpe)


def _run_train_bpe(args: argparse.Namespace) -> int:
    stats = train_bpe_to_dir(
        args.input, args.vocab_size, args.special_tokens, args.out,
        num_workers=args.workers, progress=not args.no_progress,
    )
    print(
        f"vocab {stats['vocab_size']} ({stats['num_merges']} merges) in {stats['total_seconds']:.2f} s "
        f"(pre-tokenize {stats['pretokenize_seconds']:.2f} s, merge {stats['merge_seconds']:.2f} s), "
        f"peak memory {stats['peak_memory_bytes'] / 2**20:.0f} MiB, longest token {stats['longest_token']!r}"
        f" -> {args.out}"
    )
    return 0


# ---------------------------------------------------------------------------------------------
# encode
# ---------------------------------------------------------------------------------------------
def _add_encode(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "encode",
        help="encode a text file to a .npy array of token ids (parallel, bounded memory)",
        description="Encode a UTF-8 text file with a trained BPE tokenizer into a .npy array of token ids "
        "(uint16 when the vocabulary has at most 65,536 ids, else uint32), in parallel across processes. "
        "The ids equal Tokenizer.encode of the whole file. The output appears only when complete.",
        **_FORMAT,
        epilog=_examples("cs336 encode --tokenizer runs/tok-10k --input train.txt --out train.npy"),
    )
    p.add_argument("--tokenizer", metavar="DIR", help="directory holding vocab.json and merges.txt, as train-bpe writes them "
                   "(default: none; then give --vocab and --merges)")
    p.add_argument("--vocab", metavar="FILE", help="GPT-2-format vocab.json (default: DIR/vocab.json)")
    p.add_argument("--merges", metavar="FILE", help="GPT-2-format merges.txt (default: DIR/merges.txt)")
    p.add_argument("--input", required=True, metavar="FILE", help="UTF-8 text to encode")
    p.add_argument("--out", required=True, metavar="FILE", help="output .npy file")
    p.add_argument(
        "--special-token", action="append", default=None, metavar="T",
        help="a special token, encoded as one id (repeatable), e.g. '<|endoftext|>' "
        "(default: those in DIR/stats.json written by train-bpe, else none)",
    )
    p.add_argument("--workers", type=_positive_int, default=None, metavar="K", help="processes (default: all cores)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(func=_run_encode)


def _run_encode(args: argparse.Namespace) -> int:
    tokenizer = load_tokenizer(args.tokenizer, vocab=args.vocab, merges=args.merges, special_tokens=args.special_token)
    stats = encode_file(tokenizer, args.input, args.out, workers=args.workers, progress=not args.no_progress)
    print(stats)
    return 0


# ---------------------------------------------------------------------------------------------
# train
# ---------------------------------------------------------------------------------------------
def _add_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="train (or resume) a Transformer LM from a TOML config",
        description="Train a Transformer LM; resumes from the newest checkpoint in the run directory. "
        "Under `torchrun --nproc_per_node N -m cs336 train ...` it trains data-parallel.", **_FORMAT,
        epilog=_examples(
            "cs336 train --config configs/tinystories.toml",
            "cs336 train --config configs/tinystories.toml --set optim.lr=3e-3 --set max_steps=1000 --run-dir runs/lr3e-3",
            "torchrun --nproc_per_node 2 -m cs336 train --config configs/owt.toml",
        ),
    )
    p.add_argument("--config", required=True, metavar="FILE", help="TOML config (e.g. configs/tinystories.toml), or a run's config.toml to rerun it")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help="override a config value, e.g. --set optim.lr=3e-3 (repeatable; default: none)")
    p.add_argument("--run-dir", metavar="DIR", help="where the run's logs and checkpoints go (default: runs/<name>)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_run_train)


def _run_train(args: argparse.Namespace) -> int:

    overrides = list(args.overrides) + ([f"run_dir={json.dumps(args.run_dir)}"] if args.run_dir else [])
    summary = train(load_config(args.config, overrides), progress=not args.no_progress)
    if summary["status"] != "finished":
        raise CS336Error(summary["message"] or f"run ended with status {summary['status']}")
    if distributed.from_environment().is_main:  # under torchrun, one line from rank 0
        val = f", val_loss {summary['val_loss']:.4f}" if summary["val_loss"] is not None else ""
        if summary.get("ensemble", 1) > 1:
            steps = " and ".join(f"{s:,}" for s in summary["member_steps"])
            members = ", ".join(f"{v:.4f}" for v in summary["member_val_loss"])
            print(f"finished: {summary['ensemble']} members, {steps} steps ({summary['tokens']:,} tokens in all, {summary['wall_s']:.1f} s)"
                  f"{val} (the members alone: {members}); run dir: {summary['run_dir']}")
        else:
            print(f"finished step {summary['step']} ({summary['tokens']:,} tokens, {summary['wall_s']:.1f} s){val}; run dir: {summary['run_dir']}")
    return 0


# ---------------------------------------------------------------------------------------------
# generate
# ---------------------------------------------------------------------------------------------
def _add_model_source(p: argparse.ArgumentParser) -> None:
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--run", metavar="DIR", help="a training run directory (config.json, checkpoints/, tokenizer)")
    src.add_argument("--checkpoint", metavar="FILE", help="one checkpoint file (then give --tokenizer)")
    p.add_argument("--tokenizer", metavar="DIR", help="directory with vocab.json and merges.txt (default: the run's)")
    p.add_argument("--config", metavar="FILE", help="config with the model section (default: the run's or the checkpoint's)")


def _add_generate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "generate", help="sample text from a trained model",
        description="Continue a prompt with a trained model (temperature, top-p and top-k sampling, KV cache) "
        "and print the prompt and its continuation.", **_FORMAT,
        epilog=_examples(
            "cs336 generate --run runs/demo/run --prompt 'Once upon a time' --temperature 0.8 --top-p 0.95",
            "cs336 generate --checkpoint ckpt.pt --config configs/tinystories.toml --tokenizer runs/tok-10k --prompt 'The'",
        ),
    )
    _add_model_source(p)
    p.add_argument("--prompt", required=True, help="text to continue")
    p.add_argument("--max-new-tokens", type=_positive_int, default=256, metavar="N", help="tokens to sample at most")
    p.add_argument("--temperature", type=float, default=1.0, metavar="T", help="softmax temperature; 0 = greedy")
    p.add_argument("--top-p", type=float, default=1.0, metavar="P", help="nucleus mass to keep; 1.0 = all")
    p.add_argument("--top-k", type=_positive_int, default=None, metavar="K", help="keep only the K most likely tokens (default: all)")
    p.add_argument("--seed", type=int, default=0, metavar="S", help="sampling seed")
    p.add_argument("--no-eos-stop", action="store_true", help="keep going past <|endoftext|>")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N, mps or auto")
    p.set_defaults(func=_run_generate)


def _run_generate(args: argparse.Namespace) -> int:
    text = generate_from_run(
        args.run, checkpoint=args.checkpoint, tokenizer=args.tokenizer, config=args.config, prompt=args.prompt,
        max_new_tokens=args.max_new_tokens, temperature=args.temperature, top_p=args.top_p, top_k=args.top_k,
        seed=args.seed, stop_at_eos=not args.no_eos_stop, device=args.device,
    )
    print(args.prompt + text)
    return 0


# ---------------------------------------------------------------------------------------------
# export
# ---------------------------------------------------------------------------------------------
def _add_export(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export", help="write a trained model in another format (Hugging Face Llama)",
        description="Write a trained model as a Hugging Face Llama directory (config.json, model.safetensors, "
        "tokenizer.json, tokenizer_config.json) that transformers loads with AutoModelForCausalLM and "
        "AutoTokenizer. The files replace earlier ones only when all are written.", **_FORMAT,
        epilog=_examples("cs336 export --run runs/demo/run --to hf runs/demo/hf"),
    )
    _add_model_source(p)
    p.add_argument("--to", nargs=2, required=True, metavar=("FORMAT", "OUT"), help="`hf OUT`: a Hugging Face directory")
    p.set_defaults(func=_run_export)


def _run_export(args: argparse.Namespace) -> int:
    fmt, out = args.to
    if fmt != "hf":
        raise CS336Error(f"unknown export format {fmt!r}; known: hf")
    path = export_hf(args.run, out, checkpoint=args.checkpoint, tokenizer=args.tokenizer, config=args.config)
    print(f"wrote {path}/config.json, model.safetensors, tokenizer.json, tokenizer_config.json")
    return 0


# ---------------------------------------------------------------------------------------------
# sweep
# ---------------------------------------------------------------------------------------------
def _add_sweep(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "sweep",
        help="train every point of a sweep (base config + grid of overrides), one run directory each",
        description="Train every point of a sweep file (configs/sweeps/*.toml): a base training config "
        "plus a grid and/or list of overrides. Points that already finished are skipped; interrupted "
        "ones resume from their checkpoint.", **_FORMAT,
        epilog=_examples("cs336 sweep configs/sweeps/lr_cpu.toml --dry-run", "cs336 sweep configs/sweeps/lr_cpu.toml --parallel 2"),
    )
    p.add_argument("sweep_file", metavar="SWEEP.toml", help="the sweep file, e.g. configs/sweeps/lr_cpu.toml")
    p.add_argument("--parallel", type=_positive_int, default=1, metavar="N", help="train N points at a time")
    p.add_argument("--dry-run", action="store_true", help="list the points and what would run; train nothing")
    p.add_argument("--out-dir", metavar="DIR", help="put the run directories here (default: the sweep file's out_dir)")
    p.set_defaults(func=_run_sweep)


def _run_sweep(args: argparse.Namespace) -> int:
    from cs336.experiments.sweeps import run_sweep  # here: it loads pandas, 0.2 s on every command

    states = run_sweep(args.sweep_file, parallel=args.parallel, dry_run=args.dry_run, out_dir=args.out_dir)
    return 1 if any(s.startswith("failed") for s in states.values()) else 0


# ---------------------------------------------------------------------------------------------
# demo
# ---------------------------------------------------------------------------------------------
def _add_demo(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo",
        help="end to end in a few minutes: train BPE, encode, train a small LM, write a story",
        description="Train a BPE tokenizer on TinyStories, encode it, train a small Transformer LM on a "
        "wall-clock budget (configs/demo.toml) and sample a story. Output goes to runs/demo/.", **_FORMAT,
        epilog=_examples("cs336 demo", "cs336 demo --set max_minutes=0.5 --prompt 'The dog'"),
    )
    p.add_argument("--out", default="runs/demo", metavar="DIR", help="output directory")
    p.add_argument("--vocab-size", type=_positive_int, default=2000, metavar="N", help="BPE vocabulary size")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help="override a training config value, e.g. --set max_minutes=1 (repeatable; default: none)")
    p.add_argument("--prompt", default="Once upon a time", help="the story's beginning")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=_run_demo)


def _run_demo(args: argparse.Namespace) -> int:
    run_demo(args.out, vocab_size=args.vocab_size, overrides=args.overrides, prompt=args.prompt, progress=not args.no_progress)
    return 0


# The subcommands, in the order `cs336 --help` lists them: each section above defines its `_add_*`.
_SUBCOMMANDS = [_add_data, _add_train_bpe, _add_encode, _add_train, _add_generate, _add_export, _add_sweep, _add_demo]


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="cs336",
        description="Language modeling from scratch: tokenizer, Transformer LM, training, decoding.", **_FORMAT,
        epilog="the pipeline, one command a stage:\n"
        "  cs336 train-bpe -> cs336 encode -> cs336 train -> cs336 generate / cs336 export\n"
        "  cs336 demo runs them all in a few minutes; `cs336 COMMAND --help` shows each one's options",
    )
    sub = parser.add_subparsers(dest="command", required=True, help="one stage of the pipeline")
    for add in _SUBCOMMANDS:
        add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (CS336Error, OSError) as e:  # OSError: a file system problem the package did not foresee
        msg = str(e) if isinstance(e, CS336Error) else f"{e.strerror or e}" + (f": {e.filename}" if e.filename else "")
        print("error: " + "; ".join(line.strip() for line in msg.splitlines() if line.strip()), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
