"""ARCHITECTURE.md's import rule, checked: a module imports from its own layer or a lower one, and
the core's three parts (tokenization, model, training primitives) never import each other."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "cs336"
LAYERS = {  # module prefix -> layer (the longest matching prefix wins)
    "cs336.errors": 0, "cs336.paths": 0, "cs336.outputs": 0, "cs336.figures": 0,
    "cs336.tokenization": 1, "cs336.model": 1, "cs336.training.loss": 1, "cs336.training.optim": 1,
    "cs336.training.data": 1, "cs336.training.muon": 1, "cs336.training.checkpoint": 1, "cs336.training.distributed": 1,
    "cs336.data": 2, "cs336.training.config": 2, "cs336.accounting": 2, "cs336.provenance": 2,
    "cs336.runs": 3, "cs336.training.runlog": 3,
    "cs336.training.trainer": 4, "cs336.training.ensemble": 4, "cs336.generation": 4, "cs336.export": 4,
    "cs336.experiments": 5, "cs336.demo": 5,
    "cs336.cli": 6, "cs336.__main__": 6, "cs336": 6, "cs336.training": 6,  # package __init__s re-export
}
CORE_PARTS = ("cs336.tokenization", "cs336.model", "cs336.training")


def layer_of(module: str) -> int:
    key = max((k for k in LAYERS if module == k or module.startswith(k + ".")), key=len, default=None)
    if key is None:
        raise AssertionError(f"{module} has no layer in tests/test_architecture.py and ARCHITECTURE.md")
    return LAYERS[key]


def modules():
    for path in sorted(PACKAGE.rglob("*.py")):
        name = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts).removesuffix(".__init__")
        yield name, path


def package_imports(path: Path):
    """(imported module, line) for every import of the package in `path`."""
    names = {name for name, _ in modules()}
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "cs336":
            for alias in node.names:  # `from cs336.training import distributed` imports a module
                sub = f"{node.module}.{alias.name}"
                yield (sub if sub in names else node.module), node.lineno
        elif isinstance(node, ast.Import):
            yield from ((a.name, node.lineno) for a in node.names if a.name.split(".")[0] == "cs336")


@pytest.mark.parametrize("name, path", list(modules()), ids=lambda v: v if isinstance(v, str) else "")
def test_imports_go_down_the_layers(name, path):
    own = layer_of(name)
    upward = [f"line {line}: {target} (layer {layer_of(target)})" for target, line in package_imports(path)
              if layer_of(target) > own]
    assert not upward, f"{name} (layer {own}) imports a higher layer: {upward}"


@pytest.mark.parametrize("name, path", [(n, p) for n, p in modules() if layer_of(n) == 1], ids=lambda v: v if isinstance(v, str) else "")
def test_the_core_parts_do_not_import_each_other(name, path):
    part = next(p for p in CORE_PARTS if name.startswith(p))
    crossing = [t for t, _ in package_imports(path) if layer_of(t) == 1 and not t.startswith(part)]
    assert not crossing, f"{name} imports another part of the core: {crossing}"


def test_the_rule_catches_an_upward_import(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("from cs336.training.trainer import train\n")
    assert [t for t, _ in package_imports(bad) if layer_of(t) > layer_of("cs336.model.layers")] == ["cs336.training.trainer"]
