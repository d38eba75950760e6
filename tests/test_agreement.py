"""Agreement metrics on hand-made indicator sets and planted independent / sample-bound data."""

import numpy as np
import pytest
import torch
from test_exits_overthinking import CORRECT, make_record

from overthink_lib.analysis import agreement, stats
from overthink_lib.config import ConfigError


def test_jaccard_and_kappa_by_hand():
    a = [1, 1, 0, 0, 1, 0]
    b = [1, 0, 0, 0, 1, 1]
    assert agreement.jaccard(a, b) == pytest.approx(2 / 4)
    # po = 4/6; pa = pb = 1/2 → pe = 1/2; κ = (2/3 − 1/2) / (1/2) = 1/3
    assert agreement.cohen_kappa(a, b) == pytest.approx(1 / 3)
    assert agreement.cohen_kappa(a, a) == pytest.approx(1.0)
    assert agreement.cohen_kappa([0, 1, 2, 2], [0, 1, 2, 2]) == pytest.approx(1.0)  # multi-class labels too


def test_poisson_binomial():
    assert agreement.poisson_binomial([0.5, 0.5]) == pytest.approx([0.25, 0.5, 0.25])
    assert agreement.poisson_binomial([0.1, 0.3, 0.6]).sum() == pytest.approx(1)


def test_independent_planted_data_matches_the_binomial_baseline():
    rng = np.random.default_rng(0)
    flags = rng.random((5, 20000)) < np.array([0.05, 0.06, 0.04, 0.05, 0.07])[:, None]
    hist = agreement.count_histogram(flags)
    assert np.allclose(hist["observed"], hist["independent"], atol=0.006)
    s = agreement.summarize(flags, n_boot=100, n_perm=50)
    assert abs(s["kappa"]) < 0.02 and s["kappa low"] < 0 < s["kappa high"]
    assert abs(s["rho (sample-bound share)"]) < 0.02


def test_sample_bound_planted_data():
    rng = np.random.default_rng(1)
    hard = rng.random(5000) < 0.1
    same = np.stack([hard] * 4)
    assert agreement.sample_bound_share(same) == pytest.approx(1.0)
    assert agreement.mean_offdiag(agreement.pairwise(same)) == pytest.approx(1.0)
    # half of the flags sample-bound, half random: ρ in between and far above the permutation null
    mixed = np.stack([(hard & (rng.random(5000) < 0.8)) | (rng.random(5000) < 0.03) for _ in range(4)])
    s = agreement.summarize(mixed, n_boot=100, n_perm=50)
    assert 0.3 < s["rho (sample-bound share)"] < 0.95 and s["rho low"] > s["null rho 97.5%"]
    assert s["kappa low"] > s["null kappa 97.5%"]


def test_bad_shape():
    with pytest.raises(ConfigError, match="runs >= 2"):
        agreement.summarize(np.zeros((1, 10), bool))


def test_overthought_across_runs_stacks_each_runs_flags_and_checks_the_samples():
    runs = [make_record(), make_record(correct=[[1, 1, 1], [0, 1, 0], [1, 0, 0], [0, 0, 1], [0, 0, 0], [1, 1, 1]])]
    ot = agreement.overthought_across_runs(runs)
    assert ot.dtype == bool and ot.shape == (2, 6)
    assert ot.tolist() == [
        [False, True, True, False, False, True],  # tests/test_exits_overthinking.py's golden flags
        [False, True, True, False, False, False],
    ]
    other = make_record()
    other.indices = torch.arange(200, 206)  # the same number of samples, other ones
    with pytest.raises(ConfigError, match="same samples"):
        agreement.overthought_across_runs([runs[0], other])
    with pytest.raises(ConfigError, match="same samples"):
        agreement.overthought_across_runs([runs[0], make_record(correct=[[1, 0, 1]], conf=[[0.9] * 3])])


def test_bootstrap_over_samples_is_stats_bootstrap_over_the_columns():
    f = np.array([[1, 1, 0, 0, 1, 0, 1, 0], [1, 0, 0, 0, 1, 1, 1, 0], [1, 1, 0, 1, 1, 0, 0, 0]], bool)
    # every run flags 4 of 8: p̄ = 1/2, E_binom = 3 · 1/4 / 9 = 1/12; Var(m/K) = 5/36
    # → ρ = (5/36 − 3/36) / (6/36) = 1/3
    est, lo, hi = agreement.bootstrap_over_samples(f, agreement.sample_bound_share, n_boot=50, seed=3)
    assert est == pytest.approx(1 / 3)
    # the numbers of the implementation before it was shared with stats.bootstrap_statistic (same seed, same draws)
    assert (lo, hi) == pytest.approx((-0.13687707641196012, 0.7823445657332697), abs=1e-12)
    by_rows = stats.bootstrap_statistic(lambda c: agreement.sample_bound_share(f[:, c]), 8, n_boot=50, seed=3)
    assert (est, lo, hi) == by_rows
    assert agreement.bootstrap_over_samples(f, agreement.sample_bound_share, n_boot=50, seed=4) != (est, lo, hi)
    nothing = np.zeros((3, 8), bool)  # ρ undefined on every resample: no interval
    assert all(np.isnan(agreement.bootstrap_over_samples(nothing, agreement.sample_bound_share, n_boot=20)))


# ---- the difficulty-stratified null ----------------------------------------------------------------------------


def _overthought(correct):
    """``[K, N]`` Eq 3.11 flags of a ``[K, N, E]`` correctness array (an exit correct, a later one wrong)."""
    seen = np.logical_or.accumulate(correct, axis=2)
    before = np.concatenate([np.zeros_like(seen[..., :1]), seen[..., :-1]], axis=2)  # an earlier exit was correct
    return (before & ~correct).any(2)


def _difficulty_world(seed, k=5, n=3000, e=5, tied=0.0):
    """Samples of 3 difficulty levels d (easy, middling, hard: error rates 2 %, 42 %, 83 %, far enough apart for the
    K·E = 25 (run, exit) pairs to tell them apart); exit errors rise with d, independently across runs; within a run,
    each exit reuses the run's one uniform draw for the sample with probability ``tied`` (exits that err together)."""
    rng = np.random.default_rng(seed)
    d = rng.integers(0, 3, n) / 2
    p_wrong = 0.02 + 0.9 * d[:, None] * np.linspace(1.0, 0.8, e)  # [N, E], deeper exits err less
    u = np.where(rng.random((k, n, e)) < tied, rng.random((k, n, 1)), rng.random((k, n, e)))  # [K, N, E] uniform
    return rng, d, u >= p_wrong  # [K, N, E] correct


def test_difficulty_strata_by_hand_and_from_records():
    second = [[1, 1, 1], [0, 1, 0], [1, 0, 0], [0, 0, 1], [0, 0, 0], [1, 1, 1]]
    correct = np.array([CORRECT, second], bool)  # [2 runs, 6 samples, 3 exits]
    # wrong (run, exit) pairs of 6: 0, 3, 4, 4, 6, 2 → error rates 0, 1/2, 2/3, 2/3, 1, 1/3; terciles at 0.44 and 2/3
    assert agreement.difficulty_strata(correct, bins=3).tolist() == [0, 1, 2, 2, 2, 0]
    recs = [make_record(), make_record(correct=second)]
    assert agreement.difficulty_strata(recs, bins=3).tolist() == [0, 1, 2, 2, 2, 0]
    assert agreement.difficulty_strata(correct, bins=1).tolist() == [0] * 6
    # more bins than distinct rates: one stratum per rate, ties (the two 2/3) together, ordered by error rate
    assert agreement.difficulty_strata(correct, bins=6).tolist() == [0, 2, 3, 3, 4, 1]
    other = make_record(correct=second)
    other.indices = torch.arange(200, 206)
    with pytest.raises(ConfigError, match="same samples"):
        agreement.difficulty_strata([make_record(), other])


def test_stratified_null_keeps_what_it_should_and_its_exact_mean():
    rng = np.random.default_rng(2)
    strata = rng.integers(0, 4, 2000)
    flags = rng.random((4, 2000)) < (0.05 + 0.2 * strata)
    rho = agreement.sample_bound_share(flags)
    # one sample per stratum: nothing moves, the null is the observation
    own = agreement.stratified_null(flags, np.arange(2000), n_perm=3)
    assert own["rho"] == pytest.approx([rho] * 3) and own["kappa"] == pytest.approx([own["kappa"][0]] * 3)
    # one stratum: the plain permutation null, whose exact mean rho is 0
    assert agreement.rho_over_stratified_null(flags, np.zeros(2000, int)) == pytest.approx(rho, abs=1e-12)
    # the exact mean matches the Monte Carlo draws
    null = agreement.stratified_null(flags, strata, n_perm=400, seed=1)
    exact = rho - agreement.rho_over_stratified_null(flags, strata)
    assert null["rho"].mean() == pytest.approx(exact, abs=4 * null["rho"].std() / np.sqrt(400))
    assert agreement.stratified_null(flags, strata, n_perm=5, seed=1)["rho"] == pytest.approx(null["rho"][:5])


def test_difficulty_alone_is_above_the_plain_null_and_within_the_stratified_one():
    # every run overthinks a sample with a probability f(d) of its difficulty, independently across runs
    rng, d, correct = _difficulty_world(0)
    flags = rng.random((5, len(d))) < 0.02 + 0.3 * d
    # 3 strata for 3 levels: with more, a quantile bin can straddle two levels and keep some difficulty inside it
    strata = agreement.difficulty_strata(correct, bins=3)
    assert (strata != 2 * d).mean() < 0.03  # the strata recover the levels
    s = agreement.summarize(flags, strata=strata, n_boot=200, n_perm=100)
    assert s["rho low"] > s["null rho 97.5%"]  # "the same samples": only because hard samples flip
    spread = agreement.stratified_null(flags, strata, n_perm=100)["rho"].std()
    assert abs(s["rho over stratified null"]) < 3 * spread
    assert abs(s["rho over stratified null"]) < 0.25 * s["rho (sample-bound share)"]


def test_difficulty_alone_with_the_flags_from_the_exits_is_explained_by_the_stratified_null():
    # the flags computed from the very exits whose errors define the strata (as in the notebook), 10 strata: the
    # plain null calls the agreement sample-bound, the stratified null explains it (here it even overshoots)
    _, _, correct = _difficulty_world(1, tied=0.7)
    flags = _overthought(correct)
    s = agreement.summarize(flags, strata=agreement.difficulty_strata(correct), n_boot=100, n_perm=50)
    assert s["rho low"] > s["null rho 97.5%"] and s["rho (sample-bound share)"] > 0.1
    assert s["rho over stratified null"] < 0.1 * s["rho (sample-bound share)"]  # (below 0 when it overshoots)
    assert s["rho over stratified null low"] < 0
    assert s["rho (sample-bound share)"] < s["null rho 97.5% (stratified)"]


def test_sample_bound_beyond_difficulty_stays_above_the_stratified_null():
    rng, d, correct = _difficulty_world(3)
    planted = rng.random(len(d)) < 0.05  # overthought in every run, whatever their difficulty
    flags = (rng.random((5, len(d))) < 0.02 + 0.3 * d) | planted
    s = agreement.summarize(flags, strata=agreement.difficulty_strata(correct), n_boot=200, n_perm=100)
    assert s["rho over stratified null low"] > 0.05
    assert s["rho (sample-bound share)"] > s["null rho 97.5% (stratified)"]
    # the same with the flags computed from the exits (which err together within a run, as a network's exits do):
    # the planted samples wrong at the last exit only, in every run
    rng, d, correct = _difficulty_world(4, tied=0.7)
    planted = rng.random(len(d)) < 0.05
    correct[:, planted] = [True, True, True, True, False]
    flags = _overthought(correct)
    s = agreement.summarize(flags, strata=agreement.difficulty_strata(correct), n_boot=200, n_perm=100)
    assert s["rho over stratified null low"] > 0.01
    assert s["rho (sample-bound share)"] > s["null rho 97.5% (stratified)"]


def test_stratified_null_bad_input():
    flags = np.zeros((3, 10), bool)
    with pytest.raises(ConfigError, match="one integer per sample"):
        agreement.stratified_null(flags, np.zeros(9, int))
    with pytest.raises(ConfigError, match="one integer per sample"):
        agreement.summarize(flags, strata=np.zeros(10))  # floats, not strata
    with pytest.raises(ConfigError, match="one integer per sample"):
        agreement.rho_over_stratified_null(flags, np.zeros((10, 1), int))
    with pytest.raises(ConfigError, match="bins >= 1"):
        agreement.difficulty_strata(np.ones((3, 10, 2), bool), bins=0)
    with pytest.raises(ConfigError, match=r"\[runs, samples, exits\]"):
        agreement.difficulty_strata(np.ones((3, 10), bool))
