"""The notebook runner: parameter validation, one-line errors, and the whole suite headless on the smoke preset."""
import subprocess
import sys

import pytest

from overthink_lib.config import ROOT, ConfigError, get_preset
from overthink_lib.notebooks import check_declared, list_notebooks, parse_param, start


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "overthink_lib", *args], capture_output=True, text=True,
                          cwd=ROOT, timeout=1800)


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
        start(preset="smoke", dataset="imagenet")
    with pytest.raises(ConfigError, match=r"unknown speed setting\(s\) \['turbo'\]"):
        start(preset="smoke", speed="turbo")
    with pytest.raises(ConfigError, match="n_images must be an integer >= 1"):
        start(preset="smoke", n_images=0)
    assert start(preset="smoke", speed="bf16,fold_bn", repeats=2, batch_size=8).speed == "bf16,fold_bn"


def test_parse_param():
    assert parse_param("seed=3") == ("seed", 3)
    assert parse_param("preset=cpu") == ("preset", "cpu")
    with pytest.raises(ConfigError, match="name=value"):
        parse_param("seed")


@pytest.mark.parametrize("args, message", [
    (["reproduce", "--preset", "gpu"], "error: unknown preset 'gpu': choose one of smoke, cpu, paper"),
    (["reproduce", "--preset", "smoke", "--param", "sead=1"], "error: notebook 01_data.ipynb has no parameter 'sead'"),
    (["reproduce", "--preset", "smoke", "--param", "seed=x"], "error: notebook 01_data.ipynb: parameter 'seed' must be int"),
    (["reproduce", "--preset", "smoke", "--only", "99"], "error: no notebook matches ['99']"),
    (["train", "--preset", "smoke", "--speed", "bf16,turbo"], "error: unknown speed setting(s) ['turbo']"),
])
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


def test_a_cell_past_the_timeout_ends_the_run_with_one_line(tmp_path):
    import json

    from overthink_lib.notebooks import NotebookFailed, run_suite

    cells = [{"cell_type": "code", "metadata": {"tags": ["parameters"]}, "execution_count": None, "outputs": [],
              "source": ['preset = "smoke"  # the preset\n']},
             {"cell_type": "code", "metadata": {}, "execution_count": None, "outputs": [], "source": ["x = 1\n"]},
             {"cell_type": "code", "metadata": {}, "execution_count": None, "outputs": [],
              "source": ["import time\n", "time.sleep(60)  # a reply that never comes\n"]}]
    book = {"cells": cells, "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                        "language": "python"}}, "nbformat": 4, "nbformat_minor": 5}
    (tmp_path / "books").mkdir()
    (tmp_path / "books" / "01_hang.ipynb").write_text(json.dumps(book))
    import time

    t0 = time.perf_counter()
    with pytest.raises(NotebookFailed, match=r"01_hang.ipynb: cell \d+ ran past the preset's cell timeout of 5 s") as err:
        run_suite("smoke", folder=tmp_path / "books", out_dir=tmp_path / "out", cell_timeout=5, progress=False)
    assert time.perf_counter() - t0 < 50 and "\n" not in str(err.value)
    assert not (get_preset("smoke").run_dir / "notebooks" / "01_hang.ipynb").exists()


def test_smoke_numbers_match_the_reference():
    """The smoke run's headline numbers (results.json, written by the suite above) against the committed reference:
    a change that moves overthinking, a verdict or a policy number fails here, naming the metric and both values."""
    import json

    from overthink_lib.results import compare

    path = get_preset("smoke").run_dir / "results.json"
    assert path.exists(), f"no {path}: the smoke suite (test_smoke_suite_runs_headless_and_writes_figures) runs first"
    ref = json.loads((ROOT / "tests" / "reference" / "smoke.json").read_text())
    problems = compare(json.loads(path.read_text()), ref)
    assert not problems, ("smoke numbers drifted from tests/reference/smoke.json (after a deliberate change: "
                          "make reference):\n  " + "\n  ".join(problems))
