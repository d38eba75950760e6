"""Headline numbers: notebooks put them, the runner collects them; the smoke reference is exact per kernel kind."""

import json

import pytest

from overthink_lib import results
from overthink_lib.config import ConfigError

#: The header of a results.json from one machine kind (Zen 4).
HEAD = {
    "preset": "smoke",
    "code_version": "x",
    "cpu": "AMD EPYC (avx512-bf16)",
    "cpu_id": "AMD family 25 model 17",
    "capability": "AVX512",
    "torch": "2.14.1",
    "threads": 2,
    "numerics": {"torch": "2.14.1", "capability": "AVX512", "onednn_isa": "AVX-512 bf16", "mkl": "AVX2", "threads": 2},
    "timings": {},
    "meta": {},
}


def test_put_writes_only_under_the_runner(tmp_path, monkeypatch):
    monkeypatch.delenv(results.ENV, raising=False)
    assert results.put("s", "k", 0.5) == 0.5  # in JupyterLab: nothing written
    part = tmp_path / "parts" / "04_x.json"
    monkeypatch.setenv(results.ENV, str(part))
    results.put("overthinking", "rate", (0.25, 0.2, 0.3), "overthought", "%")
    results.put("overthinking", "verdict", "lowered")
    got = json.loads(part.read_text())
    assert got["values"]["overthinking"] == {"rate": [0.25, 0.2, 0.3], "verdict": "lowered"}
    assert got["meta"]["overthinking.rate"] == {"label": "overthought", "unit": "%"}
    with pytest.raises(ConfigError, match="estimate, low, high"):
        results.put("s", "k", (1, 2))
    with pytest.raises(ConfigError, match="unknown unit"):
        results.put("s", "k", 1.0, unit="furlongs")


def test_put_under_a_dataset_tag_names_the_dataset_in_the_section(tmp_path, monkeypatch):
    part = tmp_path / "07_imta-svhn.json"
    monkeypatch.setenv(results.ENV, str(part))
    monkeypatch.setenv(results.TAG_ENV, "svhn")
    results.put("imta", "verdict", "lowered")
    assert json.loads(part.read_text())["values"] == {"imta@svhn": {"verdict": "lowered"}}
    monkeypatch.setenv(results.TAG_ENV, "")  # the preset's first dataset: plain section names
    results.put("imta", "verdict", "raised")
    assert json.loads(part.read_text())["values"]["imta"] == {"verdict": "raised"}


def test_collect_merges_parts_in_order_and_formats(tmp_path, monkeypatch):
    parts = tmp_path / "results"
    for name, value in (("03_a", 0.5), ("04_b", (0.1234, 0.1, 0.15))):
        monkeypatch.setenv(results.ENV, str(parts / f"{name}.json"))
        results.put(name[3:], "v", value, f"value of {name}", "%")
    res = results.collect(parts, tmp_path, preset="smoke", timings=[{"notebook": "03_a.ipynb", "seconds": 1.5}])
    assert res["a"]["v"] == 0.5 and res["b"]["v"] == [0.1234, 0.1, 0.15]
    assert json.loads((tmp_path / "results.json").read_text())["timings"]["total_seconds"] == 1.5
    md = (tmp_path / "results.md").read_text()
    assert "| b | value of 04_b | 12.34 % [10.00, 15.00] |" in md and "| a | value of 03_a | 50.00 % |" in md
    assert "value of 04_b" in results.table(res)


def test_compare_is_exact_on_a_recorded_kind_and_names_each_drift(tmp_path):
    zen4 = {**HEAD, "o": {"rate": [0.2, 0.1, 0.3], "verdict": "lowered", "n": 3, "none": None}}
    ref = results.write_reference(zen4, tmp_path / "ref.json", label="Zen 4")
    assert (
        ref["metrics"] == ["o.n", "o.none", "o.rate", "o.verdict"]
        and json.loads((tmp_path / "ref.json").read_text()) == ref
    )
    assert results.compare(zen4, ref) == []
    bad = {**HEAD, "o": {"rate": [0.2 + 1e-6, 0.1, 0.3], "verdict": "raised", "none": 0.0}}
    problems = results.compare(bad, ref)
    assert problems[0] == "o.n: in the reference but not in this run's results"
    assert any(p.startswith("o.rate: [") and "recorded as Zen 4: must match" in p for p in problems)
    assert any(p.startswith("o.verdict: 'raised' here, reference 'lowered'") for p in problems)
    assert any(p.startswith("o.none: 0.0 here, reference None") for p in problems)
    assert results.compare({**zen4, "o": {**zen4["o"], "rate": [0.2 + 1e-12, 0.1, 0.3]}}, ref) == []


def test_another_kernel_kind_checks_presence_only_and_says_so_in_one_line(tmp_path, monkeypatch):
    zen4 = {**HEAD, "o": {"rate": 0.2, "verdict": "lowered"}}
    ref = results.write_reference(zen4, tmp_path / "ref.json")
    # the same CPU model name with other kernels (oneDNN capped at AVX2): another kind; another name, same kernels: same
    avx2 = {**zen4, "numerics": {**zen4["numerics"], "onednn_isa": "Intel AVX2"}, "o": {"rate": 0.9, "verdict": "x"}}
    assert results.recorded_kind(avx2, ref) is None and results.compare(avx2, ref) == []
    assert results.compare({**avx2, "o": {"rate": 0.9}}, ref) == [
        "o.verdict: in the reference but not in this run's results"
    ]
    renamed = {**zen4, "cpu": "Some other name", "cpu_id": "other", "o": {"rate": 0.3, "verdict": "lowered"}}
    assert results.recorded_kind(renamed, ref) is not None and results.compare(renamed, ref)
    assert results.recorded_kind({**zen4, "numerics": None}, ref) is None  # a file from before kinds were recorded
    line = results.not_compared_line(avx2)
    assert "\n" not in line and "exact trained numbers not compared on this kind" in line and "Intel AVX2" in line


def test_a_kind_added_is_exact_there_and_changes_nothing_else(tmp_path):
    path = tmp_path / "ref.json"
    zen4 = {**HEAD, "o": {"rate": 0.2, "verdict": "lowered"}}
    results.write_reference(zen4, path)
    amx = {**HEAD, "numerics": {**HEAD["numerics"], "onednn_isa": "AMX"}, "o": {"rate": 0.4, "verdict": "raised"}}
    ref = results.add_kind(amx, path, label="AMX")
    assert [k["label"] for k in ref["kinds"]] == [HEAD["cpu"], "AMX"]
    assert results.compare(amx, ref) == [] and results.compare(zen4, ref) == []
    assert results.compare({**amx, "o": {"rate": 0.2, "verdict": "raised"}}, ref)  # exact on AMX now
    again = results.add_kind({**amx, "o": {"rate": 0.41, "verdict": "raised"}}, path)  # a kind recorded again: replaced
    assert len(again["kinds"]) == 2 and again["kinds"][-1]["values"]["o.rate"] == 0.41
    with pytest.raises(ConfigError, match=r"lacks 1 metric\(s\) of .* \(first: o.verdict\).*make reference"):
        results.add_kind({**amx, "o": {"rate": 0.4}}, path)
    with pytest.raises(ConfigError, match=r"has 1 metric\(s\) not in .*first: o.new"):
        results.add_kind({**amx, "o": {"rate": 0.4, "verdict": "raised", "new": 1}}, path)
    assert len(results.write_reference(zen4, path)["kinds"]) == 1  # a new reference drops the other kinds
    with pytest.raises(ConfigError, match="records no kernel kind"):
        results.write_reference({**zen4, "numerics": None}, path)


def test_tidy_results_are_one_long_table_in_csv_and_parquet(tmp_path, monkeypatch):
    import pandas as pd

    parts = tmp_path / "results"
    monkeypatch.setenv(results.ENV, str(parts / "07_x.json"))
    results.put("imta", "diff", (-0.01, -0.02, 0.005), "difference", "pts")
    results.put("imta", "verdict", "did not measurably change")
    monkeypatch.setenv(results.TAG_ENV, "svhn")
    results.put("imta", "diff", (0.02, 0.01, 0.03), "difference", "pts")
    res = results.collect(parts, tmp_path, preset="cpu", timings=[], params={"seed": 3})
    csv = pd.read_csv(tmp_path / "results.csv")
    pq = pd.read_parquet(tmp_path / "results.parquet")
    assert list(csv.columns) == list(results.TIDY_COLUMNS) and len(csv) == len(pq) == 3
    row = pq[(pq.dataset == "svhn") & (pq.metric == "diff")].iloc[0]
    assert (row.section, row.estimate, row.low, row.high, row.seed, row.unit) == ("imta", 0.02, 0.01, 0.03, 3, "pts")
    main = pq[(pq.dataset == "fashion_mnist") & (pq.metric == "verdict")].iloc[0]
    assert main.text == "did not measurably change" and pd.isna(main.estimate) and main.commit == res["code_version"]
    both = pd.concat([pq, pq.assign(seed=4)])  # runs of two seeds compare with one line
    assert both.pivot_table(index=["dataset", "metric"], columns="seed", values="estimate").shape == (2, 2)
