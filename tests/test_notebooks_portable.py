"""The saved notebooks must replay on any machine: nbval compares each cell's saved output with a
fresh run, so an output that names a path of the machine that saved it (the checkout, the data
directory, a temporary folder, a home directory) fails everywhere else. Cells whose output
legitimately varies carry `# NBVAL_IGNORE_OUTPUT` and are exempt."""

from __future__ import annotations

import json
import os
import re
import tempfile
from pathlib import Path

import pytest

from cs336.data import data_dir

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("[0-9][0-9]_*.ipynb"))
PROJECT_ROOT = Path(__file__).resolve().parents[1]


def machine_paths() -> list[str]:
    """Absolute paths that differ between this machine and another checkout."""
    paths = {PROJECT_ROOT, PROJECT_ROOT.parent, data_dir(), Path(tempfile.gettempdir()), Path.home()}
    if os.environ.get("CS336_DATA_DIR"):
        paths.add(Path(os.environ["CS336_DATA_DIR"]))
    # "/" alone (root's home) would match every path-like string; keep only real folders.
    return sorted({str(p) for p in paths if str(p) != "/"}, key=len, reverse=True)


def checked_outputs(notebook: Path):
    """(cell index, output text) for every output nbval compares."""
    cells = json.loads(notebook.read_text(encoding="utf-8"))["cells"]
    for index, cell in enumerate(cells):
        if cell["cell_type"] != "code":
            continue
        source = "".join(cell["source"])
        if "# NBVAL_IGNORE_OUTPUT" in source or "# NBVAL_SKIP" in source:
            continue
        for output in cell.get("outputs", []):
            text = "".join(output.get("text", [])) + "".join(output.get("data", {}).get("text/plain", []))
            if text:
                yield index, text


def test_notebooks_found():
    assert len(NOTEBOOKS) == 10, [p.name for p in NOTEBOOKS]


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.name)
def test_saved_outputs_name_no_machine_path(notebook: Path):
    pattern = re.compile("|".join(re.escape(p) + r"(?![\w.-])" for p in machine_paths()))
    leaks = [
        f"cell {index}: {match.group(0)!r} in {text.strip()[:120]!r}"
        for index, text in checked_outputs(notebook)
        for match in [pattern.search(text)]
        if match
    ]
    assert not leaks, f"{notebook.name}: saved output names a path of this machine: {leaks}"


def test_the_check_catches_a_leak(tmp_path: Path):
    """The scan above is not vacuous: a cell printing the data directory is reported."""
    leaky = {"cells": [{"cell_type": "code", "source": ["print(data_dir())"], "metadata": {},
                        "outputs": [{"output_type": "stream", "name": "stdout", "text": [f"{data_dir()}\n"]}]},
                       {"cell_type": "code", "source": ["# NBVAL_IGNORE_OUTPUT\nprint(data_dir())"], "metadata": {},
                        "outputs": [{"output_type": "stream", "name": "stdout", "text": [f"{data_dir()}\n"]}]}]}
    path = tmp_path / "01_leak.ipynb"
    path.write_text(json.dumps(leaky), encoding="utf-8")
    with pytest.raises(AssertionError, match="cell 0"):
        test_saved_outputs_name_no_machine_path(path)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["01_unicode", "02_bpe_training", "03_tokenizer_experiments"])
def test_notebook_runs_from_another_directory_with_no_variables(name, tmp_path, monkeypatch):
    """As a user opens it: a kernel started elsewhere (not in notebooks/), no CS336_DATA_DIR; the
    data, assets and figures are found from the package's location. Figures go to a temporary
    folder so the committed ones stay as they are."""
    nbclient = pytest.importorskip("nbclient")
    import nbformat

    monkeypatch.delenv("CS336_DATA_DIR", raising=False)
    monkeypatch.setenv("CS336_FIGURES_DIR", str(tmp_path / "figures"))
    nb = nbformat.read(PROJECT_ROOT / "notebooks" / f"{name}.ipynb", as_version=4)
    client = nbclient.NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}})
    client.execute()  # raises CellExecutionError, naming the cell, on any failure
    assert any("outputs" in c and c["outputs"] for c in nb.cells if c.cell_type == "code")
