"""The library's layers (ARCHITECTURE.md, "Layers"): a module imports only from its own layer or the ones above it.

Read from the source with `ast`, so a new upward import fails here before anyone runs it. The analyses (the
`analysis/` package) import nothing but `config`, `records` and each other: they read records, never a model.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

LIB = Path(__file__).resolve().parents[1] / "overthink_lib"

# top-level module or package of overthink_lib -> its layer, in the order of ARCHITECTURE.md's table
LAYERS = {
    "__init__": 0,
    "config": 0,
    "io": 0,
    "data": 1,
    "models": 2,
    "records": 3,
    "analysis": 4,
    "flops": 5,
    "speed": 5,
    "malloc": 5,
    "train": 5,
    "recording": 5,
    "dynamic": 5,
    "cams": 5,
    "cam_study": 5,
    "experiments": 6,
    "plots": 7,
    "widgets": 7,
    "results": 7,
    "jobs": 7,
    "notebooks": 7,
    "suite": 7,
    "__main__": 7,
}
ANALYSIS_MAY_IMPORT = {"__init__", "config", "io", "records", "analysis"}


def _modules():
    return sorted(p for p in LIB.rglob("*.py"))


def _unit(path: Path) -> str:
    """The layer unit a file belongs to: its top-level module, or the package it sits in."""
    rel = path.relative_to(LIB)
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


def _imported_units(path: Path, lib: Path = LIB):
    """(line, unit) for every import of an overthink_lib module in `path`, relative or absolute."""
    rel = path.relative_to(lib)
    package = list(rel.parts[:-1])  # the package the file is in, below overthink_lib
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)] if node.level > 1 else package
                if node.level - 1 > len(package):
                    raise AssertionError(f"{rel}:{node.lineno} imports above the package")
                parts = base + (node.module.split(".") if node.module else [])
            elif node.module and node.module.split(".")[0] == "overthink_lib":
                parts = node.module.split(".")[1:]
            else:
                continue
            if parts:
                yield node.lineno, parts[0]
            else:  # "from . import x, y" at the top level: a module each, or a name of __init__
                for alias in node.names:
                    name = alias.name
                    is_module = (lib / f"{name}.py").exists() or (lib / name).is_dir()
                    yield node.lineno, name if is_module else "__init__"
        elif isinstance(node, ast.Import):
            for alias in node.names:
                names = alias.name.split(".")
                if names[0] == "overthink_lib":
                    yield node.lineno, names[1] if len(names) > 1 else "__init__"


def test_every_module_has_a_layer():
    units = {_unit(p) for p in _modules()}
    assert units - set(LAYERS) == set(), "a new module: give it a layer here and in ARCHITECTURE.md"
    assert set(LAYERS) - units == set(), "a module in the table is gone: drop it here and in ARCHITECTURE.md"


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(LIB)))
def test_imports_point_up_the_layers(path):
    unit = _unit(path)
    wrong = []
    for line, target in _imported_units(path):
        if target not in LAYERS:
            wrong.append(f"line {line}: unknown module {target!r}")
        elif LAYERS[target] > LAYERS[unit]:
            wrong.append(f"line {line}: {unit} (layer {LAYERS[unit]}) imports {target} (layer {LAYERS[target]})")
        elif unit == "analysis" and target not in ANALYSIS_MAY_IMPORT:
            wrong.append(f"line {line}: an analysis imports {target}; analyses read records only")
    assert wrong == [], f"{path.relative_to(LIB)}: " + "; ".join(wrong)


def test_the_check_sees_an_upward_import(tmp_path):
    """The parser itself: an analysis importing train, written three ways, is found."""
    fake = tmp_path / "overthink_lib"
    (fake / "analysis").mkdir(parents=True)
    (fake / "train.py").write_text("")
    bad = fake / "analysis" / "bad.py"
    bad.write_text(
        "from ..train import fit\nfrom . import stats\nimport overthink_lib.experiments\nfrom .. import train\n"
    )
    found = list(_imported_units(bad, fake))
    assert found == [(1, "train"), (2, "analysis"), (3, "experiments"), (4, "train")]
