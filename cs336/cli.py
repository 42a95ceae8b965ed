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
    f.add_argument("corpus", choices=["tinystories", "owt"], help="TinyStories V2 (GPT-4) train/valid, or the OpenWebText sample (gzip)")
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
