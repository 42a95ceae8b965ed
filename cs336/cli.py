"""The `cs336` command line: argument parsing only.

Each subcommand calls one package function. Errors the user can fix (`CS336Error`, missing files,
bad values) are printed as one line, `error: ...`, with exit status 2; no traceback.
"""

from __future__ import annotations

import argparse
import sys

from cs336.errors import CS336Error


# ---------------------------------------------------------------------------------------------
# data fetch
# ---------------------------------------------------------------------------------------------
def _add_data(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("data", help="download or copy the full-size corpora into the data directory")
    data_sub = p.add_subparsers(dest="data_command", required=True, metavar="{fetch}")
    f = data_sub.add_parser("fetch", help="fetch a corpus (progress bar, resume, checksum)")
    f.add_argument("corpus", choices=["tinystories", "owt"])
    f.add_argument("--mirror", metavar="DIR", help="copy from this local directory instead of downloading")
    f.add_argument("--dest", metavar="DIR", help="target directory (default: $CS336_DATA_DIR or data/)")
    f.set_defaults(func=_run_data_fetch)


def _run_data_fetch(args: argparse.Namespace) -> int:
    from cs336.data.fetch import fetch

    fetch(args.corpus, mirror=args.mirror, dest=args.dest)
    return 0


# ---------------------------------------------------------------------------------------------
# train-bpe
# ---------------------------------------------------------------------------------------------
def _add_train_bpe(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train-bpe",
        help="train a byte-level BPE tokenizer on a text file",
        description="Train a byte-level BPE and write vocab.json and merges.txt (GPT-2 format) and stats.json.",
    )
    p.add_argument("--input", required=True, metavar="FILE", help="UTF-8 training text")
    p.add_argument("--vocab-size", required=True, type=int, metavar="N", help="bytes + merges + special tokens")
    p.add_argument(
        "--special-token", action="append", default=[], metavar="T", dest="special_tokens",
        help="a special token (repeatable), e.g. '<|endoftext|>'",
    )
    p.add_argument("--out", required=True, metavar="DIR", help="output directory")
    p.add_argument(
        "--workers", type=int, default=None, metavar="K", help="pre-tokenization processes (default: all CPUs)"
    )
    p.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    p.set_defaults(func=_run_train_bpe)


def _run_train_bpe(args: argparse.Namespace) -> int:
    from cs336.tokenization.bpe import train_bpe_to_dir

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


# ---------------------------------------------------------------------------------------------
# train
# ---------------------------------------------------------------------------------------------


# ---------------------------------------------------------------------------------------------
# generate
# ---------------------------------------------------------------------------------------------


# ---------------------------------------------------------------------------------------------
# export
# ---------------------------------------------------------------------------------------------


# ---------------------------------------------------------------------------------------------
# sweep
# ---------------------------------------------------------------------------------------------


# ---------------------------------------------------------------------------------------------
# demo
# ---------------------------------------------------------------------------------------------


# Each section above defines `_add_<name>(sub)`; list them here (one line each) to register them.
_SUBCOMMANDS = [
    "_add_data",
    "_add_train_bpe",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cs336",
        description="Language modeling from scratch: tokenizer, Transformer LM, training, decoding.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for name in _SUBCOMMANDS:
        globals()[name](sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (CS336Error, FileNotFoundError, IsADirectoryError, PermissionError) as e:
        msg = str(e) if isinstance(e, CS336Error) else f"{e.strerror or e}: {e.filename}"
        print(f"error: {msg}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
