"""The environment is the lock: environment.yml and `make venv` install requirements.lock, which pins every
package pyproject.toml needs (transitive ones too); the torch pins are the machine's."""

import re
from pathlib import Path

import tomllib

from overthink_lib.suite import list_notebooks

ROOT = Path(__file__).resolve().parent.parent


def _pip_lines_from_environment() -> list[str]:
    lines, inside = [], False
    for line in (ROOT / "environment.yml").read_text().splitlines():
        if re.match(r"^\s+- pip:\s*$", line):
            inside = True
            continue
        if inside:
            m = re.match(r"^\s{6}- (.+?)\s*$", line)
            if not m:
                break
            lines.append(m.group(1))
    return lines


def _lock() -> dict[str, str]:
    """requirements.lock as {canonical name: version}; every line is ``name==version``, each name once."""
    from packaging.utils import canonicalize_name

    pins: dict[str, str] = {}
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        m = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;=]+)", line.strip())
        assert m, f"requirements.lock: {line!r} is not name==version"
        name = canonicalize_name(m.group(1))
        assert name not in pins, f"requirements.lock: {name} twice"
        pins[name] = m.group(2)
    return pins


def test_environment_installs_the_lock_and_the_lock_covers_pyproject():
    """environment.yml installs exactly the lock; the lock pins every dependency pyproject.toml names, at the versions
    pyproject pins (torch, torchvision)."""
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    assert _pip_lines_from_environment() == ["-r requirements.lock", "-e ."]
    deps = [Requirement(d) for d in tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]]
    pins = _lock()
    for dep in deps:
        name = canonicalize_name(dep.name)
        assert name in pins, f"{dep.name} is a dependency in pyproject.toml but not in requirements.lock: make lock"
        assert dep.specifier.contains(pins[name], prereleases=True), (
            f"requirements.lock pins {name}=={pins[name]}, pyproject.toml asks {dep}: make lock"
        )
    names = {canonicalize_name(d.name) for d in deps}
    assert {
        "torch",
        "torchvision",
        "jupyterlab",
        "ipywidgets",
        "pandas",
        "seaborn",
        "plotly",
        "grad-cam",
        "papermill",
        "nbval",
        "ruff",
    } <= names
    assert pins["torch"] == "2.14.1" and pins["torchvision"] == "0.29.1"


def test_the_lock_is_closed_and_installed():
    """What runs the tests is the lock: every locked package is installed at its version, and whatever a locked
    package needs (on this platform) is locked too — nothing is resolved afresh on a new machine."""
    import importlib.metadata as md

    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    pins = _lock()
    wrong, open_ends = [], []
    for name, version in pins.items():
        try:
            have = md.version(name)
        except md.PackageNotFoundError:
            wrong.append(f"{name} not installed")
            continue
        if have != version:
            wrong.append(f"{name} {have} installed, {version} locked")
        for req in md.requires(name) or []:
            req = Requirement(req)
            if req.marker is not None and not req.marker.evaluate({"extra": ""}):
                continue
            if canonicalize_name(req.name) not in pins:
                open_ends.append(f"{name} needs {req.name}")
    assert wrong == [], "the environment is not the lock (make venv reinstalls it): " + "; ".join(wrong)
    assert open_ends == [], "requirements.lock misses: " + "; ".join(open_ends)


def test_committed_notebooks_have_no_outputs():
    import nbformat

    books = sorted((ROOT / "notebooks").glob("*.ipynb"))
    assert books, "the suite has no notebooks"
    for book in books:
        nb = nbformat.read(book, as_version=4)
        assert [c for c in nb.cells if c.cell_type == "code" and c.get("outputs")] == [], book.name
        tagged = [c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", [])]
        assert len(tagged) == 1, f"{book.name} needs exactly one cell tagged 'parameters'"


def test_papermill_sees_every_parameter():
    """papermill's parser skips lines it cannot read (e.g. an '=' in a comment); then a parameter would be refused."""
    import ast

    import nbformat
    import papermill

    for book in list_notebooks():
        nb = nbformat.read(book, as_version=4)
        cell = next(c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", []))
        names = {t.id for node in ast.parse(cell.source).body for t in node.targets}
        assert set(papermill.inspect_notebook(str(book))) == names, book.name
