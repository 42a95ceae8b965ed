"""Where the workbook's files are, whatever the working directory.

The data directory (one rule for the whole project):

1. `$CS336_DATA_DIR` when set;
2. else the checkout's `data/`, found from this package's location;
3. else, for a package installed without a checkout, `$XDG_DATA_HOME/cs336` (`~/.local/share/cs336`).

The checkout's `data/` ships small real samples (see `data/README.md`); `sample_path` finds them in
the data directory or, when that holds only full-size corpora, in the checkout.

Committed experiment results live in `results/`; figures are written to `figures/`, or to
`$CS336_FIGURES_DIR` when set (`make test` sets it, so running the notebooks as tests rewrites no
committed figure).
"""

from __future__ import annotations

import os
from pathlib import Path

from cs336.errors import CS336Error

PROJECT_ROOT = Path(__file__).resolve().parents[1]
# The checkout's data folder; a package installed into site-packages has none beside it.
CHECKOUT_DATA = PROJECT_ROOT / "data" if (PROJECT_ROOT / "pyproject.toml").is_file() else None


def user_data_dir() -> Path:
    """Where an installed package without a checkout keeps data: `$XDG_DATA_HOME/cs336`."""
    base = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(base).expanduser() / "cs336"


def data_dir() -> Path:
    """The data directory: `$CS336_DATA_DIR`, else the checkout's `data/`, else `user_data_dir()`."""
    env = os.environ.get("CS336_DATA_DIR")
    if env:
        return Path(env).expanduser().resolve()
    return CHECKOUT_DATA if CHECKOUT_DATA is not None else user_data_dir()


def sample_path(relative: str | os.PathLike) -> Path:
    """A shipped sample (e.g. `"cs336-fixtures/corpus.en"`): from the data directory when it has
    it, else from the checkout's `data/`.

    >>> sample_path("tinystories/TinyStories-valid-800K.txt").stat().st_size
    794375
    """
    candidates = [data_dir() / relative]
    if CHECKOUT_DATA is not None and CHECKOUT_DATA != data_dir():
        candidates.append(CHECKOUT_DATA / relative)
    for path in candidates:
        if path.is_file():
            return path
    raise CS336Error(f"sample {relative} not found in {' or '.join(str(p.parent) for p in candidates)}")


def figures_dir() -> Path:
    """Where figures are written: `$CS336_FIGURES_DIR`, else the checkout's `figures/`."""
    env = os.environ.get("CS336_FIGURES_DIR")
    return Path(env).expanduser().resolve() if env else PROJECT_ROOT / "figures"


RESULTS_DIR = PROJECT_ROOT / "results"  # committed experiment logs
CONFIGS_DIR = PROJECT_ROOT / "configs"
