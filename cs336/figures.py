"""Saving figures so that re-running a notebook rewrites the same bytes.

Matplotlib stamps its version into PNGs and the date into SVGs and PDFs, and gives SVG elements
random ids; a figure saved with `save_figure` carries none of these, so a figure file changes only
when the figure does. Every figure the package or a notebook writes goes through here.

>>> import matplotlib.pyplot as plt
>>> fig, ax = plt.subplots(); _ = ax.plot([0, 1], [1, 0])
>>> a = save_figure(fig, "/tmp/cs336-figure.png").read_bytes()
>>> a == save_figure(fig, "/tmp/cs336-figure.png").read_bytes()
True
"""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib.pyplot as plt

from cs336.errors import CS336Error
from cs336.outputs import output_file

# What each format would otherwise record about when and with what it was made.
NO_STAMPS = {
    "png": {"Software": None},
    "svg": {"Date": None, "Creator": None},
    "pdf": {"CreationDate": None, "Creator": None, "Producer": None},
}
SVG_HASHSALT = "cs336"  # fixed seed for SVG element ids


def save_figure(fig, path: str | os.PathLike, *, dpi: float | None = None, svg: bool = False, close: bool = False) -> Path:
    """Write `fig` to `path` (PNG, SVG or PDF, from the suffix) without timestamps or version
    stamps; return the path. `dpi` defaults to the `savefig.dpi` setting; `svg=True` also writes
    the same figure beside it as `.svg`. `close=True` also frees the figure (in a notebook it would
    then not be shown below the cell). Where to put figures: `cs336.paths.figures_dir()`."""
    path = Path(path)
    for target in [path, path.with_suffix(".svg")] if svg and path.suffix != ".svg" else [path]:
        fmt = target.suffix.lstrip(".").lower()
        if fmt not in NO_STAMPS:
            raise CS336Error(f"cannot save a figure as {target.name}: use .png, .svg or .pdf")
        output_file(target, "figure")
        with plt.rc_context({"svg.hashsalt": SVG_HASHSALT}):
            fig.savefig(target, metadata=NO_STAMPS[fmt], **({} if dpi is None else {"dpi": dpi}))
    if close:
        plt.close(fig)
    return path
