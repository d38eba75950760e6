"""The analysis regression: every notebook's headline numbers on frozen records, exactly, on every machine.

What it catches: a changed statistic, verdict, rule, tie-break or bootstrap seed anywhere between a record and a
number a notebook reports (``tests/analysis_regression.py`` says which notebooks run themselves and which go through
their library calls). What it does not: a change in training (``tests/test_learning.py``, and the smoke suite's
numbers where the kernels are the same, ``tests/test_notebooks.py``).
"""

import json

import analysis_regression as ar
import pytest


@pytest.fixture(scope="module")
def numbers(tmp_path_factory):
    import shutil

    from overthink_lib.config import get_preset

    shutil.rmtree(get_preset(ar.PRESET).figure_dir / "records" / "main", ignore_errors=True)  # only this replay's
    return ar.headline_numbers(work=tmp_path_factory.mktemp("replay"))


def test_every_headline_number_holds_on_the_frozen_records(numbers):
    reference = json.loads(ar.REFERENCE.read_text())["numbers"]
    problems = ar.compare(numbers, reference)
    assert not problems, (
        f"{len(problems)} headline number(s) moved on the frozen records (after a deliberate change: "
        "make analysis-reference, and say why in the commit):\n  " + "\n  ".join(problems)
    )


def test_the_regression_covers_every_notebook_that_reports_numbers(numbers):
    books = {name.split(".")[0] for name in numbers}
    assert books == {"03", "04", "05", "06", "07", "08", "09", "11"}, books
    assert len(numbers) >= 250  # the replayed notebooks' every results.json entry, and the library-level ones


def test_the_replayed_notebooks_drew_what_a_record_with_flops_and_images_allows(numbers):
    from overthink_lib.config import get_preset

    figs = get_preset(ar.PRESET).figure_dir / "records" / "main"
    for fig in ("03_anytime_budgeted", "04_pairwise", "06_clutter_by_exit", "11_exit_rules_plane", "11_reliability"):
        assert (figs / f"{fig}.png").stat().st_size > 1000, fig


def test_compare_names_the_metric_that_moved():
    ref = {"a.x": [0.5, 0.4, 0.6], "a.v": "raised", "a.n": 3, "a.gone": 1.0}
    got = {"a.x": [0.5, 0.4, 0.6 + 1e-13], "a.v": "lowered", "a.n": 3, "a.new": 2.0}
    lines = ar.compare(got, ref)
    assert lines == [
        "a.gone: in the reference (1.0) but not computed any more",
        "a.new: computed (2.0) but not in the reference",
        "a.v: 'lowered' now, reference 'raised'",
    ]
    assert ar.compare({"a.x": [0.5, 0.4, 0.6 + 2e-12]}, {"a.x": [0.5, 0.4, 0.6]})  # beyond 1e-12: moved
    assert ar.compare({"a.n": 3.0}, {"a.n": 3}) == []  # the same number
    assert ar.compare({"a.n": None}, {"a.n": 0.0})  # NaN (None) is not 0
