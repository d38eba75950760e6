"""Golden tests on a hand-built record (6 samples × 3 exits, worked out on paper) and property tests."""

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from overthink_lib.analysis import exits, overthinking
from overthink_lib.analysis.stats import bootstrap_mean
from overthink_lib.config import ConfigError
from overthink_lib.records import ExitRecord

# rows = samples, columns = exits; 1 = correct
CORRECT = [[1, 1, 1], [1, 0, 1], [0, 1, 0], [0, 0, 1], [0, 0, 0], [1, 0, 0]]
CONF = [
    [0.90, 0.90, 0.9],
    [0.80, 0.60, 0.9],
    [0.55, 0.85, 0.9],
    [0.60, 0.65, 0.9],
    [0.70, 0.75, 0.9],
    [0.95, 0.70, 0.9],
]
FLOPS = [10.0, 20.0, 40.0]


def make_record(correct=CORRECT, conf=CONF, flops=FLOPS, key="m1"):
    """2 classes, every label 0; a correct exit puts probability `conf` on class 0, a wrong one on class 1."""
    c = torch.tensor(correct, dtype=torch.bool)
    p = torch.tensor(conf, dtype=torch.float64)
    a = torch.log(p / (1 - p))  # logit gap giving max softmax = conf
    logits = torch.stack([torch.where(c, a, torch.zeros_like(a)), torch.where(c, torch.zeros_like(a), a)], -1)
    n = len(correct)
    return ExitRecord(
        logits.float(),
        torch.zeros(n, dtype=torch.long),
        torch.arange(100, 100 + n),
        torch.tensor(flops, dtype=torch.float64),
        provenance={"weights_hash": key},
    )


def test_golden_overthinking_metrics():
    rec = make_record()
    assert rec.accuracy().tolist() == pytest.approx([3 / 6, 2 / 6, 3 / 6])
    assert overthinking.overthought(rec).tolist() == [False, True, True, False, False, True]
    assert overthinking.wasteful(rec).tolist() == [True, True, True, False, False, True]
    assert overthinking.destructive(rec).tolist() == [False, False, True, False, False, True]
    assert overthinking.overthought_indices(rec).tolist() == [101, 102, 105]
    assert overthinking.first_correct_exit(rec).tolist() == [0, 0, 1, 2, -1, 0]
    expected = np.array([[0, 2, 1], [1, 0, 1], [1, 2, 0]]) / 6
    assert np.allclose(overthinking.pairwise(rec), expected)
    s = overthinking.summary(rec, n_boot=200)
    assert s.loc["overthought (thesis Eq 3.11)", "value"] == pytest.approx(0.5)
    assert s.loc["wasteful (SDN)", "value"] == pytest.approx(4 / 6)
    assert s.loc["destructive (SDN)", "value"] == pytest.approx(2 / 6)
    assert s.loc["destructive share of final-exit errors", "value"] == pytest.approx(2 / 3)
    assert s.loc["collective accuracy (any exit right)", "value"] == pytest.approx(5 / 6)
    assert (s["low"] <= s["value"] + 1e-12).all() and (s["value"] <= s["high"] + 1e-12).all()


def test_golden_bounds():
    b = overthinking.bounds(make_record())
    assert b["oracle"] == pytest.approx({"accuracy": 5 / 6, "flops": 90 / 6})
    assert b["realistic"] == pytest.approx({"accuracy": 5 / 6, "flops": 130 / 6})


def test_golden_hand_set_thresholds():
    r = exits.apply_thresholds(make_record(), [0.75, 0.8])
    assert r["exits"].tolist() == [0, 0, 1, 2, 2, 0]
    assert r["accuracy"] == pytest.approx(5 / 6)
    assert r["fractions"] == pytest.approx([3 / 6, 1 / 6, 2 / 6])
    assert r["flops"] == pytest.approx(130 / 6)


def test_golden_both_threshold_algorithms_at_p_equal_b():
    conf = exits.confidence(make_record())
    for fn in (lambda c: exits.thresholds_thesis(c, 20), lambda c: exits.thresholds_official(c, 20)):
        t, shares = fn(conf)
        assert shares == pytest.approx([1 / 3] * 3)  # p = b: every exit gets the same share
        assert t[:2] == pytest.approx([0.90, 0.75]) and t[2] == -math.inf


def test_thesis_and_official_differ_on_ties():
    # exit 1 ties at the threshold: the thesis removes exactly its quota, the official code every tied sample
    conf = torch.tensor([[0.8, 0.10, 0], [0.8, 0.95, 0], [0.5, 0.90, 0], [0.4, 0.30, 0]])
    t_thesis, _ = exits.thresholds_thesis(conf, 20)
    t_official, _ = exits.thresholds_official(conf, 20)
    assert t_thesis[:2] == pytest.approx([0.8, 0.95])
    assert t_official[:2] == pytest.approx([0.8, 0.90])


def test_quota_zero_gives_infinite_threshold():
    conf = torch.rand(10, 3)
    t, _shares = exits.thresholds_official(conf, 1)  # share of exit 1 ≈ 0.95, exit 2 ≈ 0.05 → ⌊10·0.0475⌋ = 0
    assert t[1] == math.inf
    t2, _ = exits.thresholds_thesis(conf, 1)
    assert t2[1] == math.inf


def test_budgeted_curve_table_and_budget_lookup():
    rec = make_record()
    curve = exits.budgeted_curve(rec, rec, method="thesis", ps=[1, 20, 39])
    assert list(curve["p"]) == [1, 20, 39]
    assert {"thresholds", "test_fractions", "val_acc", "test_acc", "test_flops", "planned_flops"} <= set(curve)
    row = curve.set_index("p").loc[20]
    assert row["planned_flops"] == pytest.approx((10 + 20 + 40) / 3)
    pick = exits.thresholds_for_budget(curve, 40.0)
    assert pick["val_flops"] <= 40.0
    with pytest.raises(ConfigError, match="below the cheapest point"):
        exits.thresholds_for_budget(curve, 5.0)


def test_budgeted_points_against_anytime_interpolated_in_flops():
    import pandas as pd

    anytime = exits.anytime_curve(make_record())  # exits at 10, 20, 40 FLOPs: accuracy 1/2, 1/3, 1/2
    curve = pd.DataFrame(
        {
            "p": [1, 2, 3, 4, 5],
            "test_flops": [15.0, 30.0, 10.0, 40.0, 35.0],
            "test_acc": [0.6, 0.4, 0.5, 0.5, 0.45],
            "low": [0.45, 0.42, 0.3, 0.4, 0.46],
        }
    )
    cmp = exits.compare_to_anytime(curve, anytime)
    between = [(1 / 2 + 1 / 3) / 2, (1 / 3 + 1 / 2) / 2, 1 / 2, 1 / 2, 1 / 3 + (1 / 2 - 1 / 3) * 3 / 4]
    assert cmp["anytime interp %"].tolist() == pytest.approx([100 * a for a in between])
    assert cmp["gain (pts)"].tolist() == pytest.approx([100 * (b - a) for a, b in zip(between, curve["test_acc"])])
    assert cmp["MFLOPs"].tolist() == pytest.approx([1.5e-5, 3e-5, 1e-5, 4e-5, 3.5e-5])
    assert cmp["above, CI excludes anytime"].tolist() == [True, True, False, False, True]
    g = exits.gain_over_anytime(cmp, anytime)  # strictly between exit 1 and exit 3: p = 1, 2, 5
    assert (g["points"], g["above"], g["ci_above"]) == (3, 1, 3)
    assert g["best"]["p"] == 1 and g["best"]["gain (pts)"] == pytest.approx(100 * (0.6 - between[0]))
    no_ci = exits.compare_to_anytime(curve.drop(columns="low"), anytime)
    assert no_ci["budgeted low %"].isna().all() and not no_ci["above, CI excludes anytime"].any()
    ends = exits.compare_to_anytime(curve.iloc[[2, 3]], anytime)  # only the end exits' costs: nothing inside
    assert exits.gain_over_anytime(ends, anytime) == {"points": 0, "above": 0, "ci_above": 0, "best": None}


def test_bad_input_is_refused():
    rec = make_record()
    with pytest.raises(ConfigError, match="thresholds need 2 values"):
        exits.apply_thresholds(rec, [0.5])
    with pytest.raises(ConfigError, match="unknown exit criterion"):
        exits.confidence(rec, "vibes")
    with pytest.raises(ConfigError, match="different models"):
        exits.budgeted_curve(rec, make_record(key="m2"))
    with pytest.raises(ConfigError, match="unknown threshold method"):
        exits.budgeted_curve(rec, rec, method="magic")


def test_criteria_order_confidence_the_same_way():
    rec = make_record()
    for name in exits.CRITERIA:
        c = exits.confidence(rec, name)
        # 2 classes: every criterion is a monotone function of the max softmax
        order = c[:, 0].argsort()
        assert order.tolist() == exits.confidence(rec)[:, 0].argsort().tolist(), name


records = st.integers(2, 40).flatmap(
    lambda n: st.integers(2, 5).flatmap(
        lambda e: st.tuples(
            st.lists(st.lists(st.booleans(), min_size=e, max_size=e), min_size=n, max_size=n),
            st.lists(st.lists(st.floats(0.51, 0.99), min_size=e, max_size=e), min_size=n, max_size=n),
        )
    )
)


@settings(max_examples=60, deadline=None)
@given(records, st.lists(st.floats(0.5, 1.0), min_size=4, max_size=4))
def test_properties(data, raw_t):
    correct, conf = data
    e = len(correct[0])
    rec = make_record(correct, conf, flops=[float(10 * (k + 1) ** 2) for k in range(e)])
    r = exits.apply_thresholds(rec, raw_t[: e - 1])
    assert sum(r["fractions"]) == pytest.approx(1.0)
    assert rec.flops[0] - 1e-9 <= r["flops"] <= rec.flops[-1] + 1e-9
    assert exits.apply_thresholds(rec, [-math.inf] * (e - 1))["fractions"][0] == pytest.approx(1.0)
    assert exits.apply_thresholds(rec, [math.inf] * (e - 1))["fractions"][-1] == pytest.approx(1.0)
    b = overthinking.bounds(rec)
    collective = rec.correct.any(1).double().mean().item()
    assert b["oracle"]["accuracy"] == pytest.approx(collective)
    assert all(collective >= a - 1e-12 for a in rec.accuracy().tolist())
    assert b["oracle"]["flops"] <= b["realistic"]["flops"] + 1e-9
    for method in ("thesis", "official"):
        curve = exits.budgeted_curve(rec, rec, method=method, ps=[1, 10, 20, 30, 39])
        assert np.allclose([sum(f) for f in curve["test_fractions"]], 1.0)


def test_thesis_thresholds_meet_their_quota_on_validation():
    g = torch.Generator().manual_seed(0)
    n, e = 2000, 4
    correct = (torch.rand(n, e, generator=g) < 0.7).tolist()
    conf = (0.5 + 0.49 * torch.rand(n, e, generator=g)).tolist()
    rec = make_record(correct, conf, flops=[1.0, 2.0, 3.0, 4.0])
    for p in (5, 20, 35):
        row = exits.budgeted_curve(rec, rec, method="thesis", ps=[p]).iloc[0]
        # continuous confidences: the validation exit fractions equal the planned shares up to flooring
        assert np.allclose(row["val_fractions"][:-1], row["planned_fractions"][:-1], atol=2 / n)


def test_bootstrap_ci_covers_and_is_seeded():
    x = (torch.arange(1000) % 4 == 0).double()
    est, lo, hi = bootstrap_mean(x, n_boot=500, seed=1)
    assert est == pytest.approx(0.25) and lo < 0.25 < hi and hi - lo < 0.08
    assert bootstrap_mean(x, n_boot=500, seed=1) == (est, lo, hi)


def test_overthought_and_others_samples_each_group_within_itself():
    rec = make_record()  # overthought rows 1, 2, 5; others 0, 3, 4
    g = overthinking.overthought_and_others(rec, 2, seed=0)
    assert set(g["overthought"]) <= {1, 2, 5} and set(g["other"]) <= {0, 3, 4}
    assert len(g["overthought"]) == 2 == len(g["other"]) and list(g["other"]) == sorted(g["other"])
    assert {k: v.tolist() for k, v in overthinking.overthought_and_others(rec, 2, seed=0).items()} == {
        k: v.tolist() for k, v in g.items()
    }  # seeded
    everything = overthinking.overthought_and_others(rec, 10, seed=3)
    assert everything["overthought"].tolist() == [1, 2, 5] and everything["other"].tolist() == [0, 3, 4]
    none = overthinking.overthought_and_others(make_record(correct=[[1, 1, 1], [0, 0, 0]], conf=CONF[:2]), 5, 0)
    assert len(none["overthought"]) == 0 and none["other"].tolist() == [0, 1]


def test_flops_free_records_say_so_where_costs_are_needed():
    rec = make_record()
    rec.flops = None
    assert exits.apply_thresholds(rec, [0.75, 0.8])["accuracy"] == pytest.approx(
        exits.apply_thresholds(make_record(), [0.75, 0.8])["accuracy"]
    )
    assert math.isnan(exits.apply_thresholds(rec, [0.75, 0.8])["flops"])
    for fn in (exits.anytime_curve, overthinking.bounds, lambda r: exits.budgeted_curve(r, r)):
        with pytest.raises(ConfigError, match="needs the cost of each exit"):
            fn(rec)
    assert overthinking.summary(rec, n_boot=50).loc["overthought (thesis Eq 3.11)", "value"] == pytest.approx(0.5)


def test_report_gives_notebook_04_its_numbers_and_sentence():
    rec = make_record()  # 6 samples: 3 overthought, final exit right for 3, some exit right for 5
    r = overthinking.report(rec, n_boot=100, seed=0)
    heads = {k: (v, unit) for k, v, _, unit in r["headlines"]}
    assert heads["overthought"][0][0] == pytest.approx(3 / 6) and heads["overthought"][1] == "%"
    assert heads["final_exit_accuracy"][0][0] == pytest.approx(3 / 6)
    assert heads["collective_accuracy"][0][0] == pytest.approx(5 / 6)
    assert all(low <= est <= high for (est, low, high), _ in heads.values())
    assert r["sentence"] == "overthought: 50.00 % of 6 test samples"
    assert r["table"].loc["overthought (thesis Eq 3.11)"].iloc[0].startswith("50.00")
    assert overthinking.thesis_table_3_1().loc["SVHN (thesis)", "50 + 50 ISC+OFA"] == 11.29
