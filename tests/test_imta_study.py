"""Notebook 07's study (analysis/imta_study.py) on hand-made records and seed tables."""

from __future__ import annotations

import pandas as pd
import pytest
from test_exits_overthinking import make_record

from overthink_lib.analysis import imta_study


def _arms():
    """E: 2 of 4 overthought; 2E: 1 of 4; E + E ISC+OFA: none (2 exits, 4 samples)."""
    e = make_record([[1, 0], [1, 0], [1, 1], [0, 1]], [[0.9, 0.8]] * 4, [1, 2])
    two = make_record([[1, 0], [1, 1], [1, 1], [0, 1]], [[0.9, 0.8]] * 4, [1, 2])
    isc = make_record([[1, 1], [1, 1], [1, 1], [0, 1]], [[0.9, 0.8]] * 4, [1, 2])
    return {"E": e, "2E": two, "E + E ISC+OFA": isc}


def test_arms_report_each_arms_overthinking_and_the_difference():
    a = imta_study.arms(_arms(), 50, n_boot=200, seed=0)
    heads = {k: v for k, v, _, _ in a["headlines"]}
    assert [heads[f"overthought_{k}"][0] for k in ("E", "2E", "E_EISC_OFA")] == pytest.approx([0.5, 0.25, 0.0])
    assert heads["isc_ofa_minus_2E"][0] == pytest.approx(-0.25)
    assert heads["verdict"].startswith("ISC+OFA ") and heads["verdict"] in f"ISC+OFA {a['verdict']} overthinking"
    assert list(a["table"].columns) == ["50 epochs", "100 epochs", "50 + 50 ISC+OFA"]
    assert a["lines"][0] == "             E: overthought 50.00 %, final exit 50.00 %"
    assert "for the same 100 epochs" in a["sentence"]


def _table(diff: float) -> pd.DataFrame:
    """4 seeds × 3 arms: ISC+OFA's overthinking is 2E's + ``diff`` plus a little noise."""
    rows = []
    for s, noise in enumerate((0.001, -0.002, 0.0015, 0.0)):
        for arm, ot in (("E", 0.2), ("2E", 0.15), ("E + E ISC+OFA", 0.15 + diff + noise)):
            rows.append({"seed": s, "arm": arm, "overthought": ot, "final_acc": 0.8, "n_test": 100})
            rows[-1].update(minus_2E=ot - 0.15, minus_2E_low=ot - 0.16, minus_2E_high=ot - 0.14)
    return pd.DataFrame(rows)


def test_the_verdict_over_seeds_follows_the_t_interval():
    out = imta_study.over_seeds({"branch": _table(-0.05), "separate": _table(0.0)}, "branch", "all")
    heads = {k: v for k, v, _, _ in out["headlines"]}
    m, _, hi = heads["seed_level_isc_ofa_minus_2E"]
    assert m == pytest.approx(-0.05 + 0.000125) and hi < 0
    assert heads["verdict_over_seeds"] == "ISC+OFA lowered overthinking (4 seeds)"
    assert out["sentences"][-2].endswith(
        "depends on where the E-epoch network comes from: read it with its parent named."
    )
    assert heads["seed_level_E_minus_2E_separate"][0] == pytest.approx(0.05)
