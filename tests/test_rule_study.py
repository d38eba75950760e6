"""Notebook 11's study (analysis/rule_study.py): its numbers are the library's own, its findings follow them."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from overthink_lib.analysis import calibration, overthinking, rule_study, rules
from overthink_lib.records import ExitRecord


def _record(n: int, seed: int, flops=(1e6, 2e6, 4e6)) -> ExitRecord:
    """3 exits, 4 classes, later exits sharper and more often right (seeded)."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 4, (n,), generator=g)
    logits = torch.randn(n, 3, 4, generator=g)
    logits[torch.arange(n), :, labels] += torch.tensor([0.5, 1.5, 2.5])
    return ExitRecord(
        logits * 1.7,
        labels,
        torch.arange(n),
        torch.tensor(flops, dtype=torch.float64),
        provenance={"weights_hash": "m"},
    )


def test_the_study_reports_the_librarys_numbers():
    val, test = _record(300, 0), _record(300, 1)
    s = rule_study.study(val, test, n_bins=10, n_boot=100, seed=0)
    assert list(s.curves) == ["threshold", "patience", "ensemble-mean", "ensemble-geometric", rule_study.CALIBRATED]
    assert rule_study.compared() == ("threshold", *(n for n in rules.RULES if n != "threshold"))
    assert s.temperatures == calibration.exit_temperatures(val)
    cal = {k: v for k, v, _, _ in s.headlines["calibration"]}
    before = calibration.calibration_table(test, n_bins=10, n_boot=100, seed=0)
    assert cal["ece_exit1_raw"] == (before.iloc[0].ece, before.iloc[0].ece_low, before.iloc[0].ece_high)
    assert {"overthought_calibrated_minus_raw", "wasted_calibrated_minus_raw"} <= set(cal)
    ex = {k: v for k, v, _, _ in s.headlines["exit_rules"]}
    score, ot = rules.confusion(test).numpy(), overthinking.overthought(test).numpy()
    assert ex["confusion_auroc_overthought"][0] == pytest.approx(rules.auroc(score, ot))
    half = [k for k in ex if k.endswith("_minus_threshold")]
    assert len(half) == len(s.matched) // len(rule_study.SHARES) and "threshold_calibrated_minus_threshold" in half
    # one finding per half-budget comparison, calibration, the two outcomes and the confusion
    assert len(s.findings) == len(half) + 1 + 2 + 1
    assert s.findings[-1].startswith("SDN's confusion") and s.half_accuracy.startswith("accuracy at half budget")
    assert np.allclose(s.calibration["temperature"], s.temperatures)


def test_without_flops_only_calibration_and_confusion():
    val, test = _record(200, 0), _record(200, 1)
    bare = [ExitRecord(r.logits, r.labels, r.indices, None, provenance={"weights_hash": "m"}) for r in (val, test)]
    s = rule_study.study(*bare, n_bins=10, n_boot=50, seed=0)
    assert s.matched.empty and s.outcomes is None and s.half_accuracy == ""
    assert [k for k, *_ in s.headlines["exit_rules"]] == ["confusion_auroc_overthought"]
    assert len(s.findings) == 2  # calibration, confusion


def test_a_newly_registered_rule_joins_the_comparison(monkeypatch):
    monkeypatch.setitem(rules.RULES, "my-rule", rules.RULES["patience"])  # as register_rule would add it
    assert rule_study.compared()[0] == "threshold" and rule_study.compared()[-1] == "my-rule"
