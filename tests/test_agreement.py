"""Agreement metrics on hand-made indicator sets and planted independent / sample-bound data."""

import numpy as np
import pytest
import torch
from test_exits_overthinking import make_record

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
