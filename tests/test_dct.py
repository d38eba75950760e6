"""DCT clutter: planted images with known answers, ordering, invariance, and the group tests."""

import numpy as np
import pytest

from overthink_lib.analysis import dct
from overthink_lib.config import ConfigError


def test_constant_image_needs_one_coefficient():
    img = np.full((2, 1, 16, 16), 100.0)
    assert dct.clutter(img).tolist() == [1 / 256, 1 / 256]
    assert dct.clutter(np.zeros((1, 3, 8, 8)), colour="channel")[0] == 1 / 64


def test_white_noise_needs_most():
    rng = np.random.default_rng(0)
    noise = rng.normal(size=(20, 1, 32, 32))
    for kw in ({"order": "zigzag", "measure": "energy"}, dct.LITERAL):
        s = dct.clutter(noise, **kw)
        assert s.min() > 0.9
        smooth = np.cumsum(np.cumsum(noise, -1), -2)  # integrated noise: energy at low frequencies
        assert dct.clutter(smooth, **kw).max() < s.min()


def test_invariant_to_brightness_scaling():
    rng = np.random.default_rng(1)
    img = rng.random((5, 3, 16, 16))
    for order in dct.ORDERS:
        for colour in dct.COLOURS:
            for measure in dct.MEASURES:
                a = dct.clutter(img, order=order, colour=colour, measure=measure)
                assert np.allclose(
                    a, dct.clutter(7.5 * img, order=order, colour=colour, measure=measure), equal_nan=True
                )


def test_orders_run_low_to_high():
    z = dct.frequency_order(4, 4, "zigzag")
    assert z[:6].tolist() == [0, 1, 4, 8, 5, 2]  # (0,0) (0,1) (1,0) (2,0) (1,1) (0,2): JPEG's zig-zag
    r = dct.frequency_order(8, 8, "radial")
    radius = np.hypot(*np.unravel_index(r, (8, 8)))
    assert np.all(np.diff(radius) >= 0)
    assert sorted(z.tolist()) == list(range(16)) and sorted(r.tolist()) == list(range(64))
    # a single high-frequency cosine needs (almost) all the coefficients before it in the order
    coef = np.zeros((1, 1, 8, 8))
    coef[0, 0, 7, 7] = 1.0
    from scipy import fft

    img = fft.idctn(coef, axes=(-2, -1), norm="ortho")
    assert dct.clutter(img)[0] == 1.0 and dct.clutter(img, order="radial")[0] == 1.0


def test_literal_row_order_and_measures_on_a_hand_made_matrix():
    coef = np.array([[10, 0, 3, 0], [-5, 0, 0, 0], [0, 0, 0, 1], [0, 0, 0, 1]], dtype=float)[None, None]
    assert dct.frequency_order(4, 4, "row").tolist() == list(range(16))  # "flatten ... horizontally"
    # |coefficients| row by row: 10, 0, 3, 0, 5 → 18 of 20 = 90 % after 5 coefficients
    assert dct.clutter_of_coefficients(coef, threshold=0.9)[0] == 5 / 16
    assert dct.clutter_of_coefficients(coef, threshold=0.9, order="row", measure="abs")[0] == 5 / 16
    # zig-zag: (0,0) (0,1) (1,0) (2,0) (1,1) (0,2) → 10, 0, 5, 0, 0, 3: 18 after 6
    assert dct.clutter_of_coefficients(coef, threshold=0.9, order="zigzag")[0] == 6 / 16
    # signed sum: 10 + 3 − 5 + 1 + 1 = 10, the DC term alone is 100 % of it
    assert dct.clutter_of_coefficients(coef, threshold=0.9, measure="sum")[0] == 1 / 16
    # energy: 100, 9, 25, 1, 1 = 136; 90 % = 122.4 reached with the 5th coefficient (134)
    assert dct.clutter_of_coefficients(coef, threshold=0.9, measure="energy")[0] == 5 / 16
    assert dct.clutter_of_coefficients(coef, threshold=1.0)[0] == 16 / 16
    # a signed total <= 0 has no 98 % share: NaN, not a number that looks like a score
    neg = np.array([[-3.0, 1.0], [0.0, 0.0]])[None, None]
    assert np.isnan(dct.clutter_of_coefficients(neg, measure="sum")[0])
    assert dct.clutter_of_coefficients(neg)[0] == 2 / 4  # magnitudes: 3 of 4 is 75 %, both are needed


def test_orthonormal_transform_keeps_energy():
    rng = np.random.default_rng(2)
    img = rng.random((3, 1, 10, 12))
    assert np.allclose((dct.dct2(img) ** 2).sum((1, 2, 3)), (img**2).sum((1, 2, 3)))


def test_group_tests_flag_planted_difference_not_null():
    rng = np.random.default_rng(3)
    groups = np.repeat([0, 1, 2], 300)
    null = rng.normal(size=900)
    planted = null + 0.6 * groups
    assert dct.kruskal_test(null, groups)["p"] > 0.01
    res = dct.kruskal_test(planted, groups)
    assert res["p"] < 1e-6 and res["epsilon_squared"] > 0.1
    assert dct.permutation_test(null, groups, n_perm=300)["p"] > 0.01
    assert dct.permutation_test(planted, groups, n_perm=300)["p"] < 0.01
    summary = dct.group_summary(planted, groups)
    assert list(summary.index) == [0, 1, 2] and summary["mean"].is_monotonic_increasing


def test_readings_side_by_side_on_hand_made_coefficients():
    # 2 × 2 grids at a 90 % share; scores (abs, signed, energy), worked out by hand:
    coef = np.array(
        [
            [[1, 0], [0, 0]],  # DC only: 1/4 under every reading
            [[1, 1], [1, 1]],  # flat: 3 of 4 is 75 %, all four needed: 1
            [[-3, 1], [0, 0]],  # abs 3, 4 of 4 → 2/4; signed total −2 → NaN; energy 9 of 10 → 1/4
            [[2, 0], [0, 2]],
        ],
        dtype=float,
    )[:, None]  # the last coefficient is needed: 1
    groups = np.array(["a", "a", "b", "b"])
    readings = {"abs": dict(measure="abs"), "signed": dict(measure="sum"), "energy": dict(measure="energy")}
    t = dct.compare_readings(coef, groups, readings, threshold=0.9, means_of=["a", "b"])
    assert list(t.index) == ["abs", "signed", "energy"] and t.index.name == "measure"
    assert t["mean"].tolist() == pytest.approx([2.75 / 4, 2.25 / 3, 2.5 / 4])
    assert t["std"].tolist() == pytest.approx(
        [np.std([0.25, 1, 0.5, 1]), np.std([0.25, 1, 1]), np.std([0.25, 1, 0.25, 1])]
    )
    assert t["NaN %"].tolist() == pytest.approx([0, 25, 0])
    assert t["DC alone %"].tolist() == pytest.approx([25, 100 / 3, 50])
    assert t["mean, a"].tolist() == pytest.approx([0.625] * 3)
    assert t["mean, b"].tolist() == pytest.approx([0.75, 1, 0.625])  # the signed NaN left out of b's mean
    for name, scores, g in (("abs", [0.25, 1, 0.5, 1], groups), ("signed", [0.25, 1, 1], groups[[0, 1, 3]])):
        kw = dct.kruskal_test(scores, g)  # the signed reading is tested on the images it scores
        assert (t.loc[name, "KW epsilon²"], t.loc[name, "KW p"]) == pytest.approx((kw["epsilon_squared"], kw["p"]))
    assert t.loc["energy", "KW epsilon²"] == 0 and t.loc["energy", "KW p"] == pytest.approx(1)  # same in a and b
    # nothing to compare: one score for every image, or one group among the scored images → NaN, not an error
    flat = dct.compare_readings(coef[[0, 0]], ["a", "b"], readings, threshold=0.9)
    assert flat[["KW epsilon²", "KW p"]].isna().all().all() and "mean, a" not in flat
    one_group = dct.compare_readings(coef[[2, 3]], ["a", "b"], {"signed": dict(measure="sum")}, threshold=0.9)
    assert np.isnan(one_group.loc["signed", "KW epsilon²"]) and one_group.loc["signed", "NaN %"] == 50


def test_reading_keys_are_the_results_keys():
    assert dct.reading_key("row, |coefficients| (thesis, default)") == "row_coefficients"
    assert dct.reading_key("row, signed coefficients (thesis, other reading)") == "row_signed_coefficients"
    assert dct.reading_key("zig-zag, energy (ours)") == "zig-zag_energy"
    assert dct.reading_key("radial, energy (ours)") == "radial_energy"


def test_bad_input():
    with pytest.raises(ConfigError, match=r"threshold must be a share in \(0, 1\]"):
        dct.clutter(np.zeros((1, 1, 4, 4)), threshold=0)
    with pytest.raises(ConfigError, match="unknown DCT measure 'squares': choose one of abs, sum, energy"):
        dct.clutter(np.zeros((1, 1, 4, 4)), measure="squares")
    with pytest.raises(ConfigError, match="unknown DCT order"):
        dct.clutter(np.zeros((1, 1, 4, 4)), order="hilbert")
    with pytest.raises(ConfigError, match=r"must be \[N, C, H, W\]"):
        dct.clutter(np.zeros((4, 4)))
    with pytest.raises(ConfigError, match="at least two"):
        dct.kruskal_test([1, 2, 3], [0, 0, 0])


def test_group_verdicts_are_worded_from_the_effect_size():
    """One hand-made case per ε² band, and the wording bug it fixes: p = 0.02 is a detectable difference at α = 0.05."""
    from overthink_lib.analysis.stats import effect_band, group_difference_verdict

    assert [effect_band(e) for e in (0.0, 0.009, 0.01, 0.079, 0.08, 0.259, 0.26, 0.9)] == [
        "negligible",
        "negligible",
        "small",
        "small",
        "medium",
        "medium",
        "large",
        "large",
    ]
    assert effect_band(float("nan")) == "unknown"
    assert group_difference_verdict(0.081, 1e-30).startswith("a medium difference (epsilon² = 0.081")
    assert "dwarfs" not in group_difference_verdict(0.081, 1e-30)  # a medium effect is not dwarfed
    assert group_difference_verdict(0.002, 1e-12).endswith("the spread within groups dwarfs it")
    assert group_difference_verdict(0.05, 0.02).startswith("a small difference")  # not "no detectable"
    assert group_difference_verdict(0.3, 0.2).startswith("no detectable difference (p = 0.2")
    assert group_difference_verdict(0.3, 0.001).startswith("a large difference")
    assert group_difference_verdict(float("nan"), float("nan")).startswith("untested")


def test_sanity_check_passes_only_for_a_non_negligible_effect_that_is_detected():
    from overthink_lib.analysis.stats import separates

    assert separates(0.05, 1e-6)  # small but real
    assert not separates(0.005, 1e-30)  # detected but negligible: a measure that barely sees the levels fails
    assert not separates(0.3, 0.02)  # large but not at 1 %
    assert not separates(float("nan"), float("nan"))


def test_separation_of_groups_in_pooled_sds_and_a_saturated_measure():
    rng = np.random.default_rng(0)
    g = np.repeat(np.array(["easy", "medium", "hard"]), 2000)
    apart = np.concatenate([rng.normal(m, 0.01, 2000) for m in (0.2, 0.5, 0.8)])
    s = dct.separation(apart, g, ("easy", "medium", "hard"))
    assert list(s["means"]) == ["easy", "medium", "hard"] and s["spread"] == pytest.approx(0.6, abs=0.01)
    assert s["spread_in_sd"] == pytest.approx(s["spread"] / apart.std(), rel=1e-9) and s["pooled_sd"] > 0.2
    saturated = np.concatenate([rng.normal(m, 0.02, 2000) for m in (0.910, 0.911, 0.912)])
    t = dct.separation(saturated, g)
    assert t["spread_in_sd"] < 0.2 and t["central_95"][0] > 0.8 and t["central_95"][1] - t["central_95"][0] < 0.15
    with pytest.raises(ConfigError, match="at least two non-empty groups"):
        dct.separation([0.1, 0.2], ["a", "a"])


def test_mean_sd_ci_draws_the_spread_and_the_ci_with_integer_exit_ticks():
    from overthink_lib import plots

    _fig, ax = plots.subplots()
    plots.mean_sd_ci(ax, [1, 2, 3], [0.5, 0.6, 0.7], [0.1, 0.1, 0.1], [0.49, 0.59, 0.69], [0.51, 0.61, 0.71], label="x")
    assert list(ax.get_xticks()) == [1, 2, 3]
    bars = ax.containers[0]  # the ±SD error bars, then the CI lines
    seg = bars.lines[2][0].get_segments()
    assert np.allclose([s[:, 1] for s in seg], [[0.4, 0.6], [0.5, 0.7], [0.6, 0.8]])
    ci = [c for c in ax.collections if c is not bars.lines[2][0]][-1].get_segments()
    assert np.allclose([s[:, 1] for s in ci], [[0.49, 0.51], [0.59, 0.61], [0.69, 0.71]])
