"""The write-up as one HTML page: the executed notebooks, in order, with their figures inlined.

`make writeup` runs `python -m cs336.experiments.writeup`, which concatenates
`notebooks/NN_*.ipynb` (stored executed; nothing is re-run) into one notebook, one section per
notebook, and renders it with nbconvert's HTML exporter. Images that markdown cells reference from
`figures/` are embedded, so the page stands alone.

>>> export_writeup("notebooks", "build/writeup.html")   # doctest: +SKIP
PosixPath('build/writeup.html')
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from cs336.errors import CS336Error

NOTEBOOK_RE = re.compile(r"^\d\d_.*\.ipynb$")


def notebook_paths(folder: str | Path) -> list[Path]:
    """The numbered notebooks of `folder`, in reading order (`01_…` first)."""
    paths = sorted(p for p in Path(folder).iterdir() if NOTEBOOK_RE.match(p.name))
    if not paths:
        raise CS336Error(f"no numbered notebooks (NN_name.ipynb) in {folder}")
    return paths


def combine(paths: list[Path]):
    """One notebook holding every cell of `paths`, each notebook's cells after a divider."""
    import nbformat  # here: the `notebooks` extra, needed only for the write-up

    book = nbformat.v4.new_notebook()
    for path in paths:
        nb = nbformat.read(path, as_version=4)
        book.metadata = book.metadata or nb.metadata
        book.cells.append(nbformat.v4.new_markdown_cell(f"<hr id='{path.stem}'>\n\n*Notebook `{path.name}`*"))
        book.cells.extend(nb.cells)
    return book


def export_writeup(folder: str | Path = "notebooks", out: str | Path = "build/writeup.html") -> Path:
    """Write the combined, executed notebooks of `folder` as one self-contained HTML page."""
    try:
        from nbconvert import HTMLExporter  # here: the `notebooks` extra
    except ModuleNotFoundError:
        raise CS336Error("the write-up needs nbconvert: pip install -e '.[notebooks]'") from None
    paths = notebook_paths(folder)
    exporter = HTMLExporter()
    exporter.embed_images = True  # markdown ![](../figures/x.png) becomes a data: URI
    html, _ = exporter.from_notebook_node(combine(paths), resources={"metadata": {"path": str(Path(folder).resolve())}})
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(html, encoding="utf-8")
    return out


if __name__ == "__main__":
    args = sys.argv[1:]
    print(export_writeup(*args))
