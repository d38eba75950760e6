"""Notebooks hold prose, parameters, library calls and plots (ARCHITECTURE.md): logic lives in the library.

Reads every notebook's code cells and counts code lines (neither blank nor comment) and the statements that mean
logic: ``def``, ``class``, ``for``, ``while``. Each notebook has a budget; a notebook over it fails, and so does a
budget above what the notebook needs (so the budgets only come down). The aim is ≤ 60 lines and no logic statement
in every notebook: none holds a loop or a definition any more, and every notebook's numbers and sentences come from
library calls that return them (``analysis.budgeted``, ``overthinking.report``, ``cam_study``, ``dct_study``,
``imta_study``, ``policy_study``, ``stochasticity``, ``rule_study``); the line budgets are what each holds today
(08, with its two parts and eight figures, the longest).
"""

from __future__ import annotations

import ast
import json

import pytest

from overthink_lib.suite import list_notebooks

#: notebook prefix -> (code lines, def/class/for/while statements) it may hold at most
BUDGET = {
    "01": (55, 0),
    "02": (47, 0),
    "03": (70, 0),
    "04": (54, 0),
    "05": (63, 0),
    "06": (76, 0),
    "07": (82, 0),
    "08": (171, 0),
    "09": (37, 0),
    "10": (62, 0),
    "11": (81, 0),
}
LOGIC = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.For, ast.AsyncFor, ast.While)


def measure(source: str) -> tuple[int, int]:
    """(code lines, logic statements) of a notebook's code."""
    lines = [line for line in source.splitlines() if line.strip() and not line.strip().startswith("#")]
    return len(lines), sum(isinstance(node, LOGIC) for node in ast.walk(ast.parse(source)))


def test_measure_counts_lines_and_logic():
    assert measure("x = 1\n\n# a comment\nfor i in range(3):\n    def f():\n        pass\n") == (4, 2)
    assert measure("while False:\n    class A:\n        y = [i for i in ()]\n") == (3, 2)


@pytest.mark.parametrize("book", list_notebooks(), ids=lambda p: p.name[:2])
def test_notebook_holds_no_more_code_than_its_budget(book):
    cells = json.loads(book.read_text())["cells"]
    lines, logic = measure("\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code"))
    budget_lines, budget_logic = BUDGET[book.name[:2]]
    assert lines <= budget_lines and logic <= budget_logic, (
        f"{book.name}: {lines} code lines and {logic} def/class/for/while (budget {budget_lines}, {budget_logic}): "
        "move the logic into a library function that returns the table and its sentences"
    )
    assert (lines, logic) == (budget_lines, budget_logic), (
        f"{book.name} holds less than its budget ({lines}, {logic}): lower BUDGET to it"
    )
