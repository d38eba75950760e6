"""Notebook 03's study (analysis/budgeted.py) on hand-made records: what it reports is what the records say."""

from __future__ import annotations

import pytest
import torch
from test_exits_overthinking import make_record

from overthink_lib.analysis import budgeted, exits
from overthink_lib.records import ExitRecord

# 8 samples, 3 exits: exit accuracies 4/8, 5/8, 6/8; some sample right at some exit for 7 of 8 (the oracle)
CORRECT = [
    [1, 1, 1],
    [1, 1, 0],
    [0, 1, 1],
    [0, 1, 1],
    [1, 0, 1],
    [0, 0, 1],
    [1, 1, 1],
    [0, 0, 0],
]
CONF = [
    [0.9, 0.95, 0.97],
    [0.8, 0.7, 0.6],
    [0.55, 0.9, 0.95],
    [0.6, 0.85, 0.9],
    [0.7, 0.6, 0.8],
    [0.51, 0.65, 0.9],
    [0.95, 0.96, 0.99],
    [0.65, 0.7, 0.75],
]
FLOPS = [1e6, 2e6, 4e6]


def test_the_study_reports_what_the_records_say():
    val, test = make_record(CORRECT, CONF, FLOPS), make_record(CORRECT, CONF, FLOPS)
    s = budgeted.study(val, test, n_boot=200, seed=0)
    assert s.skip is None
    heads = {k: (v, label, unit) for k, v, label, unit in s.headlines}
    assert heads["best_single_exit_accuracy"][0] == pytest.approx(6 / 8)  # exit 3
    assert heads["oracle_accuracy"][0] == pytest.approx(7 / 8)  # any exit right
    assert heads["best_budgeted_accuracy"][0] == pytest.approx(s.curves["thesis"]["test_acc"].max())
    assert heads["best_budgeted_accuracy"][2] == "%" and heads["largest_gain_over_anytime"][2] == "pts"
    assert s.anytime["accuracy"].tolist() == pytest.approx([4 / 8, 5 / 8, 6 / 8])
    assert (s.anytime["low"] <= s.anytime["accuracy"]).all() and (s.anytime["accuracy"] <= s.anytime["high"]).all()
    assert list(s.per_exit.columns) == ["exit", "MFLOPs", "top-1 %", "top-1 low", "top-1 high"]  # 2 classes: no top-5
    # the half-way point: its thresholds' test result is the one apply_thresholds gives, and it is reported
    half = s.half
    assert half["budget"] == pytest.approx(2.5e6)
    direct = exits.apply_thresholds(test, half["pick"]["thresholds"][:-1])
    assert half["result"]["accuracy"] == pytest.approx(direct["accuracy"])
    assert f"test accuracy {direct['accuracy'] * 100:.2f} %" in s.sentences["half"][0]
    est, low, high = heads["paired_minus_anytime"][0]
    assert low <= est <= high and half["paired"]["est"] == est
    assert any("oracle 87.50 %" in line for line in s.sentences["comparison"])


def test_the_study_says_why_it_cannot_run():
    rec = make_record(CORRECT, CONF, FLOPS)
    no_flops = ExitRecord(rec.logits, rec.labels, rec.indices, None, provenance={"weights_hash": "x"})
    assert budgeted.study(no_flops, no_flops).skip == "needs per-exit FLOPs"
    one = ExitRecord(rec.logits[:, :1], rec.labels, rec.indices, torch.tensor([1e6]), provenance={"weights_hash": "y"})
    s = budgeted.study(one, one)
    assert s.skip == "needs two exits or more" and s.headlines == [] and s.anytime is None
