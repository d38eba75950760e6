"""The `paper` preset rehearsed before anyone spends GPU-hours on it: its every code path on made-up files.

`paper-rehearsal` is `paper` derived in code (overthink_lib.config.rehearsal): CIFAR-100, SVHN with its extra top-up
and MNIST through the real loaders, from made-up files in the official formats (overthink_lib.data.madeup); the
ResNet-34 policy, the 64 px Max-Min canvas, the step schedule, every notebook on every dataset, notebook 09 included;
only sizes, lengths and counts are small. Run through the same `reproduce` code as every preset.
"""

from __future__ import annotations

import json
import math
import shutil

from overthink_lib.config import get_preset
from overthink_lib.data.madeup import write_made_up
from overthink_lib.notebooks import declared_parameters
from overthink_lib.suite import list_notebooks, run_suite


def _numbers(value):
    """Every number in a results.json value (a number, a string, or [estimate, low, high])."""
    if isinstance(value, bool) or isinstance(value, str) or value is None:
        return []
    if isinstance(value, (int, float)):
        return [value]
    return [v for item in value for v in _numbers(item)]


def test_paper_rehearsal_runs_every_notebook_on_every_dataset(tmp_path, monkeypatch):
    data = tmp_path / "data"
    write_made_up(data)
    monkeypatch.setenv("OVERTHINK_DATA", str(data))  # the kernels read the made-up files, never data/
    preset = get_preset("paper-rehearsal")
    shutil.rmtree(preset.run_dir, ignore_errors=True)  # a rehearsal from nothing: no run of an earlier one reused
    rows = run_suite("paper-rehearsal", progress=False, export_html=False)

    ran = {r["notebook"] for r in rows}
    for book in list_notebooks():
        stem = book.stem
        assert book.name in ran, f"{book.name} did not run"
        if "dataset" in declared_parameters(book):  # the runner runs these once per dataset of the preset
            assert {f"{stem}-svhn.ipynb", f"{stem}-mnist.ipynb"} <= ran, f"{stem} did not run on svhn and mnist"
    res = json.loads((preset.run_dir / "results.json").read_text())
    assert {"overthinking", "overthinking@svhn", "overthinking@mnist", "imta@svhn", "stochasticity"} <= set(res)
    for section, values in res.items():
        if section in ("timings", "meta", "params", "speed") or not isinstance(values, dict):
            continue
        for key, value in values.items():
            assert all(math.isfinite(v) for v in _numbers(value)), f"{section}.{key} = {value!r}"
    # every dataset its own Table 3.1 row (section imta@<dataset>), executed copy and figures folder
    for section in ("imta", "imta@svhn", "imta@mnist"):
        assert {"overthought_E", "overthought_2E", "isc_ofa_minus_2E", "seed_level_isc_ofa_minus_2E"} <= set(
            res[section]
        ), section
    for other in ("svhn", "mnist"):
        assert (preset.figure_dir / other / "07_imta.png").stat().st_size > 1000
        executed = json.loads((preset.run_dir / "notebooks" / f"07_imta-{other}.ipynb").read_text())
        assert any(other in "".join(o.get("text", "")) for c in executed["cells"] for o in c.get("outputs", []))
    # the headline numbers of made-up data are numbers of a working pipeline, not results: in range, not NaN
    for section in ("overthinking", "overthinking@svhn", "overthinking@mnist"):
        assert 0.0 <= res[section]["final_exit_accuracy"][0] <= 1.0
