"""Exit rules and calibration on hand-made records whose answers are known by hand."""

import math

import numpy as np
import pytest
import torch

from overthink_lib.analysis import calibration, rules
from overthink_lib.config import ConfigError
from overthink_lib.records import ExitRecord


def _logits_from_preds(preds, confident=None, c=4):
    """``[N, E, C]`` logits whose argmax is ``preds`` (margin 2, or ``confident[n][e]`` when given)."""
    preds = torch.as_tensor(preds)
    n, e = preds.shape
    logits = torch.zeros(n, e, c)
    margin = torch.full((n, e), 2.0) if confident is None else torch.as_tensor(confident, dtype=torch.float32)
    logits[torch.arange(n)[:, None], torch.arange(e)[None, :], preds] = margin
    return logits


def test_patience_by_hand_with_ties_and_a_sample_that_never_settles():
    preds = torch.tensor(
        [
            [1, 1, 1, 1],  # settles at once
            [0, 1, 1, 1],  # two equal from exit 2
            [0, 1, 2, 3],  # never two equal in a row: the last exit
            [2, 2, 0, 0],  # equal at exits 1-2 and again at 3-4
        ]
    )
    assert rules.patience_exits(preds, 0).tolist() == [0, 0, 0, 0]  # patience 0: exit 1 always
    assert rules.patience_exits(preds, 1).tolist() == [1, 2, 3, 1]
    assert rules.patience_exits(preds, 2).tolist() == [2, 3, 3, 3]  # sample 4: 0,0 is only 2 in a row → the last
    assert rules.patience_exits(preds, 3).tolist() == [3, 3, 3, 3]
    with pytest.raises(ConfigError, match=r"patience must be an integer in 0\.\.3"):
        rules.patience_exits(preds, 4)


def test_each_rule_on_a_hand_made_record():
    labels = torch.tensor([1, 1, 3, 2])
    preds = torch.tensor([[1, 1, 1], [0, 1, 1], [0, 1, 2], [2, 2, 0]])
    rec = ExitRecord.from_arrays(_logits_from_preds(preds), labels, flops=[1.0, 2.0, 4.0], model="m")
    d = rules.RULES["patience"].decide(rec, {"patience": 1})
    assert d.exits.tolist() == [1, 2, 2, 1] and d.preds.tolist() == [1, 1, 2, 2]
    out = rules.evaluate(rec, d)
    assert out["accuracy"] == 0.75 and out["fractions"] == [0.0, 0.5, 0.5]
    assert math.isclose(out["flops"], 0.5 * 2 + 0.5 * 4)
    # under that decision: samples 1, 2 and 4 were already right one exit before theirs (wasted computation);
    # sample 3 is wrong with no exit right (not overthought)
    o = rules.rule_outcomes(rec, d)
    assert o["overthought"].tolist() == [False, False, False, False]
    assert o["wasted"].tolist() == [True, True, False, True]
    d_last = rules.Decision(torch.tensor([2, 2, 2, 2]), rec.preds[:, 2])
    o = rules.rule_outcomes(rec, d_last)
    assert o["overthought"].tolist() == [False, False, False, True]  # 4: right at exits 1-2, wrong at 3


def test_threshold_rule_that_never_exits_early_and_ties_at_the_threshold():
    preds = torch.tensor([[0, 0], [1, 1], [2, 2]])
    conf = [[2.0, 2.0], [3.0, 3.0], [1.0, 1.0]]
    rec = ExitRecord.from_arrays(_logits_from_preds(preds, conf), torch.tensor([0, 1, 0]), flops=[1.0, 3.0])
    rule = rules.threshold_rule()
    never = rule.decide(rec, {"p": 0, "thresholds": [math.inf]})
    assert never.exits.tolist() == [2 - 1] * 3  # every sample at the last exit
    t = rec.probs.max(-1).values[0, 0].item()  # sample 1's confidence exactly: ties exit
    tie = rule.decide(rec, {"p": 0, "thresholds": [t]})
    assert tie.exits.tolist() == [0, 0, 1]


def test_running_ensemble_by_hand():
    logits = torch.log(torch.tensor([[[0.7, 0.3], [0.2, 0.8]]]))
    rec = ExitRecord.from_arrays(logits, torch.tensor([0]))
    mean = rules.running_ensemble(rec, "mean")[0]
    assert torch.allclose(mean[1], torch.tensor([0.45, 0.55], dtype=torch.float64), atol=1e-6)
    geo = rules.running_ensemble(rec, "geometric")[0]
    g = torch.tensor([math.sqrt(0.7 * 0.2), math.sqrt(0.3 * 0.8)], dtype=torch.float64)
    assert torch.allclose(geo[1], g / g.sum(), atol=1e-6)
    d = rules.RULES["ensemble-mean"].decide(rec, {"p": 0, "thresholds": [math.inf]})
    assert d.exits.tolist() == [1] and d.preds.tolist() == [1]  # the ensemble's answer, not exit 2's own... both 1 here
    d = rules.RULES["ensemble-mean"].decide(rec, {"p": 0, "thresholds": [0.5]})
    assert d.exits.tolist() == [0] and d.preds.tolist() == [0]


def _pair(seed=0, n=400):
    g = np.random.default_rng(seed)
    out = []
    for _ in range(2):
        labels = g.integers(0, 5, n)
        logits = g.normal(size=(n, 3, 5)).astype(np.float32)
        logits[np.arange(n), :, labels] += np.array([0.5, 1.5, 2.5], dtype=np.float32)
        out.append(ExitRecord.from_arrays(logits, labels, flops=[1.0, 2.0, 3.0], model="m"))
    return out


def test_curves_and_the_matched_difference():
    val, test = _pair()
    thr = rules.rule_curve("threshold", val, test)
    assert len(thr) == 39 and set(thr.columns) >= {"label", "val_flops", "test_acc", "test_correct"}
    same = rules.matched_difference(thr, thr, 2.0, n_boot=200)
    assert same["difference"] == same["low"] == same["high"] == 0.0  # a rule against itself
    pat = rules.rule_curve("patience", val, test)
    assert pat["label"].tolist() == ["patience=0", "patience=1", "patience=2"]
    assert pat["test_acc"].iloc[0] == test.accuracy()[0].item()  # patience 0 is exit 1
    d = rules.matched_difference(pat, thr, 2.0, n_boot=200)
    a = rules.best_within(pat, 2.0)
    r = rules.best_within(thr, 2.0)
    assert math.isclose(d["difference"], a["test_acc"] - r["test_acc"], abs_tol=1e-12) and d["low"] <= d["high"]
    assert a["val_flops"] <= 2.0 and r["val_flops"] <= 2.0
    assert rules.matched_difference(pat, thr, 0.5) is None  # below every setting's cost
    assert rules.matched_budgets(test) == [1.5, 2.0, 2.5]


def test_a_record_without_flops_still_gets_accuracies_and_one_line_for_costs():
    val, test = _pair()
    val = ExitRecord.from_arrays(val.logits, val.labels, model="m")
    test = ExitRecord.from_arrays(test.logits, test.labels, model="m")
    pat = rules.rule_curve("patience", val, test)
    assert pat["test_flops"].isna().all() and pat["test_acc"].notna().all()
    with pytest.raises(ConfigError, match="needs the cost of each exit") as err:
        rules.matched_budgets(test)
    assert len(str(err.value).splitlines()) == 1


def test_confusion_and_auroc_by_hand():
    logits = torch.log(torch.tensor([[[0.5, 0.5], [1.0 - 1e-7, 1e-7]], [[1.0 - 1e-7, 1e-7], [1.0 - 1e-7, 1e-7]]]))
    rec = ExitRecord.from_arrays(logits, torch.tensor([0, 0]))
    c = rules.confusion(rec)
    assert torch.allclose(c, torch.tensor([1.0, 0.0], dtype=torch.float64), atol=1e-5)
    assert rules.auroc([0.1, 0.4, 0.35, 0.8], [False, False, True, True]) == 0.75
    assert rules.auroc([1, 1], [True, False]) == 0.5
    assert math.isnan(rules.auroc([1, 2], [True, True]))


def test_ece_by_hand_and_both_binnings():
    conf = [0.6, 0.7, 0.9, 0.95]
    correct = [1, 0, 1, 1]
    value, bins = calibration.ece(conf, correct, n_bins=2)
    # equal mass: {0.6, 0.7} acc 0.5 conf 0.65; {0.9, 0.95} acc 1 conf 0.925
    assert bins["count"].tolist() == [2, 2]
    assert math.isclose(value, 0.5 * 0.15 + 0.5 * 0.075)
    value, bins = calibration.ece(conf, correct, n_bins=10, binning="width")
    assert bins["count"].tolist() == [1, 1, 2]  # [0.6, 0.7), [0.7, 0.8), [0.9, 1.0]
    assert math.isclose(value, 0.25 * 0.4 + 0.25 * 0.7 + 0.5 * 0.075)  # |1 - 0.6|, |0 - 0.7|, |1 - 0.925|
    with pytest.raises(ConfigError, match="binning must be"):
        calibration.ece(conf, correct, binning="quantile")


def test_ece_of_a_perfectly_calibrated_record_is_near_zero_and_of_an_overconfident_one_is_not():
    g = np.random.default_rng(0)
    conf = g.uniform(0.3, 1.0, 20000)
    correct = g.random(20000) < conf  # right with exactly the stated probability
    est, lo, hi = calibration.ece_ci(conf, correct, n_boot=200)
    # ECE is biased upwards (|acc - conf| of a finite bin is > 0): ≈ 0.8·sqrt(15·p(1-p)/N) ≈ 0.007 here, and the
    # bootstrap CI of a statistic bounded below by 0 sits above it
    assert est < 0.01 and lo < 0.01 and hi < 0.02
    over = np.minimum(conf + 0.1, 1.0)
    est2, lo2, _ = calibration.ece_ci(over, correct, n_boot=200)
    assert lo2 > hi and abs(est2 - 0.1) < 0.02


def test_temperature_scaling_recovers_a_known_temperature():
    g = torch.Generator().manual_seed(0)
    n, c, t_true = 20000, 10, 2.5
    z = torch.randn(n, c, generator=g) * 4  # sharp logits; the labels follow softmax(z / 2.5)
    labels = torch.multinomial(torch.softmax(z / t_true, -1), 1, generator=g).squeeze(1)
    t = calibration.fit_temperature(z, labels)
    assert abs(t - t_true) < 0.1
    rec = ExitRecord.from_arrays(torch.stack([z, z / 2], 1), labels)  # exit 2 already divided by 2
    ts = calibration.exit_temperatures(rec)
    assert abs(ts[0] - t_true) < 0.1 and abs(ts[1] - t_true / 2) < 0.05
    cal = calibration.scaled(rec, ts)
    assert torch.equal(cal.preds, rec.preds)  # the same answers, other confidences
    before = calibration.calibration_table(rec, n_boot=100)
    after = calibration.calibration_table(cal, n_boot=100)
    assert (after["ece"] < before["ece"]).all() and (after["ece"] < 0.02).all()
    with pytest.raises(ConfigError, match="temperatures must be 2 finite numbers > 0"):
        calibration.scaled(rec, [1.0, 0.0])
