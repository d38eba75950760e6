"""Headline numbers: notebooks put them, the runner collects them; the regression check compares with tolerances."""

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


def test_compare_names_each_drift():
    ref = {
        "metrics": {
            "o.rate": {"value": [0.2, 0.1, 0.3], "abs_tol": 0.02},
            "o.verdict": {"value": "lowered", "abs_tol": 0.03},
            "o.gone": {"value": 1.0, "abs_tol": 0.1},
        }
    }
    ok = {"o": {"rate": [0.21, 0.1, 0.3], "verdict": "lowered", "gone": 1.05}}
    assert results.compare(ok, ref) == []
    bad = {"o": {"rate": [0.25, 0.2, 0.3], "verdict": "raised"}}
    problems = results.compare(bad, ref)
    assert any(p.startswith("o.rate: 0.25 here, reference 0.2 (tolerance ±0.02") for p in problems)
    assert "o.verdict: 'raised' here, reference 'lowered'" in problems
    assert any(p.startswith("o.gone: in the reference") for p in problems)


def test_reference_keeps_tolerances(tmp_path):
    old = {"metrics": {"o.rate": {"value": 0.2, "abs_tol": 0.05}}}
    res = {"preset": "smoke", "code_version": "x", "cpu": "c", "o": {"rate": 0.22, "new": 3}, "timings": {}, "meta": {}}
    ref = results.write_reference(res, tmp_path / "ref.json", keep=old)
    assert ref["metrics"]["o.rate"] == {"value": 0.22, "abs_tol": 0.05}
    assert ref["metrics"]["o.new"]["abs_tol"] == results.DEFAULT_ABS_TOL
    assert json.loads((tmp_path / "ref.json").read_text()) == ref


def test_same_kind_must_match_exactly_and_other_kinds_within_measured_tolerance(tmp_path):
    head = dict(HEAD)
    mine = {**head, "o": {"rate": [0.30, 0.2, 0.4], "verdict": "beats chance", "tie": "same"}}
    avx2 = {
        **head,
        "capability": "AVX2",
        "o": {"rate": [0.34, 0.2, 0.4], "verdict": "does not beat chance", "tie": "same"},
    }
    ref = results.write_reference(mine, tmp_path / "ref.json", other=avx2)
    m = ref["metrics"]
    assert m["o.rate"]["abs_tol"] == pytest.approx(0.08) and m["o.verdict"]["strict"] is False and m["o.tie"]["strict"]
    assert results.same_kind(mine, ref) and not results.same_kind(avx2, ref)
    assert results.compare(mine, ref) == [] and results.compare(avx2, ref) == []
    nudged = {**mine, "o": {**mine["o"], "rate": [0.3001, 0.2, 0.4]}}
    assert results.compare(nudged, ref)[0].startswith("o.rate: 0.3001 here, reference 0.3 (same machine kind")
    far = {**avx2, "o": {**avx2["o"], "rate": [0.40, 0.2, 0.4], "tie": "other"}}
    problems = results.compare(far, ref)
    assert len(problems) == 2 and "tolerance ±0.08 across CPU kinds" in problems[0] and problems[1].startswith("o.tie")


def test_a_machine_kind_added_to_the_reference_is_exact_there_and_loosens_nothing_elsewhere(tmp_path):
    head = dict(HEAD)
    zen4 = {**head, "o": {"rate": [0.30, 0.2, 0.4], "verdict": "beats chance"}}
    amx = {**head, "cpu": "Intel Xeon (avx512-amx)", "cpu_id": "Intel family 6 model 143"}
    amx = {**amx, "o": {"rate": [0.42, 0.3, 0.5], "verdict": "does not beat chance"}}
    path = tmp_path / "ref.json"
    before = results.write_reference(zen4, path)
    assert results.compare(amx, json.loads(path.read_text()))[0].startswith("o.rate: 0.42 here, reference 0.3 (toler")
    with pytest.raises(ConfigError, match="was made on this machine kind"):
        results.add_kind(zen4, path)
    with pytest.raises(ConfigError, match="lacks 1 metric"):
        results.add_kind({**amx, "o": {"rate": 0.4}}, path)
    ref = results.add_kind(amx, path)
    assert ref == json.loads(path.read_text()) and ref["metrics"] == before["metrics"]  # tolerances, strictness as were
    assert results.compare(amx, ref) == [] and results.compare(zen4, ref) == []
    nudged = {**amx, "o": {**amx["o"], "rate": [0.4201, 0.3, 0.5]}}  # exact on the added kind: its own values
    assert results.compare(nudged, ref) == [
        "o.rate: 0.4201 here, reference 0.42 (same machine kind: must match, recorded for Intel Xeon (avx512-amx), "
        "off by +0.0001)"
    ]
    other = {**head, "cpu_id": "AMD family 25 model 1", "o": {"rate": [0.5, 0.3, 0.6], "verdict": "beats chance"}}
    problems = results.compare(other, ref)  # a third kind: the original tolerance, untouched by the added kind
    assert len(problems) == 1 and "tolerance ±0.03 across CPU kinds" in problems[0]
    again = results.add_kind({**amx, "o": {"rate": [0.36, 0.3, 0.5], "verdict": "beats chance"}}, path)
    assert len(again["kinds"]) == 1 and again["kinds"][0]["values"]["o.rate"][0] == 0.36  # replaced, not doubled
    assert "kinds" not in results.write_reference(zen4, path, keep=again)  # a new reference drops stale kinds


def test_new_metrics_join_the_reference_exact_where_measured_and_within_tolerance_elsewhere(tmp_path):
    zen4 = {**HEAD, "o": {"rate": [0.30, 0.2, 0.4]}}
    amx = {
        **HEAD,
        "cpu": "Intel Xeon (avx512-amx)",
        "cpu_id": "Intel family 6 model 143",
        "o": {"rate": [0.42, 0.3, 0.5]},
    }
    path = tmp_path / "ref.json"
    results.write_reference(zen4, path)
    results.add_kind(amx, path)
    with pytest.raises(ConfigError, match="nothing to add"):
        results.add_metrics(amx, path)
    amx_new = {**amx, "r": {"ece": [0.10, 0.08, 0.12], "word": "lowered"}}
    with pytest.raises(ConfigError, match="moved.*make reference"):
        results.add_metrics({**amx_new, "o": {"rate": [0.43, 0.3, 0.5]}}, path)
    before = json.loads(path.read_text())
    out = results.add_metrics(amx_new, path)
    ref = out["reference"]
    assert out["added"] == ["r.ece", "r.word"]
    assert {k: v for k, v in ref["metrics"].items() if k.startswith("o.")} == before["metrics"]  # others untouched
    assert results.compare(amx_new, ref) == []
    nudged = {**amx_new, "r": {"ece": [0.1001, 0.08, 0.12], "word": "lowered"}}
    assert "same machine kind: must match" in results.compare(nudged, ref)[0]  # exact where measured
    zen4_new = {**zen4, "r": {"ece": [0.12, 0.1, 0.14], "word": "raised"}}
    assert results.compare(zen4_new, ref) == []  # the reference's own kind: within 0.03, the word not checked
    far = {**zen4, "r": {"ece": [0.2, 0.1, 0.3], "word": "raised"}}
    assert "tolerance ±0.03" in results.compare(far, ref)[0]


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


def test_new_metrics_take_their_cross_kind_tolerance_from_a_run_on_another_kind(tmp_path):
    amx = {**HEAD, "cpu_id": "Intel family 6 model 143", "o": {"rate": 0.4}}
    path = tmp_path / "ref.json"
    results.write_reference(amx, path)
    other = {**HEAD, "capability": "AVX2", "o": {"rate": 0.41}, "r": {"ece": [0.18, 0.1, 0.2], "n": 3}}
    ref = results.add_metrics({**amx, "r": {"ece": [0.10, 0.08, 0.12], "n": 3}}, path, other=other)["reference"]
    assert ref["metrics"]["r.ece"]["abs_tol"] == 0.16 and ref["metrics"]["r.ece"]["other_kind_value"] == 0.18
    assert ref["metrics"]["r.n"]["abs_tol"] == results.DEFAULT_ABS_TOL  # no difference measured: the default
    assert "measured_on" not in ref["metrics"]["r.ece"]  # made on the reference's own kind: exact there as usual


def test_metrics_whose_computation_changed_are_measured_again_and_nothing_else_moves(tmp_path):
    zen4 = {**HEAD, "o": {"rate": [0.30, 0.2, 0.4], "n": 3}, "p": {"acc": 0.5}}
    amx = {**HEAD, "cpu": "Intel Xeon (avx512-amx)", "cpu_id": "Intel family 6 model 143"}
    amx = {**amx, "o": {"rate": [0.42, 0.3, 0.5], "n": 3}, "p": {"acc": 0.51}}
    path = tmp_path / "ref.json"
    results.write_reference(zen4, path)
    ref = json.loads(path.read_text())
    ref["metrics"]["o.rate"]["abs_tol"] = 0.2  # a wide cross-kind spread measured before
    path.write_text(json.dumps(ref))
    results.add_kind(amx, path)
    changed = {**amx, "o": {"rate": [0.10, 0.05, 0.2], "n": 4}, "q": {"new": 1.0}}  # o.* computes something new
    with pytest.raises(ConfigError, match="outside o. moved too"):
        results.remeasure({**changed, "p": {"acc": 0.9}}, path, ["o."])
    with pytest.raises(ConfigError, match="no metric of .* starts with x."):
        results.remeasure(changed, path, ["x."])
    out = results.remeasure(changed, path, ["o."])
    ref = out["reference"]
    assert out["remeasured"] == ["o.rate", "o.n"] and "q.new" in out["added"]
    assert ref["metrics"]["o.rate"]["value"][0] == 0.10 and ref["metrics"]["o.rate"]["abs_tol"] == 0.2  # kept wider
    assert ref["metrics"]["o.n"]["abs_tol"] == results.DEFAULT_ABS_TOL
    assert ref["metrics"]["p.acc"]["value"] == 0.5 and ref["kinds"][0]["values"]["o.rate"][0] == 0.10
    assert ref["kinds"][0]["values"]["o.n"] == 4  # exact where measured again
    assert results.compare(changed, ref) == []
    assert "same machine kind: must match" in results.compare({**changed, "o": {"rate": 0.1001, "n": 4}}, ref)[0]
    assert results.compare({**zen4, "o": {"rate": 0.25, "n": 4}, "q": {"new": 1.0}}, ref) == []  # within tolerance
