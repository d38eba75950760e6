"""Paired comparisons on hand-made records: budgeted batch minus a fixed exit over the same test samples, and
controls matched on how consecutive exits agree (worked out on paper)."""

import math

import numpy as np
import pandas as pd
import pytest
import torch
from test_exits_overthinking import CONF, CORRECT, make_record

from overthink_lib.analysis import exits, overthinking
from overthink_lib.analysis.stats import bootstrap_mean
from overthink_lib.config import ConfigError
from overthink_lib.records import ExitRecord


def one_curve(thresholds):
    """A budgeted curve of one point with the given thresholds (what thresholds_for_budget picks from)."""
    return pd.DataFrame({"p": [1], "thresholds": [list(thresholds)], "val_flops": [0.0], "val_acc": [1.0]})


def test_paired_equals_hand_computation():
    rec = make_record(CORRECT, CONF, [10.0, 20.0, 40.0])
    # T = (0.85, 0.80): exits [1, 3, 2, 3, 3, 1], cost (2·10 + 20 + 3·40) / 6 = 26.7 → the comparator is exit 2 (20)
    out = exits.paired_budgeted_minus_anytime(rec, rec, 100.0, curve=one_curve([0.85, 0.8, -math.inf]), n_boot=500)
    assert out["budgeted_flops"] == pytest.approx(160 / 6)
    assert out["anytime_exit"] == 2 and out["anytime_flops"] == 20.0
    assert out["budgeted_acc"] == pytest.approx(5 / 6) and out["anytime_acc"] == pytest.approx(2 / 6)
    diff = np.array([0, 1, 0, 1, 0, 1], dtype=float)  # budgeted right [1,1,1,1,0,1] − exit 2 right [1,0,1,0,0,0]
    assert (out["est"], out["low"], out["high"]) == pytest.approx(bootstrap_mean(diff, n_boot=500, seed=0))
    assert out["est"] == pytest.approx(0.5)
    # the whole-curve table agrees point by point
    table = exits.paired_curve_minus_anytime(rec, one_curve([0.85, 0.8, -math.inf]), n_boot=500)
    assert table.loc[0, "anytime exit"] == 2 and table.loc[0, "paired diff (pts)"] == pytest.approx(50.0)
    assert bool(table.loc[0, "inside"])


def test_budgeted_equal_to_anytime_gives_exact_zero():
    rec = make_record(CORRECT, CONF, [10.0, 20.0, 40.0])
    # no exit before the last is ever taken: budgeted batch is exit 3 on every sample
    out = exits.paired_budgeted_minus_anytime(rec, rec, 100.0, curve=one_curve([math.inf, math.inf]), n_boot=300)
    assert out["anytime_exit"] == 3
    assert (out["est"], out["low"], out["high"]) == (0.0, 0.0, 0.0)
    assert not out["excludes_zero"] and "includes 0" in out["verdict"]


def test_paired_ci_excludes_zero_where_the_unpaired_check_does_not():
    # 100 samples right at both exits and confident at exit 1; 100 wrong at exit 1, unsure, and 12 of them right at
    # exit 2. Budgeted batch (T1 = 0.8) = exit 1's answers + 12 more: 0.56 vs exit 1's 0.50, per sample never worse.
    n_late_right = 12
    correct = [[1, 1]] * 100 + [[0, 1]] * n_late_right + [[0, 0]] * (100 - n_late_right)
    conf = [[0.9, 0.9]] * 100 + [[0.6, 0.9]] * 100
    rec = make_record(correct, conf, [10.0, 20.0])
    out = exits.paired_budgeted_minus_anytime(rec, rec, 100.0, curve=one_curve([0.8, -math.inf]), n_boot=2000)
    assert out["anytime_exit"] == 1 and out["est"] == pytest.approx(0.06)
    assert out["excludes_zero"] and out["low"] > 0 and "measurably higher" in out["verdict"]
    # the unpaired check: the budgeted accuracy's own CI against the anytime point estimate
    curve = exits.budgeted_curve(rec, rec, ps=[1])
    curve["thresholds"] = [[0.8, -math.inf]]
    curve["test_acc"], curve["test_flops"] = out["budgeted_acc"], out["budgeted_flops"]
    _, curve["low"], curve["high"] = bootstrap_mean(
        exits.apply_thresholds(rec, [0.8])["correct"].double(), n_boot=2000, seed=0
    )
    unpaired = exits.compare_to_anytime(curve, exits.anytime_curve(rec))
    assert not unpaired["above, CI excludes anytime"].iloc[0]
    assert float(curve["low"].iloc[0]) < 0.5  # not even above the fixed exit 1 itself


def test_paired_refuses_bad_budget():
    rec = make_record(CORRECT, CONF, [10.0, 20.0, 40.0])
    with pytest.raises(ConfigError, match="budget"):
        exits.paired_budgeted_minus_anytime(rec, rec, float("nan"), curve=one_curve([0.85, 0.8]))
    with pytest.raises(ConfigError, match="below exit 1"):
        exits.anytime_exit_within(rec, 5.0)


def pred_record(preds, labels, scale):
    """Exits predict `preds` [N, E] (3 classes); `scale` [N] sets each sample's confidence."""
    p = torch.tensor(preds)
    logits = torch.nn.functional.one_hot(p, 3).float() * torch.tensor(scale, dtype=torch.float32)[:, None, None]
    return ExitRecord.from_arrays(logits, torch.tensor(labels), flops=[1.0, 2.0, 3.0, 4.0])


# rows: 0, 1, 3, 6 are overthought (an exit right, a later one wrong); 2, 4, 5 are not
PREDS = [
    [0, 0, 1, 1],  # 0: label 0, overthought; exits 2→3 disagree: pattern (F, T, F)
    [0, 1, 0, 0],  # 1: label 0, overthought; pattern (T, T, F)
    [2, 2, 1, 1],  # 2: label 1, wrong then right: pattern (F, T, F)
    [2, 0, 2, 2],  # 3: label 1, never right: pattern (T, T, F)
    [0, 0, 0, 0],  # 4: label 0, always right: pattern (F, F, F)
    [1, 1, 2, 2],  # 5: label 2, wrong then right: pattern (F, T, F)
    [0, 1, 1, 0],  # 6: label 0, overthought; pattern (T, F, T): no control has it
]
LABELS = [0, 0, 1, 1, 0, 2, 0]
SCALE = [2.0, 3.0, 5.0, 3.0, 1.0, 2.1, 2.0]


def test_matched_controls_share_the_disagreement_pattern():
    rec = pred_record(PREDS, LABELS, SCALE)
    assert overthinking.overthought(rec).tolist() == [True, True, False, False, False, False, True]
    rows = [0, 1, 6]
    m = overthinking.matched_controls(rec, rows)
    # row 0: candidates 2 and 5 (pattern F, T, F); 5 is nearer in confidence. row 1: only 3. row 6: none
    assert m["controls"].tolist() == [[5], [3], [-1]]
    assert m["matched"].tolist() == [True, True, False] and m["n_matched"] == 2 and m["n"] == 3
    pat = overthinking.disagreement_pattern(rec.preds)
    for r, c in zip(rows, m["controls"][:, 0]):
        if c >= 0:
            assert (pat[c] == pat[r]).all()
    two = overthinking.matched_controls(rec, rows, per_sample=2)
    assert two["controls"].tolist() == [[5, 2], [-1, -1], [-1, -1]] and two["n_matched"] == 1
    # by count: row 6 (two changing pairs) now matches row 3 (two changing pairs, another pattern)
    cnt = overthinking.matched_controls(rec, rows, by="count")
    assert cnt["controls"][2].tolist() == [3] and cnt["n_matched"] == 3
    assert overthinking.matched_controls(rec, rows, seed=5)["controls"].tolist() == m["controls"].tolist()


def test_matched_controls_refuse_bad_input():
    rec = pred_record(PREDS, LABELS, SCALE)
    with pytest.raises(ConfigError, match="matching"):
        overthinking.matched_controls(rec, [0], by="label")
    with pytest.raises(ConfigError, match="row positions"):
        overthinking.matched_controls(rec, [7])
    with pytest.raises(ConfigError, match="per_sample"):
        overthinking.matched_controls(rec, [0], per_sample=0)


def test_matched_and_group_differences():
    est, lo, hi, n = overthinking.matched_minus_controls([1.0, 2.0, 3.0], [[0.0], [1.0], [np.nan]], [True, True, True])
    assert (est, lo, hi, n) == (1.0, 1.0, 1.0, 2)
    assert overthinking.matched_minus_controls([1.0], [[0.0]], [False])[3] == 0
    assert overthinking.group_minus_group([2.0, 2.0, np.nan], [0.5, 0.5], n_boot=100) == (1.5, 1.5, 1.5)
    with pytest.raises(ConfigError, match="both"):
        overthinking.group_minus_group([], [1.0])
