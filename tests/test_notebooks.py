"""The notebook runner: parameter validation, one-line errors, and the whole suite headless on the smoke preset."""

import subprocess
import sys

import pytest

from overthink_lib.config import ROOT, ConfigError, get_preset
from overthink_lib.notebooks import start
from overthink_lib.suite import check_declared, list_notebooks, parse_param


def _cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "overthink_lib", *args], capture_output=True, text=True, cwd=ROOT, timeout=1800
    )


def test_suite_is_numbered_and_starts_with_data():
    books = [b.name for b in list_notebooks()]
    assert books[0] == "01_data.ipynb" and books == sorted(books)


def test_declared_parameters_are_checked():
    book = list_notebooks()[0]
    check_declared(book, {"preset": "smoke", "seed": 1})
    with pytest.raises(ConfigError, match=r"has no parameter 'sead'; it takes: .*seed"):
        check_declared(book, {"sead": 1})
    with pytest.raises(ConfigError, match=r"parameter 'seed' must be int .*got 'one'"):
        check_declared(book, {"seed": "one"})
    with pytest.raises(ConfigError, match="must be int"):
        check_declared(book, {"seed": True})


def test_start_validates_values():
    ctx = start(preset="smoke", seed=None)
    assert ctx.seed == get_preset("smoke").seed and ctx.preset.name == "smoke"
    with pytest.raises(ConfigError, match="unknown preset"):
        start(preset="huge")
    with pytest.raises(ConfigError, match="lam must be a number > 0"):
        start(preset="smoke", lam=0)
    with pytest.raises(ConfigError, match="unknown notebook parameter 'colour'"):
        start(preset="smoke", colour="red")
    with pytest.raises(ConfigError, match="unknown dataset"):
        start(preset="smoke", dataset="tinyimagenet")
    with pytest.raises(ConfigError, match=r"unknown speed setting\(s\) \['turbo'\]"):
        start(preset="smoke", speed="turbo")
    with pytest.raises(ConfigError, match="n_images must be an integer >= 1"):
        start(preset="smoke", n_images=0)
    assert start(preset="smoke", speed="bf16,fold_bn", repeats=2, batch_size=8).speed == "bf16,fold_bn"
    with pytest.raises(ConfigError, match=r"n_seeds must be 0 .* or an integer >= 2"):
        start(preset="smoke", n_seeds=1)
    with pytest.raises(ConfigError, match="parameter dct_measure must be one of abs, energy, got 'sum'"):
        start(preset="smoke", dct_measure="sum")  # the signed sum leaves some images without a score
    other = start(preset="smoke", dataset="mnist")
    assert other.preset.datasets[0] == "mnist" and other.fig_dir == get_preset("smoke").figure_dir / "mnist"
    assert start(preset="smoke", dataset="").preset.datasets[0] == "fashion_mnist"


def test_datasets_are_checked_before_anything_runs():
    from overthink_lib.suite import run_suite

    with pytest.raises(ConfigError, match="unknown dataset 'tinyimagenet'"):
        run_suite("smoke", only=["07"], datasets=["fashion_mnist", "tinyimagenet"], progress=False)
    with pytest.raises(ConfigError, match="either with --datasets or as the parameter dataset"):
        run_suite("smoke", only=["07"], datasets=["mnist"], params={"dataset": "mnist"}, progress=False)


def test_parse_param():
    assert parse_param("seed=3") == ("seed", 3)
    assert parse_param("preset=cpu") == ("preset", "cpu")
    with pytest.raises(ConfigError, match="name=value"):
        parse_param("seed")


@pytest.mark.parametrize(
    "args, message",
    [
        (
            ["reproduce", "--preset", "gpu"],
            "error: unknown preset 'gpu': choose one of smoke, cpu, paper, paper-rehearsal",
        ),
        (
            ["reproduce", "--preset", "smoke", "--param", "sead=1"],
            "error: notebook 01_data.ipynb has no parameter 'sead'",
        ),
        (
            ["reproduce", "--preset", "smoke", "--param", "seed=x"],
            "error: notebook 01_data.ipynb: parameter 'seed' must be int",
        ),
        (["reproduce", "--preset", "smoke", "--only", "99"], "error: no notebook matches ['99']"),
        (["train", "--preset", "smoke", "--speed", "bf16,turbo"], "error: unknown speed setting(s) ['turbo']"),
    ],
)
def test_cli_bad_input_is_one_error_line(args, message):
    res = _cli(*args)
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(message), res.stderr


def test_smoke_suite_runs_headless_and_writes_figures():
    """Every notebook with the smoke preset (papermill); nbval re-runs the executed copies (see Makefile)."""
    preset = get_preset("smoke")
    res = _cli("reproduce", "--preset", "smoke", "--quiet")
    assert res.returncode == 0, res.stdout + res.stderr
    for book in list_notebooks():
        assert (preset.run_dir / "notebooks" / book.name).exists()
        assert f"{book.name}:" in res.stdout
    for fig in ("01_class_distribution.png", "01_class_distribution.html", "01_maxmin_gallery.png"):
        assert (preset.figure_dir / fig).stat().st_size > 1000
    # the jobs trained every network ahead (overthink_lib.jobs); the notebooks that use them only reused them
    import json
    import re

    timings = (preset.run_dir / "jobs_timings.csv").read_text()
    assert all(
        f"{j}," in timings
        for j in (
            "data",
            "main",
            "maxmin",
            "imta-seeds",
            "imta",
            "policy-binary",
            "policy-binary-control",
            "policy-binary-thesis",
            "policy-binary-thesis-control",
            "policy-maxmin",
            "policy-maxmin-control",
        )
    )
    jobs_end = max(p.stat().st_mtime for p in (preset.run_dir / "jobs").glob("*.log"))
    late = [
        p.parent.name
        for p in (preset.run_dir / "models").glob("*/checkpoint.pt")
        if "stoch" not in p.parent.name and p.stat().st_mtime > jobs_end + 1
    ]  # 09 trains its own runs
    assert not late, f"trained after the jobs ended, by a notebook: {late}"
    for book in list_notebooks():
        if book.name[:2] in ("02", "03", "04", "05", "06", "07", "08"):
            nb = json.loads((preset.run_dir / "notebooks" / book.name).read_text())
            text = "".join("".join(o.get("text", "")) for c in nb["cells"] for o in c.get("outputs", []))
            # experiments.runs.train_or_load announces every training it starts, whoever asked
            assert not re.findall(r"training \S+ on \S+ \(\d+ images", text), (
                f"{book.name} trained what a job should have"
            )


def test_a_cell_past_the_timeout_ends_the_run_with_one_line(tmp_path):
    import json

    from overthink_lib.suite import NotebookFailed, run_suite

    cells = [
        {
            "cell_type": "code",
            "metadata": {"tags": ["parameters"]},
            "execution_count": None,
            "outputs": [],
            "source": ['preset = "smoke"  # the preset\n'],
        },
        {"cell_type": "code", "metadata": {}, "execution_count": None, "outputs": [], "source": ["x = 1\n"]},
        {
            "cell_type": "code",
            "metadata": {},
            "execution_count": None,
            "outputs": [],
            "source": ["import time\n", "time.sleep(60)  # a reply that never comes\n"],
        },
    ]
    book = {
        "cells": cells,
        "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
        "nbformat": 4,
        "nbformat_minor": 5,
    }
    (tmp_path / "books").mkdir()
    (tmp_path / "books" / "01_hang.ipynb").write_text(json.dumps(book))
    import time

    t0 = time.perf_counter()
    with pytest.raises(
        NotebookFailed, match=r"01_hang.ipynb: cell \d+ ran past the preset's cell timeout of 5 s"
    ) as err:
        run_suite("smoke", folder=tmp_path / "books", out_dir=tmp_path / "out", cell_timeout=5, progress=False)
    assert time.perf_counter() - t0 < 50 and "\n" not in str(err.value)
    assert not (get_preset("smoke").run_dir / "notebooks" / "01_hang.ipynb").exists()


def test_smoke_numbers_match_the_reference(record_note):
    """The smoke run's headline numbers (results.json, written by the suite above) against the committed reference:
    every one present on every machine; exact where the kernels are those of a recorded kind (a change that moves
    training, overthinking, a verdict or a policy number fails there, naming the metric and both values). Elsewhere
    one line says the trained numbers were not compared: the analyses are checked on every kind by
    test_analysis_regression.py, learning by test_learning.py."""
    import json

    from overthink_lib.results import compare, not_compared_line, recorded_kind

    path = get_preset("smoke").run_dir / "results.json"
    assert path.exists(), f"no {path}: the smoke suite (test_smoke_suite_runs_headless_and_writes_figures) runs first"
    res = json.loads(path.read_text())
    ref = json.loads((ROOT / "tests" / "reference" / "smoke.json").read_text())
    problems = compare(res, ref)
    assert not problems, (
        "smoke numbers drifted from tests/reference/smoke.json (after a deliberate change: "
        "make reference):\n  " + "\n  ".join(problems)
    )
    kind = recorded_kind(res, ref)
    record_note(f"smoke reference: exact on {kind['label']}" if kind else not_compared_line(res))
