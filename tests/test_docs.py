"""The repository's docs and comments: no stale references, a short README, relative links that resolve.

Stale references are pointers to things a reader of this repository cannot follow: files outside it (a requirements
text, the thesis as a local file, a shared folder), tickets of a tracker, or the working sessions that wrote the code.
Cite the thesis by its title and its section, equation or algorithm numbers, and papers by author and year.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README_MAX_LINES = 250

#: Text files the scan reads: by suffix, or by their path in the repository.
SUFFIXES = {".py", ".md", ".ipynb", ".yml", ".yaml", ".toml", ".cfg"}
NAMES = {"Makefile", ".ci/run"}

#: (name, pattern) of what must not appear. Case matters only where it says so.
FORBIDDEN = [
    ("requirements-spec citation", re.compile(r"SPEC §|SPEC\.md|\bSPEC\b")),
    ("path outside the repository", re.compile(r"\.\./shared|/work/shared")),
    ("the thesis as a local file", re.compile(r"thesis\.txt")),
    ("issue-tracker reference", re.compile(r"\bissues?[- ]?#?\d+|\bthis issue\b|\bthe issue's\b", re.I)),
    ("working-session reference", re.compile(r"\bsessions?\b", re.I)),
]

#: Allowed exceptions: (path, pattern name, regex a matching line must also match to be allowed).
ALLOWED = [
    # pytest's fixture scope
    ("tests/conftest.py", "working-session reference", re.compile(r'scope="session"')),
    # a JupyterLab browser session: the test's Session class, its `session` fixture and JupyterLab's sessionContext
    (
        "tests/browser/test_jupyterlab.py",
        "working-session reference",
        re.compile(r"\bSession\b|\bsession\b\s*[(),.:\"']|[.\"]session\b|=\s*session\s*$"),
    ),
    # the kernel's `__session__` (the notebook's path in JupyterLab) and the variable holding it
    ("overthink_lib/notebooks.py", "working-session reference", re.compile(r"__session__|\(session\b")),
]
#: This file names the patterns it looks for.
SKIP = {"tests/test_docs.py"}

LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")


def repository_text_files(root: Path = ROOT) -> list[Path]:
    """The text files git tracks (and new ones it would track), by :data:`SUFFIXES` and :data:`NAMES`."""
    try:
        out = subprocess.run(
            ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout: no list of tracked files")
    paths = []
    for rel in sorted(set(out.splitlines())):
        p = root / rel
        if rel not in SKIP and (p.suffix in SUFFIXES or rel in NAMES) and p.is_file():
            paths.append(p)
    return paths


def _allowed(rel: str, name: str, line: str) -> bool:
    return any(rel == path and name == what and ok.search(line) for path, what, ok in ALLOWED)


def stale_references(paths: list[Path], root: Path = ROOT) -> list[str]:
    """``file:line: what: text`` for every forbidden pattern in ``paths`` that no :data:`ALLOWED` entry excuses."""
    found = []
    for p in paths:
        rel = p.relative_to(root).as_posix() if p.is_relative_to(root) else str(p)
        text = p.read_text(encoding="utf-8", errors="replace")
        for n, line in enumerate(text.splitlines(), 1):
            for name, pattern in FORBIDDEN:
                if pattern.search(line) and not _allowed(rel, name, line):
                    found.append(f"{rel}:{n}: {name}: {line.strip()[:160]}")
    return found


def broken_links(paths: list[Path], root: Path = ROOT) -> list[str]:
    """``file:line: target`` for every relative Markdown link in ``paths`` whose file does not exist in ``root``."""
    found = []
    for p in paths:
        rel = p.relative_to(root).as_posix() if p.is_relative_to(root) else str(p)
        for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1):
            for target in LINK.findall(line):
                if re.match(r"[a-z][a-z0-9+.-]*:", target, re.I) or target.startswith("#"):
                    continue  # a URL (https:, mailto:) or an anchor in the same file
                dest = (p.parent / target.split("#", 1)[0]).resolve()
                if not dest.is_relative_to(root.resolve()) or not dest.exists():
                    found.append(f"{rel}:{n}: {target}")
    return found


def linked_docs(root: Path = ROOT) -> list[Path]:
    return [root / "README.md", root / "ARCHITECTURE.md", *sorted((root / "docs").glob("*.md"))]


def test_no_stale_references_in_the_repository():
    paths = repository_text_files()
    assert len(paths) > 20, "the scan found almost no files: is the file list right?"
    found = stale_references(paths)
    assert not found, "stale references (say what is meant, or cite the thesis/paper):\n" + "\n".join(found)


def test_readme_is_short():
    n = len((ROOT / "README.md").read_text(encoding="utf-8").splitlines())
    assert n <= README_MAX_LINES, f"README.md has {n} lines (at most {README_MAX_LINES}): move detail to docs/"


def test_relative_links_resolve():
    paths = [p for p in linked_docs() if p.is_file()]
    assert ROOT / "README.md" in paths
    found = broken_links(paths)
    assert not found, "links to files that do not exist:\n" + "\n".join(found)


def test_the_checks_fail_on_bad_input(tmp_path):
    bad = tmp_path / "bad.md"
    bad.write_text(
        "fine line\nas in SPEC §3\nsee ../shared/x\nread thesis.txt\nfixed in issue-14\n"
        "this session did it\n[gone](docs/missing.md) [ok](bad.md) [web](https://x.org) [anchor](#top)\n"
        "[escape](../outside.md)\n",
        encoding="utf-8",
    )
    code = tmp_path / "mod.py"
    code.write_text('"""Fine."""\n# measured in issue #16 on AVX2\nx = 1  # a known issue of torch\n', encoding="utf-8")
    found = stale_references([bad, code], tmp_path)
    assert [f.split(": ")[0] for f in found] == ["bad.md:2", "bad.md:3", "bad.md:4", "bad.md:5", "bad.md:6", "mod.py:2"]
    assert "requirements-spec citation" in found[0] and "working-session reference" in found[4]
    links = broken_links([bad], tmp_path)
    assert links == ["bad.md:7: docs/missing.md", "bad.md:8: ../outside.md"]


def test_allowed_exceptions_are_narrow(tmp_path):
    """An exception excuses its own use of a word, not every line of its file."""
    conftest = tmp_path / "tests" / "conftest.py"
    conftest.parent.mkdir()
    conftest.write_text('@pytest.fixture(scope="session")\n# written in the last session\n', encoding="utf-8")
    assert [f.split(": ")[0] for f in stale_references([conftest], tmp_path)] == ["tests/conftest.py:2"]


#: Files ARCHITECTURE.md names that a run writes (not in the repository).
PRODUCED = {"results.json"}


def test_architecture_names_files_that_exist():
    """Every file or folder ARCHITECTURE.md names in backticks (``experiments/``, ``graph.py``) is in the repository:
    at the top, in the library, in one of its packages, in benchmarks/ or tests/. A move that leaves the map stale
    fails here."""
    text = (ROOT / "ARCHITECTURE.md").read_text(encoding="utf-8")
    names = set(re.findall(r"`([\w./-]+\.(?:py|md|json|sh)|[\w-]+/(?:[\w-]+/)*)`", text)) - PRODUCED
    lib = ROOT / "overthink_lib"
    missing = [
        n
        for n in sorted(names)
        if not any(
            p.exists() for p in (ROOT / n, lib / n, ROOT / "benchmarks" / n, ROOT / "tests" / n, *lib.glob(f"*/{n}"))
        )
    ]
    assert len(names) > 40 and not missing, missing
