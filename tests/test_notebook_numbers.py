"""Every number in a notebook's prose is printed by a code cell of that notebook, or is a marked
quote. A reader who sees "4.09 bytes per token" in the text finds the cell that computed it; a
figure that changes when the code or the data changes cannot silently go stale in the prose.

What counts as a claim (the conventions the notebooks follow):

* Prose is the text of markdown cells. Numbers inside code spans (`d_ff = 4·d`), fenced code blocks,
  link targets (`[text](target)`) and bare URLs are code or addresses, not claims.
* A quote is a Markdown blockquote (lines starting with `>`); its numbers are exempt, and the
  blockquote must name its source where it starts: `> write-up: ...` or `> handout: ...`
  (a section may follow the source, as in `> write-up §05: ...`). Quoted figures are checked
  against their source by hand, not here.
* Names are not claims: the notebook's number in its `# NN · title`, a section reference (`§07`),
  a reference to another notebook (notebook 02), and a number joined to a word by letters or a hyphen (GPT-2, UTF-8, uint16, U+0080, top-k). A
  quantity written as a compound (a 4-layer model) is a claim: the digits start the word.
* A superscript exponent is not read (in 128² the claim checked is 128).

When is a prose number backed? When some output of a code cell of the same notebook (stream text,
`text/plain` or `text/html`) shows a number that rounds to it at the prose's precision. Cells marked
`# NBVAL_IGNORE_OUTPUT` do not count: their outputs (timings, memory) change from run to run, so a
figure taken from them would be stale after the next run. Prose with d decimals accepts any output
within half a unit of the d-th decimal (prose 4.09 is backed by an output 4.0908, 26.30 is not
backed by 26.27); prose in e-notation is rounded at its mantissa's last digit (2.1e18 is backed by
2.09e+18). Thousands separators are ignored (2,316 matches 2316) and so are signs (−0.41 matches
0.41).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

NOTEBOOKS_DIR = Path(__file__).resolve().parents[1] / "notebooks"
CHECKED = [
    "01_unicode.ipynb",
    "02_bpe_training.ipynb",
    "03_tokenizer_experiments.ipynb",
    "04_transformer_accounting.ipynb",
    "05_optimizers.ipynb",
    "06_training_tinystories.ipynb",
    "07_generation.ipynb",
    "08_ablations.ipynb",
    "09_owt_main_experiment.ipynb",
    "10_leaderboard.ipynb",
]
QUOTE_SOURCES = ("write-up", "handout")
VOLATILE = "# NBVAL_IGNORE_OUTPUT"  # a cell whose output changes from run to run (timings)

_DIGITS = r"(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:[eE][-+]?\d+)?"
# Prose: not inside a word or a longer number, not after "§", not after a hyphen or plus joined to
# a letter (GPT-2, U+0080).
PROSE_NUMBER = re.compile(r"(?<![\w.,§])(?<![^\W\d_][-+])" + _DIGITS)
OUTPUT_NUMBER = re.compile(r"(?<!\d)(?<!\d\.)" + _DIGITS)  # "0..65,535" shows 65,535
QUOTE_START = re.compile(r"^\s*>\s*(?:\*\*|_)?(?:" + "|".join(map(re.escape, QUOTE_SOURCES)) + r")\b[^:\n]{0,40}:")


def _parse(text: str) -> tuple[float, float]:
    """(value, tolerance) of a number as written: half a unit of its last digit."""
    plain = text.replace(",", "")
    mantissa, _, exponent = plain.lower().partition("e")
    decimals = len(mantissa.partition(".")[2])
    return abs(float(plain)), 0.5 * 10.0 ** (int(exponent or 0) - decimals)


def _cell_text(cell: dict) -> str:
    source = cell["source"]
    return source if isinstance(source, str) else "".join(source)


def prose(markdown: str) -> str:
    """The markdown with everything that is not a claim blanked out (see the module docstring)."""
    text = re.sub(r"^(```|~~~).*?^\1[^\n]*$", " ", markdown, flags=re.S | re.M)  # fenced code blocks
    text = re.sub(r"(`+)(?:(?!\1).)+?\1", " ", text, flags=re.S)  # code spans
    text = re.sub(r"\]\([^)]*\)", "]", text)  # link targets
    text = re.sub(r"<?https?://[^\s>)]+>?", " ", text)  # bare URLs
    text = re.sub(r"^(#\s+)\d+(?=\s*·)", r"\1", text, flags=re.M)  # "# 05 · Optimizers"
    text = re.sub(r"\b([Nn]otebooks?\s+)\d\d\b", r"\1", text)  # "notebook 02"
    return "\n".join(line for line in text.splitlines() if not line.lstrip().startswith(">"))


def prose_numbers(markdown: str) -> list[tuple[str, float, float]]:
    """(as written, value, tolerance) of every number the prose claims."""
    return [(m.group(0), *_parse(m.group(0))) for m in PROSE_NUMBER.finditer(prose(markdown))]


def output_texts(cell: dict) -> list[str]:
    texts = []
    for output in cell.get("outputs", []):
        if "text" in output:
            texts.append(_cell_text({"source": output["text"]}))
        data = output.get("data", {})
        for mime in ("text/plain", "text/html"):
            if mime in data:
                texts.append(_cell_text({"source": data[mime]}))
    return texts


def output_numbers(cells: list[dict]) -> list[float]:
    """The numbers shown by the outputs that a re-run reproduces (see the module docstring)."""
    return sorted(
        _parse(m.group(0))[0]
        for cell in cells if cell["cell_type"] == "code" and VOLATILE not in _cell_text(cell)
        for text in output_texts(cell)
        for m in OUTPUT_NUMBER.finditer(text)
    )


def unbacked_numbers(notebook: dict) -> list[tuple[int, str]]:
    """(cell index, number as written) for each prose number no code output shows."""
    printed = output_numbers(notebook["cells"])
    missing = []
    for index, cell in enumerate(notebook["cells"]):
        if cell["cell_type"] != "markdown":
            continue
        for written, value, tolerance in prose_numbers(_cell_text(cell)):
            slack = tolerance * (1 + 1e-9)
            if not any(abs(value - shown) <= slack for shown in printed):
                missing.append((index, written))
    return missing


def unsourced_quotes(notebook: dict) -> list[tuple[int, str]]:
    """(cell index, first line) of each blockquote that does not start by naming its source."""
    found = []
    for index, cell in enumerate(notebook["cells"]):
        if cell["cell_type"] != "markdown":
            continue
        text = re.sub(r"^(```|~~~).*?^\1[^\n]*$", " ", _cell_text(cell), flags=re.S | re.M)
        previous_quoted = False
        for line in text.splitlines():
            quoted = line.lstrip().startswith(">")
            if quoted and not previous_quoted and not QUOTE_START.match(line):
                found.append((index, line.strip()))
            previous_quoted = quoted
    return found


def _load(name: str) -> dict:
    return json.loads((NOTEBOOKS_DIR / name).read_text(encoding="utf-8"))


@pytest.mark.parametrize("name", CHECKED)
def test_prose_numbers_are_printed(name):
    missing = unbacked_numbers(_load(name))
    assert not missing, f"{name}: prose numbers no code cell prints: " + ", ".join(
        f"cell {index}: {written}" for index, written in missing)


@pytest.mark.parametrize("name", CHECKED)
def test_quotes_name_their_source(name):
    unsourced = unsourced_quotes(_load(name))
    assert not unsourced, f"{name}: blockquotes must start with one of {QUOTE_SOURCES} and a colon: {unsourced}"


def test_checked_notebooks_exist():
    assert all((NOTEBOOKS_DIR / name).is_file() for name in CHECKED)


def _notebook(markdown: str, output: str, code: str = "") -> dict:
    return {"cells": [
        {"cell_type": "markdown", "source": markdown},
        {"cell_type": "code", "source": code, "outputs": [{"output_type": "stream", "name": "stdout", "text": output}]},
    ]}


@pytest.mark.parametrize("markdown, output, missing", [
    ("The loss starts at 26.30.", "26.27\n", ["26.30"]),  # a stale figure
    ("The loss starts at 26.27.", "26.27\n", []),
    ("4.09 bytes per token", "4.0908\n", []),  # rounded at the prose's precision
    ("4.1 bytes per token", "4.0908\n", []),
    ("4.0 bytes per token", "4.0908\n", ["4.0"]),
    ("2,316 stories", "2316\n", []),  # thousands separators
    ("factors −0.41 and 5", "-0.41\n5\n", []),  # signs
    ("ends near 2.1e18", "2.09e+18\n", []),
    ("ends near 2.5e18", "2.435e+18\n", ["2.5e18"]),
    ("a 4-layer model", "4 layers\n", []),
    ("a 4-layer model", "3 layers\n", ["4"]),
    ("# 05 · Optimizers\n\nGPT-2, UTF-8, uint16, U+0080, §07, notebook 02", "nothing\n", []),  # names
    ("`x = 12` and\n```\ny = 13\n```\n[a link](notes-14.md), https://example.org/15", "none\n", []),
    ("> write-up: lr 10 decays from 22.55 to 3.03", "none\n", []),  # a marked quote
])
def test_checker(markdown, output, missing):
    assert [written for _, written in unbacked_numbers(_notebook(markdown, output))] == missing


def test_checker_ignores_outputs_that_vary():
    timed = _notebook("encoding ran at 4.87 MB/s", "4.87 MB/s\n", code="# NBVAL_IGNORE_OUTPUT\nprint(rate)")
    assert unbacked_numbers(timed) == [(0, "4.87")]


def test_quotes_must_name_their_source():
    assert unsourced_quotes(_notebook("> write-up: 22.55\n> and 3.03", "")) == []
    assert unsourced_quotes(_notebook("> handout §7.2: 327,680,000 tokens", "")) == []
    assert unsourced_quotes(_notebook("Text.\n\n> 22.55 to 3.03", "")) == [(0, "> 22.55 to 3.03")]
