"""The conda environment and pyproject.toml install the same packages; the torch pins are the machine's."""
import re
import tomllib
from pathlib import Path

from overthink_lib.notebooks import list_notebooks

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


def test_environment_matches_pyproject():
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    env = [d for d in _pip_lines_from_environment() if d != "-e ."]
    assert sorted(env) == sorted(deps)
    assert "torch==2.14.1" in deps and "torchvision==0.29.1" in deps
    for pkg in ("jupyterlab", "ipywidgets", "pandas", "seaborn", "plotly", "grad-cam", "papermill", "nbval"):
        assert pkg in deps


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
